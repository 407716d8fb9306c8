"""The proxy's own HTTP endpoints (behaviour §9), answered without going upstream."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from teamclaude import __version__
from teamclaude.account_controls import BadPriority, parse_priority
from teamclaude.accounts_store import AccountsError
from teamclaude.credentials import UnknownAccount
from teamclaude.service import ConfigError, Service

METRICS_PATHS = frozenset({"/metrics", "/teamclaude/metrics"})
LOCAL_PATHS = METRICS_PATHS | frozenset({
    "/teamclaude/health",
    "/teamclaude/status",
    "/teamclaude/capacity",
    "/capacity",
    "/teamclaude/quota",
    "/teamclaude/switch",
    "/teamclaude/reload",
})


def is_local(path: str) -> bool:
    return path in LOCAL_PATHS or path.startswith("/teamclaude/")


def is_metrics(method: str, path: str) -> bool:
    """Prometheus' scrape: answered in its text format (`Service.metrics`), not JSON."""
    return method.upper() == "GET" and path in METRICS_PATHS


def _error(status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"type": "error", "error": {"type": kind, "message": message}}


async def answer(service: Service, method: str, path: str, body: bytes, config_path) -> tuple[int, dict[str, Any]]:
    """(status, JSON document) for a local endpoint."""
    route = (method.upper(), path)
    if route == ("GET", "/teamclaude/health"):
        return 200, {"status": "ok", "version": __version__}
    if route == ("GET", "/teamclaude/status"):
        return 200, service.status()
    if route in (("GET", "/capacity"), ("GET", "/teamclaude/capacity")):
        return 200, service.capacity()
    if route == ("GET", "/teamclaude/quota"):
        return 200, service.quota()
    if route == ("POST", "/teamclaude/switch"):
        try:
            request = json.loads(body or b"{}")
        except (ValueError, RecursionError):
            return _error(400, "invalid_request_error", 'body must be JSON like {"account": "name"}')
        if not isinstance(request, dict):
            return _error(400, "invalid_request_error", 'body must be a JSON object like {"account": "name"}')
        name = request.get("account")
        if name is not None and not isinstance(name, str):
            return _error(400, "invalid_request_error", '"account" must be a name or null')
        try:
            return 200, {"ok": True, "message": service.switch(name)}
        except KeyError as exc:
            return _error(404, "not_found_error", exc.args[0])
    if route == ("POST", "/teamclaude/reload"):
        try:
            return 200, {"ok": True, "message": await service.reload(config_path)}
        except ConfigError as exc:
            return _error(400, "invalid_request_error", str(exc))
    control = _account_control(path)
    if control is not None:
        if method.upper() != "POST":
            return _error(405, "invalid_request_error", f"{method} is not allowed on {path}: use POST")
        return await _control(service, *control, body, config_path)
    if path in LOCAL_PATHS:
        return _error(405, "invalid_request_error", f"{method} is not allowed on {path}")
    return _error(404, "not_found_error", f"no teamclaude endpoint {path}")


ACCOUNT_ACTIONS = ("disable", "enable", "priority")


def _account_control(path: str) -> tuple[str, str] | None:
    """(account name, action) of `/teamclaude/accounts/NAME/ACTION` (NAME percent-encoded)."""
    parts = path.split("/")
    if len(parts) != 5 or parts[:3] != ["", "teamclaude", "accounts"] or parts[4] not in ACCOUNT_ACTIONS:
        return None
    name = unquote(parts[3])
    return (name, parts[4]) if name else None


async def _control(service: Service, name: str, action: str, body: bytes, config_path) -> tuple[int, dict[str, Any]]:
    """Disable, enable or set the priority of an account: written to the accounts file and
    applied at once (behaviour §9)."""
    try:
        if action == "priority":
            try:
                request = json.loads(body or b"null")
            except (ValueError, RecursionError):
                request = None
            if not isinstance(request, dict) or "priority" not in request:
                return _error(400, "invalid_request_error", 'body must be JSON like {"priority": 1}')
            message = await service.set_priority(name, parse_priority(request["priority"]), config_path)
        else:
            message = await service.set_disabled(name, action == "disable", config_path)
    except UnknownAccount as exc:
        return _error(404, "not_found_error", str(exc))
    except BadPriority as exc:
        return _error(400, "invalid_request_error", str(exc))
    except (AccountsError, OSError) as exc:
        return _error(500, "api_error", f"the accounts file cannot be changed: {exc}")
    return 200, {"ok": True, "message": message}
