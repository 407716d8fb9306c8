"""Which accounts are in their last ramp tier (use it or lose it), kept up to date without
scanning every account on every request.

An account drains from `ramp_tiers[0]` hours before its weekly reset until the reset. The
watch learns each account's moments from its own responses (O(1) per response) and keeps
the set of draining accounts plus the soonest moment another one starts; only when that
moment passes, or the account list or settings change, does it look at every account.
A warm conversation's selection then costs O(draining accounts), usually O(1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from routing.account_state import SEVEN_DAY, AccountState


class DrainWatch:
    def __init__(self) -> None:
        self._draining: set[str] = set()
        self._next_start = -math.inf  # unknown: look at every account on the next query
        self._lead_s = 0.0

    def reset(self, lead_s: float) -> None:
        """Forget everything (accounts or `ramp_tiers` changed)."""
        self._lead_s = lead_s
        self._draining.clear()
        self._next_start = -math.inf

    def _span(self, state: AccountState, now: float) -> tuple[float, float] | None:
        if self._lead_s <= 0:
            return None
        week = state.window(SEVEN_DAY, now)
        if week is None or week.reset is None:
            return None
        return week.reset - self._lead_s, week.reset

    def update(self, state: AccountState, now: float) -> None:
        """An account's weekly window may have changed (a response was observed)."""
        span = self._span(state, now)
        if span is not None and span[0] <= now < span[1]:
            self._draining.add(state.name)
        else:
            self._draining.discard(state.name)
            if span is not None and span[0] > now:
                self._next_start = min(self._next_start, span[0])

    def draining(self, accounts: dict[str, AccountState], now: float) -> Iterable[AccountState]:
        """The accounts in their last ramp tier now (a superset is harmless: the caller
        checks each one's facts)."""
        if now >= self._next_start:
            self._draining.clear()
            self._next_start = math.inf
            for state in accounts.values():
                self.update(state, now)
        return [accounts[name] for name in list(self._draining) if name in accounts]
