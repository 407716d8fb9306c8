"""What the engine knows about one account: quota windows, benches, load and usage.

Everything here is learned from response headers and finished requests; time is passed in.
A window whose reset has passed is gone: the quota it described has been renewed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from routing.capacity import BurnMeter, LearnedCap
from routing.config import RoutingConfig
from routing.ratelimits import RateLimits, Window, window_applies_to_model
from routing.types import AccountSpec
from routing.usage import Usage

WEEK_S = 7 * 24 * 3600.0
FIVE_HOUR = "5h"
SEVEN_DAY = "7d"

_WINDOW_TOKEN = re.compile(r"[A-Za-z0-9_]+")


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
        self.needs_login = False
        self.bench: Bench | None = None
        self.family_benches: dict[str, Bench] = {}
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
        if 200 <= status < 300:
            self.proven = True
        for name, window in limits.windows.items():
            self.windows[name] = believable(name, window, now)
        self.unified.update(limits.unified)
        self.raw.update(limits.raw)
        for name in limits.unknown:
            if name not in self.new_headers:
                self.new_headers.append(name)
        self._drop_passed_windows(now)
        self._extend_benches_to_resets(now)

    def _drop_passed_windows(self, now: float) -> None:
        for name in [n for n, w in self.windows.items() if w.reset is not None and w.reset <= now]:
            del self.windows[name]

    def _extend_benches_to_resets(self, now: float) -> None:
        """A bench never ends before the known reset of the window that caused it."""
        for bench in (self.bench, *self.family_benches.values()):
            if bench is None or bench.window is None:
                continue
            window = self.windows.get(bench.window)
            if window is not None and window.rejected and window.reset is not None:
                reset = min(window.reset, now + window_length(bench.window))
                bench.until = max(bench.until, reset)

    def window(self, name: str, now: float) -> Window | None:
        window = self.windows.get(name)
        if window is not None and window.reset is not None and window.reset <= now:
            del self.windows[name]
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
        self._drop_passed_windows(now)
        for name, window in self.windows.items():
            if not window_applies_to_model(name, model):
                continue
            if window.rejected:
                return name
            if (
                threshold is not None
                and window.utilization is not None
                and window.utilization >= threshold
            ):
                return name
        return None

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
            # transparent failover), so the 5h warn band, soft ceiling and switch threshold
            # do not apply to it.
            draining = bool(config.ramp_tiers) and hours_left <= config.ramp_tiers[0][0]
        if config.probe_gate and not self.proven:
            cap = 1
        elif used_5h is not None and used_5h >= config.five_hour_warn and not draining:
            cap = 1
        else:
            cap = max(1, config.max_inflight_per_account)
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
        """Bench until `until`, or the known reset of a window named in `reason` if later
        (the latest of them when several are named: "5h/7d window rejected").

        A reset further away than the window's own length is not believed: the bench then
        extends only that far.
        """
        window_name: str | None = None
        for name in self._windows_named_in(reason):
            window = self.window(name, now)
            if window is None or window.reset is None:
                continue
            reset = min(window.reset, now + window_length(name))
            if reset > until:
                until, window_name = reset, name
            elif window_name is None:
                window_name = name
        target = self.family_benches.get(family) if family else self.bench
        if target is not None and target.until > until and target.until > now:
            return
        bench = Bench(until=until, reason=reason, window=window_name)
        if family:
            self.family_benches[family] = bench
        else:
            self.bench = bench

    def _windows_named_in(self, reason: str) -> list[str]:
        return [token for token in _WINDOW_TOKEN.findall(reason) if token in self.windows]

    def bench_for(self, family: str | None, now: float) -> Bench | None:
        """The bench that stops a request of `family` now (the account-wide one first)."""
        if self.bench is not None and self.bench.until <= now:
            self.bench = None
        if self.bench is not None:
            return self.bench
        if family is None:
            return None
        bench = self.family_benches.get(family)
        if bench is not None and bench.until <= now:
            del self.family_benches[family]
            return None
        return bench

    def status(self, now: float) -> str:
        if self.spec.disabled:
            return "disabled"
        if self.needs_login:
            return "needs-login"
        if self.bench_for(None, now) is not None:
            return "benched"
        if self.last_seen is None:
            return "unknown"
        return "ok"

    def can_be_selected(self, now: float) -> bool:
        """Enabled, logged in and not benched for every model."""
        return not self.spec.disabled and not self.needs_login and self.bench_for(None, now) is None
