"""Taking credentials out of anything kept or written: stored flows, request logs, exports.

behaviour §11 and §13. Pure functions over headers and bytes; no mitmproxy import.

Two layers: what is known to be a credential by its place (credential headers, token fields
of `/v1/oauth/token` bodies) is replaced whatever it looks like; anything that looks like an
Anthropic secret (`sk-ant-...`) or equals a secret the proxy knows is replaced wherever it
appears.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

REDACTED = "<redacted>"
TOKEN_PATH = "/v1/oauth/token"

# Request and response headers whose value is a credential.
CREDENTIAL_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "x-teamclaude-key", "cookie", "set-cookie",
})
# Fields of OAuth token requests and answers that are secrets.
TOKEN_FIELDS = frozenset({
    "access_token", "refresh_token", "id_token", "code", "code_verifier", "client_secret", "api_key",
    "raw_key",  # an API key minted by /api/oauth/claude_cli/create_api_key
})
# What the addon leaves in place of the credential it injected (`rewrite.redact_injected`).
_ACCOUNT_MARKER = re.compile(r"<account:[^<>\s]{0,200}>")
_ANTHROPIC_SECRET = re.compile(rb"sk-ant-[A-Za-z0-9]{1,20}-[A-Za-z0-9_\-]{4,}")
UNREADABLE_TOKEN_BODY = b"<redacted: token endpoint body that is not readable JSON or a form>"
UNREADABLE_BODY = b"<redacted: a pass-through body that cannot be read within the bound>"
# Token endpoint bodies are a few hundred bytes; a longer one is replaced whole, unparsed, so
# redacting cannot cost more than this (a JSON parse builds many times its input in objects).
MAX_TOKEN_BODY = 64 * 1024
_MIN_SECRET_LENGTH = 8


def header_value(name: str, value: str) -> str:
    """`value` as it may be kept: credential headers become `<redacted>` (an injected
    credential already replaced by `<account:NAME>` stays, it names the account used)."""
    if name.lower() in CREDENTIAL_HEADERS:
        return value if _ACCOUNT_MARKER.fullmatch(value) else REDACTED
    return value


def headers(pairs: Iterable[tuple[str, str]], secrets: Iterable[str] = ()) -> list[list[str]]:
    """Header pairs with credentials redacted, as JSON-ready `[name, value]` lists."""
    known = _usable(secrets)
    return [[name, scrub_text(header_value(name, value), known)] for name, value in pairs]


def scrub(data: bytes, secrets: Iterable[str] = ()) -> bytes:
    """`data` with every Anthropic-looking secret and every known secret replaced."""
    for secret in _usable(secrets):
        data = data.replace(secret.encode(), REDACTED.encode())
    return _ANTHROPIC_SECRET.sub(REDACTED.encode(), data)


def scrub_text(text: str, secrets: Iterable[str] = ()) -> str:
    return scrub(text.encode("utf-8", "surrogateescape"), secrets).decode("utf-8", "surrogateescape")


def token_body(body: bytes) -> bytes:
    """A `/v1/oauth/token` request or answer with its token fields redacted.

    JSON (the real endpoint) and form bodies keep their shape; anything else, or anything
    longer than `MAX_TOKEN_BODY`, is replaced whole, since it cannot be told apart from a token.
    """
    if len(body) > MAX_TOKEN_BODY:
        return UNREADABLE_TOKEN_BODY
    if not body.strip():
        return body
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _form_body(body)
    try:
        return json.dumps(_redact_fields(document)).encode()
    except RecursionError:
        return UNREADABLE_TOKEN_BODY


def _form_body(body: bytes) -> bytes:
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return UNREADABLE_TOKEN_BODY
    return urlencode([(key, REDACTED if key in TOKEN_FIELDS else value) for key, value in pairs]).encode()


def secret_fields(body: bytes) -> bytes:
    """A JSON body with its secret fields (`TOKEN_FIELDS`) redacted and anything shaped like an
    Anthropic secret replaced; a body that is not JSON keeps its shape, only the latter."""
    try:
        document = json.loads(body)
    except ValueError:
        return scrub(body)
    return scrub(json.dumps(_redact_fields(document)).encode())


def _redact_fields(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: REDACTED if key in TOKEN_FIELDS else _redact_fields(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_fields(item) for item in value]
    return value


def _usable(secrets: Iterable[str]) -> list[str]:
    """Known secrets worth replacing, longest first (so no secret is left half-replaced)."""
    return sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)
