"""Capacity model (behaviour §8.2): 5-hour burn, the learned 5-hour cap, and the pool verdict.

Burn counts the tokens that consume quota: input, cache writes and output (not cache reads).
It is kept in fixed 5-minute buckets so the 5-hour sum costs O(1) amortised per call and
the buckets can be persisted as they are.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

BURN_HORIZON_S = 5 * 3600.0
BURN_BUCKET_S = 300.0
CAP_HALF_LIFE_S = 24 * 3600.0
CAP_RAISE_FRACTION = 0.75
# Below this 5h utilization the header is too coarse to scale burn into a cap estimate.
MIN_UTILIZATION_FOR_ESTIMATE = 0.10
SESSIONS_PER_LIVE_ACCOUNT = 3


def _finite_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class BurnMeter:
    """Tokens burned per 5-minute bucket over the last 5 hours."""

    def __init__(self) -> None:
        self._buckets: deque[list[float]] = deque()  # [bucket_start, tokens], ascending
        self._total = 0.0

    def add(self, tokens: int, now: float) -> None:
        if tokens <= 0:
            return
        start = math.floor(now / BURN_BUCKET_S) * BURN_BUCKET_S
        if self._buckets and self._buckets[-1][0] == start:
            self._buckets[-1][1] += tokens
        elif self._buckets and self._buckets[-1][0] > start:
            # A clock step backwards: book it in the newest bucket rather than reorder.
            self._buckets[-1][1] += tokens
        else:
            self._buckets.append([start, float(tokens)])
        self._total += tokens
        self._prune(now)

    def total(self, now: float) -> int:
        self._prune(now)
        return int(round(self._total))

    def _prune(self, now: float) -> None:
        oldest_kept = now - BURN_HORIZON_S
        while self._buckets and self._buckets[0][0] + BURN_BUCKET_S <= oldest_kept:
            self._total -= self._buckets.popleft()[1]
        if not self._buckets:
            self._total = 0.0

    def export(self, now: float) -> list[list[float]]:
        self._prune(now)
        return [[start, tokens] for start, tokens in self._buckets]

    @classmethod
    def restore(cls, data: object, now: float) -> BurnMeter:
        """Rebuild from exported buckets; entries that do not validate are skipped."""
        meter = cls()
        if not isinstance(data, list):
            return meter
        pairs: list[tuple[float, float]] = []
        for item in data:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                continue
            start, tokens = _finite_number(item[0]), _finite_number(item[1])
            if start is None or tokens is None or tokens <= 0 or start > now:
                continue
            pairs.append((math.floor(start / BURN_BUCKET_S) * BURN_BUCKET_S, tokens))
        for start, tokens in sorted(pairs):
            if meter._buckets and meter._buckets[-1][0] == start:
                meter._buckets[-1][1] += tokens
            else:
                meter._buckets.append([start, tokens])
            meter._total += tokens
        meter._prune(now)
        return meter


@dataclass
class LearnedCap:
    """Estimate of an account's 5-hour cap in burn tokens.

    - A success whose burn exceeds 75 % of the estimate raises it (to burn / 0.75).
    - The estimate decays toward the highest successful burn seen since it was last set
      from a rejection, with a 24 h half-life (the cap is at least that burn).
    - A 5h rejection sets it to the burn at that moment: the cap was just reached.
    - Before any rejection, a success with a known 5h utilization seeds it as
      burn / utilization (the header says what share of the cap that burn is).
    """

    value: float | None = None
    set_at: float = 0.0
    peak_success: float = 0.0

    def current(self, now: float) -> float | None:
        if self.value is None:
            return None
        if self.peak_success <= 0 or self.value <= self.peak_success:
            return self.value
        elapsed = max(0.0, now - self.set_at)
        factor: float = 0.5 ** (elapsed / CAP_HALF_LIFE_S)  # float ** float is typed Any
        return self.peak_success + (self.value - self.peak_success) * factor

    def on_success(self, burn: int, utilization_5h: float | None, now: float) -> None:
        if burn <= 0:
            return
        current = self.current(now)
        self.peak_success = max(self.peak_success, float(burn))
        if current is None:
            if utilization_5h is not None and utilization_5h >= MIN_UTILIZATION_FOR_ESTIMATE:
                self._set(max(burn / utilization_5h, float(burn)), now)
            return
        if burn > current * CAP_RAISE_FRACTION:
            self._set(burn / CAP_RAISE_FRACTION, now)
        else:
            self._set(current, now)

    def on_rejection(self, burn: int, now: float) -> None:
        if burn <= 0:
            return
        self.peak_success = 0.0
        self._set(float(burn), now)

    def _set(self, value: float, now: float) -> None:
        self.value = value
        self.set_at = now

    def export(self) -> dict[str, float] | None:
        if self.value is None:
            return None
        return {"value": self.value, "set_at": self.set_at, "peak_success": self.peak_success}

    @classmethod
    def restore(cls, data: object) -> LearnedCap:
        if not isinstance(data, dict):
            return cls()
        value = _finite_number(data.get("value"))
        set_at = _finite_number(data.get("set_at"))
        peak = _finite_number(data.get("peak_success"))
        if value is None or value <= 0 or set_at is None:
            return cls()
        return cls(value=value, set_at=set_at, peak_success=peak if peak and peak > 0 else 0.0)


@dataclass(frozen=True)
class AccountCapacity:
    """One account's line in the /capacity answer."""

    name: str
    status: str
    benched: bool
    bench_sec: int
    inflight: int
    burn5h: int
    cap_est_5h: int | None
    headroom_tok: int | None
    live: bool
    unconstrained: bool
    warm_sessions: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "benched": self.benched,
            "benchSec": self.bench_sec,
            "inflight": self.inflight,
            "burn5h": self.burn5h,
            "capEst5h": self.cap_est_5h,
            "headroomTok": self.headroom_tok,
            "live": self.live,
        }


def pool_capacity(
    accounts: list[AccountCapacity], soonest_reset: float | None, now: float
) -> dict[str, Any]:
    """The behaviour §9 `/capacity` document from per-account lines.

    headroom = live unconstrained accounts × 3 − warm sessions; verdict red when no account
    is live, yellow when any is benched or headroom ≤ 1, else green.
    """
    live = [a for a in accounts if a.live]
    benched = sum(1 for a in accounts if a.benched)
    warm = sum(a.warm_sessions for a in accounts)
    headroom = sum(1 for a in live if a.unconstrained) * SESSIONS_PER_LIVE_ACCOUNT - warm
    if not live:
        verdict = "red"
    elif benched or headroom <= 1:
        verdict = "yellow"
    else:
        verdict = "green"
    return {
        "verdict": verdict,
        "headroom": headroom,
        "liveAccounts": len(live),
        "benched": benched,
        "total": len(accounts),
        "warmSessions": warm,
        "soonestResetSec": None if soonest_reset is None else max(0, math.ceil(soonest_reset - now)),
        "accounts": [a.as_dict() for a in accounts],
        "at": now,
    }
