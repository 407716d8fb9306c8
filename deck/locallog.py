"""The Deck's own activity lines (results of keyboard actions), shared with worker threads."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LocalLine:
    t: float
    text: str
    level: str = "info"  # info | warn | error


class LocalLog:
    def __init__(self, clock: Callable[[], float] = time.time, keep: int = 50) -> None:
        self._clock = clock
        self._lines: deque[LocalLine] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, text: str, level: str = "info") -> None:
        with self._lock:
            self._lines.append(LocalLine(self._clock(), text, level))

    def lines(self) -> tuple[LocalLine, ...]:
        with self._lock:
            return tuple(self._lines)
