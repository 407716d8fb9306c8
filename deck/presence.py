"""Which sessions the Deck shows, from Claude Code's own files (behaviour §10, Presence).

A session shows iff a tool is running in it, its last real turn (newest `user`/`assistant`
transcript entry carrying a `timestamp`) is at most 30 minutes old, or it started at most
120 s ago. The transcript's mtime counts only when the transcript holds no real turn yet
(harness metadata touches the file even while the session idles), and a pid never counts.

Files live under `CLAUDE_CONFIG_DIR` (default `~/.claude`):
`projects/*/<sid>.jsonl` (transcript) and `state/sessions/<sid>/pin.json` (pinned issue).
Reads are cached per file for a couple of seconds and keyed by (mtime, size).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

LAST_TURN_WINDOW_S = 30 * 60
STARTED_WINDOW_S = 120
CACHE_S = 2.0
TAIL_BYTES = 64 * 1024
MAX_TAIL_BYTES = 16 * 1024 * 1024
_SAFE_SID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def claude_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get("CLAUDE_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(env.get("HOME") or Path.home()) / ".claude"


def is_safe_session_id(sid: str) -> bool:
    """Session ids come from client headers: never let one walk out of Claude's directory."""
    return bool(_SAFE_SID.match(sid))


@dataclass(frozen=True)
class TranscriptInfo:
    last_turn: float | None  # epoch seconds of the newest real turn, None if there is none
    tool_running: bool
    mtime: float


@dataclass(frozen=True)
class Pin:
    issue_id: str
    parent_id: str = ""
    title: str = ""
    status: str = ""
    intent: str = ""


@dataclass(frozen=True)
class Presence:
    visible: bool
    tool_running: bool
    last_turn: float | None  # newest real turn (or the mtime of a stub transcript)


def decide(
    transcript: TranscriptInfo | None, bound_at: float | None, now: float
) -> Presence:
    """The presence rule itself, pure."""
    started_recently = bound_at is not None and now - bound_at <= STARTED_WINDOW_S
    if transcript is None:
        return Presence(started_recently, False, None)
    last = transcript.last_turn if transcript.last_turn is not None else transcript.mtime
    recent = now - last <= LAST_TURN_WINDOW_S
    visible = transcript.tool_running or recent or started_recently
    return Presence(visible, transcript.tool_running, last)


def _timestamp(entry: dict[str, Any]) -> float | None:
    raw = entry.get("timestamp")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        return None


def _blocks(entry: dict[str, Any]) -> list[dict[str, Any]]:
    message = entry.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []


def _message_id(entry: dict[str, Any]) -> object:
    message = entry.get("message")
    return message.get("id") if isinstance(message, dict) else None


def scan_entries(entries: Iterable[dict[str, Any]]) -> tuple[float | None, bool, bool]:
    """(newest real-turn time, tool running, saw an assistant entry) over entries oldest first.

    A tool runs when the newest assistant message (its blocks may be spread over several
    consecutive entries sharing one message id) asked for a `tool_use` that no later
    `tool_result` answered.
    """
    last_turn: float | None = None
    pending: set[str] = set()
    assistant_message: object = None
    saw_assistant = False
    for entry in entries:
        kind = entry.get("type")
        if kind not in ("user", "assistant"):
            continue
        stamp = _timestamp(entry)
        if stamp is not None:
            last_turn = stamp if last_turn is None else max(last_turn, stamp)
        if kind == "assistant":
            message_id = _message_id(entry)
            if not saw_assistant or message_id is None or message_id != assistant_message:
                pending = set()
            saw_assistant = True
            assistant_message = message_id
            pending |= {
                str(block.get("id"))
                for block in _blocks(entry)
                if block.get("type") == "tool_use" and block.get("id")
            }
        else:
            pending -= {
                str(block.get("tool_use_id"))
                for block in _blocks(entry)
                if block.get("type") == "tool_result"
            }
    return last_turn, bool(pending), saw_assistant


def _parse_lines(chunk: bytes) -> list[dict[str, Any]]:
    entries = []
    for line in chunk.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def read_transcript(path: Path) -> TranscriptInfo | None:
    """Read the tail of a transcript, widening it until it holds a real turn and an
    assistant entry (or covers the whole file, up to MAX_TAIL_BYTES)."""
    try:
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            size = stat.st_size
            window = TAIL_BYTES
            while True:
                start = max(0, size - window)
                handle.seek(start)
                chunk = handle.read(size - start)
                if start > 0:
                    chunk = chunk.split(b"\n", 1)[1] if b"\n" in chunk else b""
                last_turn, tool_running, saw_assistant = scan_entries(_parse_lines(chunk))
                done = last_turn is not None and saw_assistant
                if done or start == 0 or window >= MAX_TAIL_BYTES:
                    return TranscriptInfo(last_turn, tool_running, stat.st_mtime)
                window *= 4
    except OSError:
        return None


def read_pin(path: Path) -> Pin | None:
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    def text(key: str) -> str:
        value = raw.get(key)
        return value.strip() if isinstance(value, str) else ""

    issue_id = text("issueId")
    if not issue_id:
        return None
    return Pin(issue_id, text("parentId"), text("title"), text("status").lower(), text("intent"))


class _FileCache:
    """Per-path memo of a parse result, re-checked at most every CACHE_S seconds and
    re-parsed only when (mtime, size) changed."""

    def __init__(self, parse: Callable[[Path], Any], clock: Callable[[], float]) -> None:
        self._parse = parse
        self._clock = clock
        self._entries: dict[Path, tuple[float, tuple[int, int] | None, Any]] = {}

    def get(self, path: Path) -> Any:
        now = self._clock()
        cached = self._entries.get(path)
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[2]
        try:
            stat = os.stat(path)
            key: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = None
        if cached is not None and cached[1] == key:
            value = cached[2]
        else:
            value = self._parse(path) if key is not None else None
        self._entries[path] = (now, key, value)
        return value


class PresenceTracker:
    """Presence and pins for the sessions in the state file, with cached file reads."""

    def __init__(self, root: Path, clock: Callable[[], float]) -> None:
        self.root = root
        self._clock = clock
        self._transcripts = _FileCache(read_transcript, clock)
        self._pins = _FileCache(read_pin, clock)
        self._paths: dict[str, tuple[float, Path | None]] = {}

    def transcript_path(self, sid: str) -> Path | None:
        if not is_safe_session_id(sid):
            return None
        now = self._clock()
        cached = self._paths.get(sid)
        if cached is not None:
            checked_at, known = cached
            if now - checked_at < CACHE_S:
                return known
            if known is not None and known.exists():
                self._paths[sid] = (now, known)
                return known
        found = next(iter(sorted((self.root / "projects").glob(f"*/{sid}.jsonl"))), None)
        self._paths[sid] = (now, found)
        return found

    def presence(self, sid: str, bound_at: float | None, now: float) -> Presence:
        path = self.transcript_path(sid)
        transcript = self._transcripts.get(path) if path is not None else None
        return decide(transcript, bound_at, now)

    def pin(self, sid: str) -> Pin | None:
        if not is_safe_session_id(sid):
            return None
        return self._pins.get(self.root / "state" / "sessions" / sid / "pin.json")
