"""What the engine knows about one account: quota windows, benches, load and usage.

Everything here is learned from response headers and finished requests; time is passed in.
A window whose reset has passed is gone: the quota it described has been renewed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from routing.capacity import BurnMeter, LearnedCap
from routing.config import RoutingConfig
from routing.failures import COOLDOWN_MARK
from routing.ratelimits import RateLimits, Window, model_family, window_applies_to_model, window_family
from routing.types import AccountSpec
from routing.usage import Usage

WEEK_S = 7 * 24 * 3600.0
FIVE_HOUR = "5h"
SEVEN_DAY = "7d"

_WINDOW_TOKEN = re.compile(r"[A-Za-z0-9_]+")
# A model-scoped reading (7d_oi, 7d_sonnet) may only be refreshed by that family's own
# responses: once it is this old it no longer keeps the family away, so one request of the
# family re-checks it (a 429 then benches the family until the window's reset).
FAMILY_RECHECK_S = 3600.0


def window_length(name: str) -> float:
    """How long a window lasts: 5 hours for `5h`, a week for the weekly ones."""
    return 5 * 3600.0 if name == FIVE_HOUR else WEEK_S


def believable(name: str, window: Window, now: float) -> Window:
    """The window with a reset no further away than the window lasts.

    A garbled far-future reset on a rejected window would otherwise keep the account out
    of rotation for good: it gets no requests, so no header could ever correct it.
    """
    if window.reset is not None and window.reset > now + window_length(name):
        return Window(window.utilization, now + window_length(name), window.status)
    return window


@dataclass
class Bench:
    """The account may not serve (all models, or one model family) before `until`."""

    until: float
    reason: str
    window: str | None = None

    @property
    def cooldown(self) -> bool:
        """A short 529/5xx cooldown: it keeps new conversations away, not warm ones."""
        return COOLDOWN_MARK in self.reason


@dataclass
class UsageTotals:
    """Requests, tokens and cost added up (per account, per session, per model, overall)."""

    requests: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0

    def add(self, usage: Usage | None, cost: float) -> None:
        self.requests += 1
        if usage is not None:
            self.usage = self.usage + usage
            self.cost_usd += cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            **self.usage.as_dict(),
            "tokens": self.usage.total,
            "cost_usd": round(self.cost_usd, 6),
        }

    @classmethod
    def restore(cls, data: object) -> UsageTotals:
        if not isinstance(data, dict):
            return cls()
        requests = data.get("requests")
        cost = data.get("cost_usd")
        return cls(
            requests=requests if isinstance(requests, int) and not isinstance(requests, bool) and requests >= 0 else 0,
            usage=Usage.restore(data),
            cost_usd=float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0 else 0.0,
        )


@dataclass(frozen=True)
class PaceFacts:
    """An account's position at one instant (behaviour §5 definitions)."""

    utilization_5h: float | None
    utilization_7d: float | None
    hours_to_weekly_reset: float | None
    pace_line: float | None  # share of its own week elapsed
    pace_gap: float | None  # line - 7d utilization: positive = behind = wants work
    ramp_boost: float
    score: float | None  # gap + boost; None = no weekly data yet
    far_over_line: bool
    draining: bool  # in the last ramp tier: used until rejected
    inflight_cap: int
    under_rail: bool


class AccountState:
    def __init__(self, spec: AccountSpec) -> None:
        self.spec = spec
        self.windows: dict[str, Window] = {}
        self.unified: dict[str, str] = {}
        self.raw: dict[str, str] = {}
        self.new_headers: list[str] = []
        self.proven = False
        self.inflight = 0
        # Requests in flight on this account at the pool's other proxies (shared state).
        self.remote_inflight = 0
        self.needs_login = False
        self.bench: Bench | None = None
        self.family_benches: dict[str, Bench] = {}
        self.seen: dict[str, float] = {}  # when each window was last in a response
        self.version = 0  # bumped on every change of what selection reads (views cache on it)
        self.last_seen: float | None = None
        self.usage = UsageTotals()
        self.burn = BurnMeter()
        self.cap = LearnedCap()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_api_key(self) -> bool:
        return self.spec.kind == "apikey"

    # -- headers ---------------------------------------------------------------------

    def observe(self, status: int, limits: RateLimits, now: float) -> None:
        """Store what one response's headers said. A 2xx proves the account."""
        self.last_seen = now
        self.version += 1
        if 200 <= status < 300:
            self.proven = True
        for name, window in limits.windows.items():
            if window.reset is not None and window.reset <= now:
                if not window.rejected:
                    continue  # already renewed: it says nothing about the quota now
                # Rejected "until a moment that has passed" is no usable reset: the window
                # then ends one window length after it was seen (`window_end`).
                window = Window(window.utilization, None, window.status)
            self.windows[name] = believable(name, window, now)
            self.seen[name] = now
        self.unified.update(limits.unified)
        self.raw.update(limits.raw)
        for name in limits.unknown:
            if name not in self.new_headers:
                self.new_headers.append(name)
        self._drop_passed_windows(now)
        self._extend_benches_to_resets(now)

    def window_end(self, name: str, window: Window) -> float:
        """When a stored window stops counting: its reset, or for a window with no usable
        reset (missing, garbled, passed) one window length after it was last seen."""
        if window.reset is not None:
            return window.reset
        return self.seen.get(name, 0.0) + window_length(name)

    def _drop_passed_windows(self, now: float) -> None:
        for name in [n for n, w in self.windows.items() if self.window_end(n, w) <= now]:
            del self.windows[name]
            self.seen.pop(name, None)

    def _extend_benches_to_resets(self, now: float) -> None:
        """A bench never ends before the known reset of the window that caused it."""
        for bench in (self.bench, *self.family_benches.values()):
            if bench is None or bench.window is None:
                continue
            window = self.windows.get(bench.window)
            if window is not None and window.rejected:
                reset = min(self.window_end(bench.window, window), now + window_length(bench.window))
                bench.until = max(bench.until, reset)

    def window(self, name: str, now: float) -> Window | None:
        window = self.windows.get(name)
        if window is not None and self.window_end(name, window) <= now:
            del self.windows[name]
            self.seen.pop(name, None)
            return None
        return window

    def utilization(self, name: str, now: float) -> float | None:
        window = self.window(name, now)
        return None if window is None else window.utilization

    def live_windows(self, now: float) -> dict[str, Window]:
        self._drop_passed_windows(now)
        return dict(self.windows)

    def blocking_window(self, model: str | None, now: float, threshold: float | None) -> str | None:
        """The first window that stops a request for `model`: rejected, or with its
        utilization at `threshold` (None: only a rejection stops it)."""
        return next(self._blocking_windows(model, now, threshold), None)

    def _blocking_windows(self, model: str | None, now: float, threshold: float | None) -> Iterator[str]:
        self._drop_passed_windows(now)
        for name, window in self.windows.items():
            if not window_applies_to_model(name, model):
                continue
            if window_family(name) is not None and now - self.seen.get(name, now) >= FAMILY_RECHECK_S:
                continue  # a stale family reading: let one request re-check it
            if window.rejected or (
                threshold is not None
                and window.utilization is not None
                and window.utilization >= threshold
            ):
                yield name

    # -- pace and load ---------------------------------------------------------------

    def facts(self, config: RoutingConfig, now: float) -> PaceFacts:
        """Everything the policy derives from the windows, computed once per request."""
        week = self.window(SEVEN_DAY, now)
        five = self.window(FIVE_HOUR, now)
        used_5h = None if five is None else five.utilization
        used_7d = None if week is None else week.utilization
        line = hours_left = None
        if week is not None and week.reset is not None:
            line = min(1.0, max(0.0, 1.0 - (week.reset - now) / WEEK_S))
            hours_left = max(0.0, (week.reset - now) / 3600.0)
        gap = None if line is None or used_7d is None else line - used_7d
        boost = 0.0
        draining = False
        if hours_left is not None and used_7d is not None:
            weight = next((w for bound, w in config.ramp_tiers if bound >= hours_left), 0.0)
            boost = max(0.0, 1.0 - used_7d) * weight
            # In the last ramp tier the quota left now is lost at the reset, hours away:
            # slowing the account before its 5h cap saves nothing (a 5h rejection costs one
            # transparent failover), so the 5h soft ceiling and switch threshold do not
            # apply to it.
            draining = bool(config.ramp_tiers) and hours_left <= config.ramp_tiers[0][0]
        # No in-flight cap of 1 in the 5h warn band: in bench/simulate.py it bought nothing
        # but detours (two overlapping requests of warm conversations) and 429s.
        cap = 1 if config.probe_gate and not self.proven else max(1, config.max_inflight_per_account)
        return PaceFacts(
            utilization_5h=used_5h,
            utilization_7d=used_7d,
            hours_to_weekly_reset=hours_left,
            pace_line=line,
            pace_gap=gap,
            ramp_boost=boost,
            score=None if gap is None else gap + boost,
            far_over_line=gap is not None and -gap > config.far_over_line,
            draining=draining,
            inflight_cap=cap,
            under_rail=draining or used_5h is None or used_5h < config.five_hour_soft_ceiling,
        )

    # -- benches ---------------------------------------------------------------------

    def set_bench(self, until: float, reason: str, family: str | None, now: float) -> None:
        """Bench `family` (None: every model) until `until`, and each window named in
        `reason` ("5h/7d_oi window rejected") on what it governs until its end: `5h` and
        `7d` the whole account, `7d_oi` the premium models, `7d_sonnet` Sonnet. A bench
        never ends before the known end of a window of its own scope named in `reason`.

        A reset further away than the window's own length is not believed: the bench then
        extends only that far.
        """
        scopes: dict[str | None, Bench] = {family: Bench(until, reason)}
        for name in self._windows_named_in(reason):
            window = self.window(name, now)
            if window is None:
                continue
            end = min(self.window_end(name, window), now + window_length(name))
            bench = scopes.setdefault(window_family(name), Bench(now, reason))
            if end > bench.until:
                bench.until, bench.window = end, name
            elif bench.window is None:
                bench.window = name
        for scope, bench in scopes.items():
            self._bench(scope, bench, now)

    def _bench(self, family: str | None, bench: Bench, now: float) -> None:
        target = self.family_benches.get(family) if family else self.bench
        if target is not None and target.until > bench.until and target.until > now:
            return
        if bench.until <= now:
            return
        self.version += 1
        if family:
            self.family_benches[family] = bench
        else:
            self.bench = bench

    def _windows_named_in(self, reason: str) -> list[str]:
        return [token for token in _WINDOW_TOKEN.findall(reason) if token in self.windows]

    def bench_for(self, family: str | None, now: float, ignore_cooldown: bool = False) -> Bench | None:
        """The bench that stops a request of `family` now (the account-wide one first)."""
        if self.bench is not None and self.bench.until <= now:
            self.bench = None
        if self.bench is not None and not (ignore_cooldown and self.bench.cooldown):
            return self.bench
        if family is None:
            return None
        bench = self.family_benches.get(family)
        if bench is not None and bench.until <= now:
            del self.family_benches[family]
            return None
        if bench is not None and ignore_cooldown and bench.cooldown:
            return None
        return bench

    def family_recheck_at(self, now: float) -> list[float]:
        """When model-scoped readings that block now become stale enough to re-check."""
        return [
            self.seen[name] + FAMILY_RECHECK_S
            for name in self.windows
            if window_family(name) is not None and name in self.seen
            and self.seen[name] + FAMILY_RECHECK_S > now
        ]

    def locked_until(self, now: float, threshold: float | None = None) -> float | None:
        """When the account can serve some model again, if it cannot now: the later of its
        account-wide bench and the end of every window binding every model that is rejected
        (or, given a `threshold`, used at or above it)."""
        self._drop_passed_windows(now)
        ends = [
            self.window_end(name, window)
            for name, window in self.windows.items()
            if window_family(name) is None and (
                window.rejected or (threshold is not None and window.utilization is not None
                                    and window.utilization >= threshold))
        ]
        bench = self.bench_for(None, now)
        if bench is not None:
            ends.append(bench.until)
        return max(ends) if ends else None

    def free_at(self, model: str | None, now: float, threshold: float | None) -> float | None:
        """When the account can serve `model` again (None: it can now, as far as benches
        and windows go; `math.inf`: not by waiting). Used to tell a transient obstacle from
        a lasting one."""
        if self.spec.disabled or self.needs_login:
            return math.inf
        ends: list[float] = []
        bench = self.bench_for(model_family(model), now)
        if bench is not None:
            ends.append(bench.until)
        ends.extend(
            self.window_end(name, self.windows[name])
            for name in list(self._blocking_windows(model, now, threshold))
        )
        return max(ends) if ends else None

    def status(self, now: float) -> str:
        if self.spec.disabled:
            return "disabled"
        if self.needs_login:
            return "needs-login"
        if self.locked_until(now) is not None:
            return "benched"
        if self.last_seen is None:
            return "unknown"
        return "ok"

    def can_be_selected(self, now: float) -> bool:
        """Enabled, logged in and not benched for every model."""
        return not self.spec.disabled and not self.needs_login and self.bench_for(None, now) is None
