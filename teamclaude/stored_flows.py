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
from teamclaude.inflate import MAX_INFLATED_BODY, BodyTooLarge, UndecodableBody, inflate

_TOO_LARGE = b"<removed: body inflates past %d bytes>"


def is_token_endpoint(request: http.Request) -> bool:
    return request.path.split("?", 1)[0] == redact.TOKEN_PATH


def redact_headers(headers: http.Headers) -> None:
    """Credential headers replaced by `<redacted>` (an `<account:NAME>` marker stays)."""
    for name in {n.lower() for n in headers}:
        if name in redact.CREDENTIAL_HEADERS:
            headers.set_all(name, [redact.header_value(name, value) for value in headers.get_all(name)])


def _replace_body(message: http.Message, data: bytes) -> None:
    """The stored body replaced by `data`, stored without a content coding."""
    message.headers.pop("content-encoding", None)
    message.raw_content = data


def redact_token_body(message: http.Message) -> None:
    """The token fields of a `/v1/oauth/token` body replaced, keeping its encoding; a body
    that does not inflate within `redact.MAX_TOKEN_BODY` is replaced whole, unread."""
    raw = message.raw_content
    if not raw:
        return
    try:
        content = inflate(raw, message.headers.get("content-encoding"), redact.MAX_TOKEN_BODY)
    except (BodyTooLarge, UndecodableBody):
        _replace_body(message, redact.UNREADABLE_TOKEN_BODY)
        return
    message.content = redact.token_body(content)


def redact_request(request: http.Request) -> None:
    """A request that has been sent (or never will be): its credentials out."""
    redact_headers(request.headers)
    if is_token_endpoint(request):
        redact_token_body(request)


def redact_sent_response(request: http.Request, response: http.Response) -> None:
    """A pass-through response whose bytes already reached the client (streamed): its
    credentials out — the token endpoint's fields, and on any other path secret fields and
    secret-shaped values (an API key minted by `/api/oauth/claude_cli/create_api_key`)."""
    redact_headers(response.headers)
    if is_token_endpoint(request):
        redact_token_body(response)
    else:
        _redact_secrets_in_body(response)


def _redact_secrets_in_body(message: http.Message) -> None:
    raw = message.raw_content
    if not raw:
        return
    try:  # bounded and cheap, on the event loop: a longer body is replaced whole, unread
        content = inflate(raw, message.headers.get("content-encoding"), redact.MAX_TOKEN_BODY)
    except (BodyTooLarge, UndecodableBody):
        _replace_body(message, redact.UNREADABLE_BODY)
        return
    cleaned = redact.secret_fields(content)
    if cleaned != content:
        message.content = cleaned


def scrub_message(message: http.Message, secrets: Iterable[str]) -> None:
    """Headers and body with every credential and secret-looking value replaced (exports).
    A body that inflates past `MAX_INFLATED_BODY` is replaced by a note."""
    known = list(secrets)
    redact_headers(message.headers)
    for name in {n.lower() for n in message.headers}:
        message.headers.set_all(name, [redact.scrub_text(v, known) for v in message.headers.get_all(name)])
    raw = message.raw_content
    if not raw:
        return
    try:
        content = inflate(raw, message.headers.get("content-encoding"), MAX_INFLATED_BODY)
    except BodyTooLarge:
        _replace_body(message, _TOO_LARGE % MAX_INFLATED_BODY)
        return
    except UndecodableBody:
        scrubbed = redact.scrub(raw, known)  # kept as it is stored
        if scrubbed != raw:
            message.raw_content = scrubbed
        return
    scrubbed = redact.scrub(content, known)
    if scrubbed != content:
        message.content = scrubbed
