"""Read what routing needs from a client request: model, stream flag, session id (behaviour §3.4)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from routing.types import RequestInfo

SESSION_HEADER = "x-claude-code-session-id"

# Older Claude Code: metadata.user_id = "user_<hash>_account_<uuid>_session_<uuid>".
_LEGACY_SESSION = re.compile(r"_session_([0-9A-Za-z-]{8,64})$")
_MAX_SESSION_ID = 128


def clean_session_id(value: object) -> str | None:
    """A session id as a short printable string, or None when it is not usable."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > _MAX_SESSION_ID or not text.isprintable():
        return None
    return text


def session_from_user_id(user_id: object) -> str | None:
    """`metadata.user_id` is either JSON (`{"session_id": ...}`) or the legacy string form."""
    if not isinstance(user_id, str):
        return None
    text = user_id.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            return None
        return clean_session_id(parsed.get("session_id")) if isinstance(parsed, dict) else None
    match = _LEGACY_SESSION.search(text)
    return clean_session_id(match.group(1)) if match else None


def parse_body(body: bytes | None) -> dict[str, Any]:
    """The request body as a JSON object, or {} when it is empty or not a JSON object."""
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def read_request(path: str, headers: Mapping[str, str], body: bytes | None) -> RequestInfo:
    """Build the routing view of a request. `path` is without the query string.

    Only the body's top-level `model` counts, never a "model" inside message text.
    """
    document = parse_body(body) if path.startswith("/v1/") else {}
    model = document.get("model")
    session_id = clean_session_id(headers.get(SESSION_HEADER))
    if session_id is None:
        metadata = document.get("metadata")
        if isinstance(metadata, dict):
            session_id = session_from_user_id(metadata.get("user_id"))
    return RequestInfo(
        path=path,
        model=model if isinstance(model, str) and model else None,
        stream=document.get("stream") is True,
        session_id=session_id,
    )
