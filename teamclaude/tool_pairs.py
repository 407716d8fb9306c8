"""Remove provably unpaired `tool_use` / `tool_result` blocks (issue 14). Pure, no I/O.

The Messages API answers a non-retryable 400 when an assistant `tool_use` has no
`tool_result` with its id in the next user message, or a `tool_result` answers no `tool_use`
of the assistant message right before it. A compacted or interrupted Claude Code
conversation can carry such a block, and then every later request of the session fails.

Only blocks that are unpaired whether or not the API first merges consecutive messages of
one role into one turn are removed:

- a `tool_use` whose id appears in no `tool_result` of the next turn, when that turn is a
  user turn (a `tool_use` in the final message, or before junk, is left alone);
- a `tool_result` in the first turn, or whose id appears in no `tool_use` of the assistant
  turn right before it.

Nothing is invented (no stand-in result). A message left without content is dropped (the API
refuses empty content). Anything not shaped like a message (junk, unknown roles, content
neither a string nor a list) is left in place and stops the pairing around it. A body that
needs no repair is returned as the very same bytes; a repaired one is re-serialized (compact,
key order kept, numbers as Python reads them, a repeated key keeps its last value).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# The API refuses Messages requests above 32 MB: a larger body is not worth parsing.
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_NOTES = 20

_ROLES = ("user", "assistant")


@dataclass(frozen=True)
class Repair:
    """The body to send and one note per removal (empty when nothing changed)."""

    body: bytes
    notes: tuple[str, ...] = ()


def repair(body: bytes) -> Repair:
    """`body` without its provably unpaired tool blocks."""
    if not body or b"tool_" not in body or len(body) > MAX_BODY_BYTES:
        return Repair(body)
    try:
        document = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return Repair(body)
    messages = document.get("messages") if isinstance(document, dict) else None
    if not isinstance(messages, list):
        return Repair(body)
    notes = _remove_unpaired(messages)
    if not notes:
        return Repair(body)
    try:
        repaired = _dump(document)
    except (ValueError, RecursionError):
        return Repair(body, ("unpaired tool blocks found but the body could not be re-serialized; sent as it was",))
    if len(notes) > MAX_NOTES:
        notes = [*notes[:MAX_NOTES], f"… and {len(notes) - MAX_NOTES} more"]
    return Repair(repaired, tuple(notes))


def _dump(document: Any) -> bytes:
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (from a \ud800 escape): keep it escaped
        return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("ascii")


def _role(message: Any) -> str | None:
    """The role of a well-formed message, None for anything else."""
    if not isinstance(message, dict) or message.get("role") not in _ROLES:
        return None
    content = message.get("content")
    return message["role"] if isinstance(content, (str, list)) else None


def _ids(message: dict[str, Any], kind: str, field: str) -> set[str]:
    content = message["content"]
    if not isinstance(content, list):
        return set()
    return {
        block[field] for block in content
        if isinstance(block, dict) and block.get("type") == kind and isinstance(block.get(field), str)
    }


def _turns(messages: list[Any]) -> list[tuple[str | None, list[int]]]:
    """Runs of consecutive well-formed messages of one role; each junk message is its own run
    with role None."""
    turns: list[tuple[str | None, list[int]]] = []
    for index, message in enumerate(messages):
        role = _role(message)
        if role is not None and turns and turns[-1][0] == role:
            turns[-1][1].append(index)
        else:
            turns.append((role, [index]))
    return turns


def _remove_unpaired(messages: list[Any]) -> list[str]:
    """Edit `messages` in place; one note per removed block or dropped message."""
    turns = _turns(messages)
    uses = [set().union(*(_ids(messages[i], "tool_use", "id") for i in idx)) if role == "assistant" else set()
            for role, idx in turns]
    results = [set().union(*(_ids(messages[i], "tool_result", "tool_use_id") for i in idx)) if role == "user" else set()
               for role, idx in turns]
    doomed: dict[int, tuple[set[str], set[str]]] = {}  # message index -> (tool_use ids, tool_result ids)
    for t, (role, indices) in enumerate(turns):
        if role == "assistant" and t + 1 < len(turns) and turns[t + 1][0] == "user":
            for i in indices:
                unpaired = _ids(messages[i], "tool_use", "id") - results[t + 1]
                if unpaired:
                    doomed.setdefault(i, (set(), set()))[0].update(unpaired)
        elif role == "user" and (t == 0 or turns[t - 1][0] == "assistant"):
            answered = uses[t - 1] if t > 0 else set()
            for i in indices:
                unpaired = _ids(messages[i], "tool_result", "tool_use_id") - answered
                if unpaired:
                    doomed.setdefault(i, (set(), set()))[1].update(unpaired)
    notes: list[str] = []
    emptied: list[int] = []
    for i, (use_ids, result_ids) in sorted(doomed.items()):
        kept = []
        for block in messages[i]["content"]:
            if isinstance(block, dict) and block.get("type") == "tool_use" and block.get("id") in use_ids:
                notes.append(f"removed tool_use {block['id']} from messages[{i}]: no tool_result for it in the next message")
            elif isinstance(block, dict) and block.get("type") == "tool_result" and block.get("tool_use_id") in result_ids:
                notes.append(f"removed tool_result for {block['tool_use_id']} from messages[{i}]: "
                             "no such tool_use in the message before")
            else:
                kept.append(block)
        messages[i]["content"] = kept
        if not kept:
            emptied.append(i)
    for i in reversed(emptied):
        del messages[i]
    notes += [f"dropped messages[{i}]: nothing left in it" for i in emptied]
    return notes
