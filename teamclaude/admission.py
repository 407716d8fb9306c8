"""Decisions taken on a request's headers alone, before its body is read.

- A client that will be refused anyway (no proxy key nor client key, a web browser, another host in forward
  mode, a path that cannot be decided on) is answered before a large body is read: otherwise
  mitmproxy buffers the whole body first, and an unkeyed client could grow memory at will.
- In forward mode a CONNECT tunnel is opened only to the upstream, or for a client that
  presents the proxy key or a client key (in `Proxy-Authorization` or `x-teamclaude-key`): otherwise the
  proxy would relay raw TCP for anyone, into loopback included.
"""

from __future__ import annotations

from mitmproxy import http

from teamclaude import errors, gate, mitm_compat, own_flows, routes
from teamclaude.client_keys import Keyring
from teamclaude.routes import Route

# Bodies larger than this (or of unknown length) are not read for a request that is refused.
LARGE_BODY = 64 * 1024


def refusal_before_body(flow: http.HTTPFlow, upstream: str, keys: Keyring) -> http.Response | None:
    """The answer for a request with a large body that will be refused whatever it holds."""
    req = flow.request
    length = req.headers.get("content-length", "")
    if not ("chunked" in req.headers.get("transfer-encoding", "").lower()
            or (length.isdigit() and int(length) > LARGE_BODY)):
        return None
    reverse = mitm_compat.is_reverse(flow.client_conn.proxy_mode)
    keyed = gate.key_matches(req.headers, keys)
    if not reverse and not keyed and not routes.targets(req.scheme, req.host, req.port, upstream):
        return errors.response(403, "permission_error", errors.FORWARD_REFUSED)
    try:
        path = gate.normalize_target(req.path).split("?", 1)[0]
    except gate.BadPath as exc:
        return errors.response(400, "invalid_request_error", f"teamclaude: {exc}")
    route = routes.decide(req.method, path, req.headers, reverse=reverse, telemetry="pass", keys=keys)
    return own_flows.answer(route) if route in (Route.BROWSER, Route.NO_KEY) else None


def answer_without_reading(flow: http.HTTPFlow, response: http.Response) -> None:
    """Answer now and close the connection, the body unread: on a plain HTTP/1 client's socket
    directly (mitmproxy would read the body before sending an answer), else (TLS, HTTP/2) just
    close it."""
    own_flows.mark(flow, own_flows.REFUSED, f"refused before its body was read ({response.status_code})")
    writer = mitm_compat.client_socket_writer(flow)
    if writer is not None:
        mitm_compat.answer_and_close(flow, writer, response)
    else:
        mitm_compat.mark_killed(flow)


def tunnel_refusal(flow: http.HTTPFlow, upstream: str, keys: Keyring) -> http.Response | None:
    """The answer to a forward-mode CONNECT that may not open a tunnel, else None."""
    req = flow.request
    if routes.targets_host(req.host, req.port, upstream) or gate.key_matches(req.headers, keys):
        return None
    return errors.response(403, "permission_error", errors.FORWARD_REFUSED)
