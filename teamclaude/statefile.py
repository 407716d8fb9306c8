"""The live state file for the Deck (behaviour §2, docs/state-file.md).

Written atomically, at most every `min_interval_s` while something changed, and at least
every `heartbeat_s` so readers can tell a running proxy from a dead one. Snapshots are built
on the event loop (cheap dicts); JSON encoding and the disk write run in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from teamclaude.aio import raise_if_cancelled
from teamclaude.atomic import atomic_write

VERSION = 1
logger = logging.getLogger(__name__)


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str)
# About 0.3 ms of encoding per call (sessions, activity lines).
_ITEMS_PER_CALL = 100


def encode_state(snapshot: dict[str, Any], seq: int, written_at: float) -> bytes:
    """Compact JSON, the same bytes `json.dumps` gives, long lists encoded a slice at a time.

    This runs in a worker thread, but the C encoder holds the GIL for a whole call: one
    call over a state with thousands of sessions would stall the proxy's event loop for
    tens of milliseconds. Between slices the interpreter can hand the GIL back to the loop.
    """
    document = {"version": VERSION, "seq": seq, "written_at": written_at, **snapshot}
    members = [f"{_ENCODER.encode(key)}:{_encode_value(value)}" for key, value in document.items()]
    return ("{" + ",".join(members) + "}").encode()


def _encode_value(value: Any) -> str:
    if isinstance(value, list) and len(value) > _ITEMS_PER_CALL:
        pieces = (_ENCODER.encode(value[i:i + _ITEMS_PER_CALL])[1:-1] for i in range(0, len(value), _ITEMS_PER_CALL))
        return "[" + ",".join(pieces) + "]"
    return _ENCODER.encode(value)


NEW_TOKEN_NOT_SAVED = "new token not saved"


def token_problem(account: dict[str, Any]) -> str | None:
    """One line about an account's tokens from its state-file entry, for the CLI views:
    a received pair the accounts file did not take yet, a failing refresh, or (a pool on
    `shared_state`) a pair that cannot be compared with the pool's."""
    unsaved = account.get("token_unsaved")
    if isinstance(unsaved, dict):
        return f"{NEW_TOKEN_NOT_SAVED} ({unsaved.get('error')}; retrying)"
    error = account.get("token_refresh_error")
    if isinstance(error, str) and error:
        return f"refresh failing: {error}"
    shared = account.get("token_shared")
    if isinstance(shared, dict) and isinstance(shared.get("error"), str):
        return f"token not shared: {shared['error']}"
    return None


# Subagent conversations listed per session (docs/state-file.md): the Deck draws the live
# ones; a client inventing agent ids cannot grow the file past this.
MAX_CONVERSATIONS = 32


def bound_conversations(sessions: list[dict[str, Any]], limit: int = MAX_CONVERSATIONS) -> None:
    """Keep at most `limit` conversations per session entry (in place): the main one, then
    those with a request in flight, then the most recently used; `conversations_omitted`
    counts the rest (their tokens stay in the session's usage)."""
    for entry in sessions:
        conversations = entry.get("conversations")
        if not isinstance(conversations, list) or len(conversations) <= limit:
            continue
        ranked = sorted(
            conversations,
            key=lambda c: (c.get("conversation") is not None, not c.get("inflight"), -(c.get("last_used") or 0.0)),
        )
        entry["conversations"] = ranked[:limit]
        entry["conversations_omitted"] = len(conversations) - limit


def read_state(path: Path) -> dict[str, Any] | None:
    """The last state written, or None when missing or unreadable (a reader never crashes)."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


class StateWriter:
    def __init__(
        self,
        path: Path,
        build: Callable[[], dict[str, Any]],
        *,
        min_interval_s: float = 0.5,
        heartbeat_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._build = build
        self._min_interval_s = min_interval_s
        self._heartbeat_s = heartbeat_s
        self._clock = clock
        self._dirty = asyncio.Event()
        self._seq = 0
        self._failing = False
        self.last_error: str | None = None

    @property
    def seq(self) -> int:
        return self._seq

    def mark_dirty(self) -> None:
        self._dirty.set()

    async def run(self) -> None:
        """Write until cancelled."""
        while True:
            raise_if_cancelled()
            try:
                async with asyncio.timeout(self._heartbeat_s):
                    await self._dirty.wait()
            except TimeoutError:
                pass
            self._dirty.clear()
            await self.write_now()
            await asyncio.sleep(self._min_interval_s)

    async def write_now(self) -> None:
        snapshot = self._build()
        self._seq += 1
        payload = (snapshot, self._seq, self._clock())
        try:
            await asyncio.to_thread(self._write, *payload)
        except (OSError, ValueError) as exc:
            self._report(exc)
        else:
            if self._failing:
                logger.info("teamclaude: state file %s is written again", self.path)
            self._failing = False
            self.last_error = None

    def write_sync(self) -> None:
        """Final write at shutdown, when the loop may be going away."""
        self._seq += 1
        try:
            self._write(self._build(), self._seq, self._clock())
        except (OSError, ValueError) as exc:
            self._report(exc)

    def _write(self, snapshot: dict[str, Any], seq: int, written_at: float) -> None:
        atomic_write(self.path, encode_state(snapshot, seq, written_at), mode=0o600)

    def _report(self, exc: Exception) -> None:
        self.last_error = f"cannot write state file {self.path}: {exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc}"
        if not self._failing:
            logger.error("teamclaude: %s (serving continues; reported once)", self.last_error)
        self._failing = True
