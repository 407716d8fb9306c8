"""Anthropic-shaped error responses made by the proxy itself."""

from __future__ import annotations

import json

from mitmproxy import http

JSON_HEADERS = {"content-type": "application/json"}


def error_body(kind: str, message: str) -> bytes:
    """`{"type": "error", "error": {"type": kind, "message": message}}` as the API sends it."""
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def response(status: int, kind: str, message: str) -> http.Response:
    """An error answer made by the proxy, shaped as the API's own."""
    return http.Response.make(status, error_body(kind, message), JSON_HEADERS)


def missing_key_message() -> str:
    return (
        "teamclaude: missing or wrong proxy key. Run `eval $(teamclaude env)` (or "
        "`teamclaude run`) so the client sends it as x-teamclaude-key."
    )


BROWSER_REFUSED = (
    "teamclaude: requests from web browsers are refused (Origin / Sec-Fetch-Site header present)."
)

FORWARD_REFUSED = (
    "teamclaude: this proxy forwards only to its upstream (the Anthropic API); other hosts need "
    "the proxy key (x-teamclaude-key)."
)

# A client key (`teamclaude keys`) reads the proxy's endpoints; changing the pool is the
# proxy key's (the admin key's) alone.
ADMIN_ONLY = ("teamclaude: this endpoint changes the pool and needs the proxy key (the admin key: "
              "`teamclaude env` on the proxy's machine); a client key may only read")
