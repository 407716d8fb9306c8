"""`/_fake/*`: drive a fake upstream running in another process (benchmarks, the demo)
through the same public methods tests call in-process."""

from __future__ import annotations

import dataclasses
from typing import Any

from teamclaude.fake.accounts import FakeAccount
from teamclaude.fake.state import Recorded, UpstreamState

NOT_FOUND = object()


def _recorded_json(record: Recorded) -> dict[str, Any]:
    return {
        "method": record.method,
        "path": record.path,
        "query": record.query,
        "headers": [list(pair) for pair in record.headers],
        "body": record.body.decode("utf-8", "replace"),
        "account": record.account,
        "status": record.status,
        "at": record.at,
    }


def _with_name(action: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    rest = dict(data)
    if "name" not in rest:
        raise ValueError(f"{action} needs a 'name'")
    return rest.pop("name"), rest


def control_action(fake: UpstreamState, method: str, action: str, data: dict[str, Any]) -> Any:
    """Run one control action; returns its JSON answer, or NOT_FOUND. ValueError, KeyError
    and TypeError mean a bad request."""
    if method == "POST":
        if action == "inject":
            rest = dict(data)
            if "kind" not in rest:
                raise ValueError("inject needs a 'kind'")
            fake.inject(rest.pop("account", None), rest.pop("kind"), rest.pop("count", 1), **rest)
        elif action == "set_usage":
            name, rest = _with_name(action, data)
            fake.set_usage(name, **rest)
        elif action == "set_reset":
            name, rest = _with_name(action, data)
            fake.set_reset(name, **rest)
        elif action == "expire_access_token":
            fake.expire_access_token(_with_name(action, data)[0])
        elif action == "token_delay":
            rest = dict(data)
            fake.inject(rest.pop("account", None), "token_delay", rest.pop("count", 1), **rest)
        elif action == "clear_faults":
            fake.clear_faults()
        elif action == "clear_requests":
            fake.clear_requests()
        elif action == "accounts":
            fake.add_account(FakeAccount(**data))
        else:
            return NOT_FOUND
        return {"ok": True}
    if method == "GET":
        if action == "accounts":
            return [dataclasses.asdict(acct) for acct in fake.accounts()]
        if action == "requests":
            return [_recorded_json(record) for record in fake.requests]
        if action == "token_calls":
            return [dataclasses.asdict(call) for call in fake.token_calls]
        if action == "token_counts":
            return fake.token_counts()
    return NOT_FOUND
