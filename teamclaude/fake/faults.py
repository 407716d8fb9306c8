"""Faults injected into the fake upstream's next matching requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from teamclaude.fake.accounts import WINDOW_NAMES

FAULT_KINDS = frozenset(
    {
        "429_window",
        "429_retry_after",
        "429_bare",
        "401",
        "403",
        "500",
        "502",
        "503",
        "529",
        "reset_before",
        "reset_midstream",
        "slow_headers",
        "hang",
        "token_delay",
    }
)

# Faults that change how an otherwise normal answer is delivered.
DELIVERY_FAULTS = frozenset({"reset_midstream", "slow_headers"})

# Which request paths a fault applies to unless `path` says otherwise (count_tokens too).
DEFAULT_PATH_PREFIX = "/v1/messages"
TOKEN_PATH = "/v1/oauth/token"


@dataclass
class Fault:
    account: str | None
    kind: str
    remaining: int
    params: dict[str, Any] = field(default_factory=dict)
    path_prefix: str = DEFAULT_PATH_PREFIX

    def matches(self, account: str | None, path: str) -> bool:
        if self.account is not None and self.account != account:
            return False
        return path.startswith(self.path_prefix)


def make_fault(account: str | None, kind: str, count: int, params: dict[str, Any]) -> Fault:
    """A validated fault; ValueError names what is wrong."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r} (one of {', '.join(sorted(FAULT_KINDS))})")
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"fault {kind!r}: count must be a positive integer, got {count!r}")
    params = dict(params)
    path_prefix = params.pop("path", DEFAULT_PATH_PREFIX)
    if kind == "429_window":
        window = params.setdefault("window", "5h")
        if window not in WINDOW_NAMES:
            raise ValueError(f"fault 429_window: window must be one of {', '.join(WINDOW_NAMES)}, got {window!r}")
        params.setdefault("retry_after", True)
    elif kind == "429_retry_after":
        params.setdefault("seconds", 30)
    elif kind == "reset_midstream":
        params.setdefault("after_events", 3)
    elif kind == "slow_headers":
        params.setdefault("seconds", 1.0)
    elif kind == "token_delay":
        path_prefix = TOKEN_PATH
        params.setdefault("seconds", 1.0)
        params.setdefault("commit_if_gone", False)
        if not isinstance(params["commit_if_gone"], bool):
            raise ValueError("fault token_delay: commit_if_gone must be true or false")
    return Fault(account, kind, count, params, path_prefix)


class FaultQueue:
    """Pending faults, first injected first served. Not thread-safe: used under a lock."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()

    def __len__(self) -> int:
        return len(self._faults)

    def take(self, account: str | None, path: str) -> Fault | None:
        """Consume one use of the first fault matching this request."""
        if not self._faults:
            return None
        for index, fault in enumerate(self._faults):
            if fault.matches(account, path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self._faults[index]
                return fault
        return None
