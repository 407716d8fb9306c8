"""The proxy carries out `routing.lifecycle` (behaviour §6): a chain of failures through the
real proxy ends as the pure lifecycle decides for the same answers."""

from __future__ import annotations

import json
import time

import pytest

from routing.engine import Router
from routing.failures import Streaks
from routing.lifecycle import (
    Answer, Exchange, LifecycleSettings, Refresh, Refreshed, Send, Step, Upstream, Wait, Woke, exchange,
)
from routing.ratelimits import parse_ratelimit_headers
from routing.request_info import read_request
from teamclaude.fakeupstream import FakeUpstream
from teamclaude.service import load_config
from tests.e2e.cli_runner import wait_until
from tests.e2e.harness import call, message_body, oauth_account, proxy_status
from tests.e2e.test_failures import account_state, pin, proxy_for, served
from tests.e2e.test_request_log_e2e import records

UNIFIED = "anthropic-ratelimit-unified-"


@pytest.fixture()
def fake():
    with FakeUpstream(accounts=[oauth_account("alice"), oauth_account("bob")]) as upstream:
        yield upstream


def replay(cfg, answers: dict[str, list[tuple[int, list[tuple[str, str]]]]], now: float,
           hold_budget_s: float) -> tuple[Step, list[str], Exchange, Router]:
    """The same request and answers through the pure lifecycle, on a router configured from
    the proxy's own files; every Wait wakes when it asks to. Returns (final step, the steps
    as "Kind account", the exchange, the router)."""
    loaded = load_config(cfg.config, first_run=False)
    router = Router(loaded.settings.routing_config(), [a.to_spec() for a in loaded.accounts.accounts])
    router.pin("alice")
    request = read_request("/v1/messages", {"content-type": "application/json"}, json.dumps(message_body()).encode())
    ex = Exchange(request)
    settings = LifecycleSettings("transparent", hold_budget_s, loaded.settings.hold_poll_s)
    flow = exchange(router, request, Streaks(), settings, now, ex)
    step, seen = next(flow), []
    while not step.final:
        if isinstance(step, Send):
            seen.append(f"Send {step.decision.account}")
            status, headers = answers[step.decision.account].pop(0)
            step = flow.send(Upstream(status, parse_ratelimit_headers(headers), now))
        elif isinstance(step, Refresh):
            seen.append(f"Refresh {step.account}")
            step = flow.send(Refreshed(True, now))
        else:
            assert isinstance(step, Wait), step
            seen.append("Wait")
            now = step.until
            step = flow.send(Woke(now))
    assert isinstance(step, Answer)
    seen.append(f"Answer {step.decision.account}")
    return step, seen, ex, router


def test_401_refresh_429_failover_and_hold_end_as_the_pure_lifecycle_decides(tmp_path, fake):
    logs = tmp_path / "requests"
    proxy, cfg = proxy_for(tmp_path, fake, hold_budget_s=60, hold_poll_s=30, log_dir=str(logs))
    fake.inject("alice", "401")
    fake.inject("alice", "429_window", window="5h")
    fake.inject("bob", "429_retry_after", seconds=2)
    with proxy:
        pin(proxy, "alice")
        started = time.time()
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
        [record] = wait_until(lambda: [r for r in records(logs) if r["kind"] == "pooled"], "the request's record")
        alice, bob = account_state(proxy, "alice"), account_state(proxy, "bob")
        assert [a["inflight"] for a in proxy_status(proxy)["accounts"]] == [0, 0]
    assert served(fake) == [("alice", 401), ("alice", 429), ("bob", 429), ("bob", 200)]
    assert [c.grant_type for c in fake.token_calls] == ["refresh_token"]

    reset = fake.account("alice").five_hour_reset
    rejected = [(UNIFIED + "5h-status", "rejected"), (UNIFIED + "5h-reset", str(int(reset)))]
    answers = {"alice": [(401, []), (429, rejected)], "bob": [(429, [("retry-after", "2")]), (200, [])]}
    final, steps, ex, router = replay(cfg, answers, started, hold_budget_s=60)
    assert steps == ["Send alice", "Refresh alice", "Send alice", "Send bob", "Wait", "Send bob", "Answer bob"]

    # What the proxy did is what the lifecycle decided: the same failed attempts, the same
    # bench, the hold that ended with bob's, the answer from bob.
    assert record["failovers"] == ex.history == [
        {"account": "alice", "status": 429, "reason": "5h window rejected"},
        {"account": "bob", "status": 429, "reason": "429 retry-after 2s"},
    ]
    assert record["account"] == final.decision.account == "bob" and record["status"] == 200
    assert abs(ex.held_s - 2) < 0.1 and 1.5 <= record["held_s"] < 10
    pure = {a["name"]: a for a in router.snapshot(started)["accounts"]}
    assert abs(alice["bench_until"] - reset) < 2 and pure["alice"]["bench_until"] == int(reset)
    assert alice["status"] == pure["alice"]["status"] == "benched"
    assert bob["bench_until"] is None or bob["bench_until"] <= time.time()
