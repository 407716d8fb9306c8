"""The recent-requests log shown by the Deck (a bounded ring of plain dicts)."""

from __future__ import annotations

from collections import deque
from typing import Any

MAX_LINES = 200


class ActivityLog:
    def __init__(self, size: int = MAX_LINES) -> None:
        self._lines: deque[dict[str, Any]] = deque(maxlen=size)

    def add(self, **line: Any) -> None:
        self._lines.append(line)

    def lines(self) -> list[dict[str, Any]]:
        return list(self._lines)
