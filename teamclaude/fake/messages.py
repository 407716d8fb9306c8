"""Bodies of the fake `/v1/messages`: deterministic token counts, prompt-cache accounting,
the message JSON and the SSE events of a streamed answer (Anthropic's exact framing)."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

OUTPUT_TOKENS_PER_DELTA = 3
DEFAULT_CHUNKS = 5
CACHE_TTL_S = {"5m": 300.0, "1h": 3600.0}


def compact(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def message_id() -> str:
    return "msg_01" + secrets.token_hex(11)


def prompt_tokens(raw_body: bytes) -> int:
    """Input tokens of a request: a fixed function of its size (4 bytes per token)."""
    return max(1, len(raw_body) // 4)


@dataclass(frozen=True)
class CachePlan:
    """The cacheable prefix of a request: which prefix, how many tokens, which TTL."""

    key: str
    tokens: int
    ttl: str


def _blocks(value: object) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [block for block in value if isinstance(block, dict)]
    return []


def _cache_markers(payload: dict[str, Any]) -> list[dict[str, Any]]:
    markers: list[dict[str, Any]] = []
    candidates = _blocks(payload.get("system")) + _blocks(payload.get("tools"))
    for message in _blocks(payload.get("messages")):
        candidates += _blocks(message.get("content"))
    for block in candidates:
        control = block.get("cache_control")
        if isinstance(control, dict):
            markers.append(control)
    return markers


def cache_plan(payload: dict[str, Any], total_tokens: int) -> CachePlan | None:
    """Requests with `cache_control` cache three quarters of their input, keyed by the system
    prompt (or the first message when there is no system prompt)."""
    markers = _cache_markers(payload)
    if not markers or total_tokens < 2:
        return None
    ttl = "1h" if any(m.get("ttl") == "1h" for m in markers) else "5m"
    messages = payload.get("messages")
    anchor = payload.get("system")
    if anchor is None and isinstance(messages, list) and messages:
        anchor = messages[0]
    digest = hashlib.sha256(json.dumps(anchor, sort_keys=True).encode()).hexdigest()
    return CachePlan(key=digest, tokens=total_tokens * 3 // 4, ttl=ttl)


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0

    @property
    def burn(self) -> int:
        """What counts against quota: input, cache writes and output (not cache reads)."""
        return self.input_tokens + self.cache_write_5m + self.cache_write_1h + self.output_tokens

    def as_api(self, output_tokens: int | None = None) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write_5m + self.cache_write_1h,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write_5m,
                "ephemeral_1h_input_tokens": self.cache_write_1h,
            },
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
            "service_tier": "standard",
        }


def split_usage(total: int, plan: CachePlan | None, cache_hit: bool, output_tokens: int) -> Usage:
    if plan is None:
        return Usage(input_tokens=total, output_tokens=output_tokens)
    rest = total - plan.tokens
    if cache_hit:
        return Usage(input_tokens=rest, output_tokens=output_tokens, cache_read=plan.tokens)
    if plan.ttl == "1h":
        return Usage(input_tokens=rest, output_tokens=output_tokens, cache_write_1h=plan.tokens)
    return Usage(input_tokens=rest, output_tokens=output_tokens, cache_write_5m=plan.tokens)


def reply_pieces(chunks: int, text: str | None) -> list[str]:
    """The text deltas of an answer: `text` cut into `chunks` pieces, or numbered words."""
    chunks = max(1, chunks)
    if not text:
        return [f"chunk {i} " for i in range(chunks)]
    size = -(-len(text) // chunks)
    pieces = [text[i * size : (i + 1) * size] for i in range(chunks)]
    return [piece or "." for piece in pieces]


def message_json(msg_id: str, model: str, text: str, usage: Usage) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage.as_api(),
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + compact(data) + b"\n\n"


def sse_events(msg_id: str, model: str, pieces: list[str], usage: Usage) -> list[bytes]:
    """Every event of a streamed answer, in Anthropic's order, one `bytes` per event."""
    start_message = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage.as_api(output_tokens=1),
    }
    events = [
        sse("message_start", {"type": "message_start", "message": start_message}),
        sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        sse("ping", {"type": "ping"}),
    ]
    for piece in pieces:
        events.append(
            sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
        )
    events += [
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage.output_tokens},
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]
    return events


def validate_messages_body(payload: object) -> str | None:
    """Anthropic-style complaint about a `/v1/messages` body, or None when it is usable."""
    if not isinstance(payload, dict):
        return "Request body must be a JSON object"
    if not isinstance(payload.get("model"), str) or not payload["model"]:
        return "model: Field required"
    max_tokens = payload.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Field required"
    if not isinstance(payload.get("messages"), list):
        return "messages: Field required"
    return unpaired_tool_blocks(payload["messages"])


def _block_ids(message: object, kind: str, field: str) -> list[str]:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return []
    return [b[field] for b in content if isinstance(b, dict) and b.get("type") == kind and isinstance(b.get(field), str)]


def unpaired_tool_blocks(messages: list) -> str | None:
    """The API's 400 for tool blocks without their partner in the adjacent message."""
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "assistant":
            after = messages[index + 1] if index + 1 < len(messages) else None
            answered = set(_block_ids(after, "tool_result", "tool_use_id"))
            missing = [i for i in _block_ids(message, "tool_use", "id") if i not in answered]
            if missing and after is not None:
                return (f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately "
                        f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                        "`tool_result` block in the next message.")
        elif role == "user":
            before = messages[index - 1] if index > 0 else None
            asked = set(_block_ids(before, "tool_use", "id")) if isinstance(before, dict) and before.get("role") == "assistant" else set()
            unexpected = [i for i in _block_ids(message, "tool_result", "tool_use_id") if i not in asked]
            if unexpected:
                return (f"messages.{index}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{', '.join(unexpected)}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message.")
    return None
