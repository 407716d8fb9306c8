"""Reading the proxy's state file: cheap when nothing changed, tolerant when it is broken.

`StateReader.poll()` stats the file first and reads it only when it changed on disk; it then
peeks at the top-level `seq` and decodes the JSON only when `seq` moved. A missing, partial
or garbage file never replaces the last good state: it only sets a one-line `problem`.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from deck.model import State, parse_state

STALE_AFTER_S = 5.0
_SEQ_PATTERN = re.compile(rb'"seq"\s*:\s*(-?\d+)')
_PEEK_BYTES = 1024


@dataclass(frozen=True)
class Snapshot:
    path: Path
    state: State | None  # the last good state, possibly from an earlier read
    problem: str | None  # why the latest read did not give a state, if it did not


class StateReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.parse_count = 0  # JSON decodes done; lets tests see that unchanged seq is skipped
        self._stamp: tuple[int, int, int] | None = None
        self._state: State | None = None
        self._problem: str | None = None

    def poll(self) -> Snapshot:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._stamp = None
            self._problem = f"proxy not running (no state file at {self.path})"
            return self._snapshot()
        except OSError as exc:
            self._stamp = None
            self._problem = f"cannot read state file {self.path}: {exc.strerror}"
            return self._snapshot()
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._read(stamp)
        return self._snapshot()

    def _read(self, stamp: tuple[int, int, int]) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            self._problem = f"proxy not running (no state file at {self.path})"
            return
        except OSError as exc:
            self._problem = f"cannot read state file {self.path}: {exc.strerror}"
            return
        self._stamp = stamp
        seq = peek_seq(data)
        if seq is not None and self._state is not None and seq == self._state.seq:
            self._problem = None
            return
        self.parse_count += 1
        try:
            state = parse_state(json.loads(data))
        except (ValueError, UnicodeDecodeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            kept = "; showing the last good view" if self._state is not None else ""
            self._problem = f"state file unreadable ({reason}){kept}"
            return
        self._state = state
        self._problem = None

    def _snapshot(self) -> Snapshot:
        return Snapshot(self.path, self._state, self._problem)


def peek_seq(data: bytes) -> int | None:
    """The top-level `seq` if it appears early in the file, else None (then decode it all).

    Only a match at nesting depth 1 counts, so a `"seq"` inside a nested object or a string
    is never mistaken for the file's own counter.
    """
    head = data[:_PEEK_BYTES]
    for match in _SEQ_PATTERN.finditer(head):
        if _depth_at(head, match.start()) == 1:
            return int(match.group(1))
    return None


def _depth_at(data: bytes, end: int) -> int | None:
    """JSON object/array nesting depth at byte `end`; None when `end` lies inside a string."""
    depth = 0
    in_string = False
    escaped = False
    for byte in data[:end]:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):
            depth += 1
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return None if in_string else depth


def staleness(snapshot: Snapshot, now: float) -> str | None:
    """The warning the header shows about the proxy's liveness, or None when all is fresh."""
    if snapshot.problem:
        return snapshot.problem
    state = snapshot.state
    if state is None or state.written_at is None:
        return None
    age = now - state.written_at
    if age <= STALE_AFTER_S:
        return None
    since = time.strftime("%H:%M:%S", time.localtime(state.written_at))
    return f"state stale since {since} ({int(age)}s): is the proxy running?"
