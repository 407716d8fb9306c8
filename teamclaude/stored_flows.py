"""Credentials out of the flows mitmproxy keeps (mitmweb, `-w`, HAR, exports): behaviour §11.

The addon calls these in the `response` and `error` hooks, when nothing more goes on the
wire for the part being changed: a request has been sent by then, and a response only when
it was streamed (`usage_tap.WireCopy` streams pass-through answers so their stored copy can be
redacted without touching what the client receives).
"""

from __future__ import annotations

from collections.abc import Iterable

from mitmproxy import http

from teamclaude import redact

def is_token_endpoint(request: http.Request) -> bool:
    return request.path.split("?", 1)[0] == redact.TOKEN_PATH


def redact_headers(headers: http.Headers) -> None:
    """Credential headers replaced by `<redacted>` (an `<account:NAME>` marker stays)."""
    for name in {n.lower() for n in headers}:
        if name in redact.CREDENTIAL_HEADERS:
            headers.set_all(name, [redact.header_value(name, value) for value in headers.get_all(name)])


def redact_token_body(message: http.Message) -> None:
    """The token fields of a `/v1/oauth/token` body replaced, keeping its encoding."""
    content = message.get_content(strict=False)
    if content:
        message.content = redact.token_body(content)


def redact_request(request: http.Request) -> None:
    """A request that has been sent (or never will be): its credentials out."""
    redact_headers(request.headers)
    if is_token_endpoint(request):
        redact_token_body(request)


def redact_sent_response(request: http.Request, response: http.Response) -> None:
    """A response whose bytes already reached the client (streamed): its credentials out."""
    redact_headers(response.headers)
    if is_token_endpoint(request):
        redact_token_body(response)


def scrub_message(message: http.Message, secrets: Iterable[str]) -> None:
    """Headers and body with every credential and secret-looking value replaced (exports)."""
    known = list(secrets)
    redact_headers(message.headers)
    for name in {n.lower() for n in message.headers}:
        message.headers.set_all(name, [redact.scrub_text(v, known) for v in message.headers.get_all(name)])
    content = message.get_content(strict=False)
    if content:
        scrubbed = redact.scrub(content, known)
        if scrubbed != content:
            message.content = scrubbed
