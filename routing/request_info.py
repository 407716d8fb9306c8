"""Read what routing needs from a client request: model, stream flag, session id (behaviour §3.4)
and the conversation within the session (main or which subagent).

Claude Code sends every subagent request with the parent's session id and
`x-claude-code-agent-id` (stable across that subagent's turns; absent on the main
conversation), nested subagents also with `x-claude-code-parent-agent-id`; background work
carries `x-app: cli-bg`. Clients that do not send the agent header still mark a subagent's
system prompt with `cc_is_subagent=true`: such a conversation is identified by a digest of
its system prompt and first message, which stay the same across its turns.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from routing.types import RequestInfo

SESSION_HEADER = "x-claude-code-session-id"
AGENT_HEADER = "x-claude-code-agent-id"
PARENT_AGENT_HEADER = "x-claude-code-parent-agent-id"
APP_HEADER = "x-app"
BACKGROUND_APP = "cli-bg"
SUBAGENT_MARK = "cc_is_subagent=true"

# What the digest and the marker search read: bounded, so a huge prompt costs no more than
# this much hashing (the JSON parse before it is linear in the body anyway).
_DIGEST_BYTES_PER_PART = 16 * 1024
_MARK_SEARCH_CHARS = 64 * 1024
_MAX_BLOCKS = 64

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


def _texts(content: object) -> list[str]:
    """The text parts of a system prompt or message content (string or list of blocks);
    other blocks count by their type, so two prompts differing only there still differ."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    texts: list[str] = []
    for block in content[:_MAX_BLOCKS]:
        if isinstance(block, dict):
            text = block.get("text")
            kind = block.get("type")
            texts.append(text if isinstance(text, str) else (kind if isinstance(kind, str) else ""))
        elif isinstance(block, str):
            texts.append(block)
    return texts


def _update_bounded(digest: Any, texts: list[str]) -> None:
    budget = _DIGEST_BYTES_PER_PART
    for text in texts:
        if budget <= 0:
            break
        piece = text[:budget].encode("utf-8", "surrogatepass")[:budget]
        digest.update(len(piece).to_bytes(4, "big"))
        digest.update(piece)
        budget -= len(piece)
    digest.update(b"\x00")


def marks_subagent(system: object) -> bool:
    """Does the system prompt carry Claude Code's subagent mark (first 64 KiB searched)?"""
    budget = _MARK_SEARCH_CHARS
    for text in _texts(system):
        if SUBAGENT_MARK in text[:budget]:
            return True
        budget -= len(text)
        if budget <= 0:
            return False
    return False


def conversation_digest(system: object, messages: object) -> str:
    """A short id for a conversation: system prompt and first message, bounded reads."""
    digest = hashlib.blake2b(digest_size=8)
    _update_bounded(digest, _texts(system))
    first = messages[0] if isinstance(messages, list) and messages else None
    _update_bounded(digest, _texts(first.get("content") if isinstance(first, dict) else None))
    return "d-" + digest.hexdigest()


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
    agent_id = clean_session_id(headers.get(AGENT_HEADER))
    conversation = agent_id
    if conversation is None and marks_subagent(document.get("system")):
        conversation = conversation_digest(document.get("system"), document.get("messages"))
    app = headers.get(APP_HEADER)
    return RequestInfo(
        path=path,
        model=model if isinstance(model, str) and model else None,
        stream=document.get("stream") is True,
        session_id=session_id,
        conversation=conversation,
        agent_id=agent_id,
        parent_agent_id=clean_session_id(headers.get(PARENT_AGENT_HEADER)),
        background=isinstance(app, str) and app.strip().lower() == BACKGROUND_APP,
    )
