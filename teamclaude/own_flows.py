"""Flows the addon handles without an account: pass-through paths (the client's own
credentials), local endpoints, and requests it refuses. Tagged when they arrive so their
`response`/`error` hooks can redact what mitmproxy stores and write the request log entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mitmproxy import http

from routing.failures import is_final_status
from teamclaude import errors, stored_flows
from teamclaude.routes import Route
from teamclaude.usage_tap import WireCopy

PASS_THROUGH, LOCAL, REFUSED = "pass-through", "local", "refused"

KIND = {
    Route.BROWSER: REFUSED, Route.NO_KEY: REFUSED, Route.LOCAL: LOCAL, Route.PRECONNECT: LOCAL,
    Route.TELEMETRY_ANSWER: LOCAL, Route.TELEMETRY_DROP: LOCAL, Route.PASS_THROUGH: PASS_THROUGH,
}


def answer(route: Route) -> http.Response:
    """The proxy's own answer for a route that needs neither an account nor the upstream."""
    if route is Route.BROWSER:
        return errors.response(403, "permission_error", errors.BROWSER_REFUSED)
    if route is Route.NO_KEY:
        return errors.response(401, "authentication_error", errors.missing_key_message())
    if route is Route.TELEMETRY_ANSWER:
        return http.Response.make(200, b"{}", errors.JSON_HEADERS)
    assert route is Route.PRECONNECT, route
    return http.Response.make(200)


def mark(flow: http.HTTPFlow, kind: str, what: str) -> None:
    flow.metadata["teamclaude"] = {"kind": kind, "reason": what}
    flow.comment = f"teamclaude: {what}"


def kind_of(flow: http.HTTPFlow) -> str | None:
    meta = flow.metadata.get("teamclaude")
    kind = meta.get("kind") if isinstance(meta, dict) else None
    return kind if kind in (PASS_THROUGH, LOCAL, REFUSED) else None


def stream_pass_through(flow: http.HTTPFlow) -> bool:
    """Stream a pass-through answer, so its stored copy can be redacted later without
    touching the client's bytes. True when the flow is one."""
    if kind_of(flow) != PASS_THROUGH or flow.response is None:
        return False
    if is_final_status(flow.response.status_code):
        flow.response.stream = WireCopy()  # else kept back, for `finish` to replace
    return True


def finish(flow: http.HTTPFlow, log_flow: Callable[[http.HTTPFlow, dict[str, Any]], None]) -> None:
    """`response`/`error` of such a flow: redact what is stored, log it."""
    meta = flow.metadata.get("teamclaude")
    kind = kind_of(flow)
    if kind is None or not isinstance(meta, dict):
        return
    stored_flows.redact_request(flow.request)
    response = flow.response
    if kind == PASS_THROUGH and response is not None and not is_final_status(response.status_code):
        # mitmproxy would relay an interim 1xx as the answer and drop the real one after it.
        flow.response = response = errors.response(
            502, "api_error", f"teamclaude: upstream answered {str(response.status_code)[:12]}, not a final HTTP status")
    if response is not None and isinstance(response.stream, WireCopy):
        response.raw_content = response.stream.data()
        stored_flows.redact_sent_response(flow.request, response)
    started = flow.request.timestamp_start
    ended = flow.error.timestamp if flow.error else (response.timestamp_end if response else None)
    log_flow(flow, {
        "kind": kind, "status": response.status_code if response is not None else None,
        "duration_ms": round(((ended or started) - started) * 1000),
        "account": None, "client": meta.get("client"), "reason": meta.get("reason"),
        "error": flow.error.msg if flow.error else None,
    })
