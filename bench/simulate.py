"""Routing simulation: the real engine against a simulated week of fleet work.

    .venv/bin/python bench/simulate.py            # full run (two scenarios, ~8 days each)
    .venv/bin/python bench/simulate.py --quick    # shorter run (2.6 days)

Accounts have hidden 5-hour and 7-day caps and staggered weekly resets (one resets in 6 hours
with 40 % unused, one is fresh, one is nearly spent). Sessions arrive, stay warm and end;
bursts of 20 subagent sessions start at once; nights are quiet. Every fake response carries
the `anthropic-ratelimit-unified-*` headers Anthropic would send for the hidden caps, fed
through the real header parser into `Router.observe`.

A 429 is handled like the proxy does: the account is benched until the rejected window's
reset and the request fails over to another account; when no account can serve, the request
is held (woken by the engine's next change, else polled every 5 s) and after the hold budget
the client sees a 429 and retries after `retry-after`.

Our policy runs side by side with baselines that share everything but the choice (same
usable set, benches, failover and holds): round robin, least-loaded, threshold rotation
(stay until 98 %, then the account with the soonest weekly reset). An ideal fluid schedule
(earliest weekly reset first, within the hidden caps, perfect knowledge) is the upper bound.

Prints a table per scenario and writes JSON to bench/results/simulate.json.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from routing.config import RoutingConfig  # noqa: E402
from routing.engine import Plan, Router  # noqa: E402
from routing.ratelimits import model_family, parse_ratelimit_headers  # noqa: E402
from routing.types import AccountSpec, RequestInfo  # noqa: E402
from routing.usage import Usage  # noqa: E402

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
EPOCH = 1_800_000_000.0  # simulation start; the workload treats it as a Monday noon
TIME_TO_HEADERS_S = 1.0
WARM_CACHE_S = 300.0  # prompt cache lifetime: a request within it on the same account reads it
HOLD_BUDGET_S = 300.0
HOLD_POLL_S = 5.0
CLIENT_RETRY_AFTER_MAX_S = 59.0
SLOT_S = 300.0  # granularity of the ideal fluid schedule


# -- hidden accounts -------------------------------------------------------------------


@dataclass
class HiddenAccount:
    """An account as Anthropic sees it: caps the proxy never learns directly."""

    name: str
    five_cap: float
    week_cap: float
    week_reset: float
    week_used: float = 0.0
    five_start: float | None = None
    five_used: float = 0.0
    week_wasted: float = 0.0  # cache rewrites caused by moving a warm session
    completed: list[dict[str, float]] = field(default_factory=list)

    def roll(self, now: float) -> None:
        while now >= self.week_reset:
            self.completed.append({
                "reset": self.week_reset, "used": self.week_used, "cap": self.week_cap,
                "wasted": self.week_wasted,
            })
            self.week_used = 0.0
            self.week_wasted = 0.0
            self.week_reset += WEEK
        if self.five_start is not None and now >= self.five_start + 5 * HOUR:
            self.five_start = None
            self.five_used = 0.0

    def five_reset(self, now: float) -> float:
        return (self.five_start if self.five_start is not None else now) + 5 * HOUR

    def admit(self, now: float) -> tuple[int, list[tuple[str, str]]]:
        """Status and rate-limit headers for a request arriving now."""
        self.roll(now)
        if self.five_start is None:
            self.five_start = now
        five_rejected = self.five_used >= self.five_cap
        week_rejected = self.week_used >= self.week_cap
        status = 429 if five_rejected or week_rejected else 200
        return status, self.headers(now, five_rejected, week_rejected)

    def headers(self, now: float, five_rejected: bool, week_rejected: bool) -> list[tuple[str, str]]:
        p = "anthropic-ratelimit-unified-"
        five_util = self.five_used / self.five_cap
        week_util = self.week_used / self.week_cap

        def status(util: float, rejected: bool) -> str:
            return "rejected" if rejected else ("allowed_warning" if util >= 0.8 else "allowed")

        claim, claim_reset = (
            ("five_hour", self.five_reset(now)) if five_util >= week_util else ("seven_day", self.week_reset)
        )
        pairs = [
            (p + "5h-utilization", f"{five_util:.4f}"),
            (p + "5h-reset", str(int(self.five_reset(now)))),
            (p + "5h-status", status(five_util, five_rejected)),
            (p + "7d-utilization", f"{week_util:.4f}"),
            (p + "7d-reset", str(int(self.week_reset))),
            (p + "7d-status", status(week_util, week_rejected)),
            (p + "status", "rejected" if five_rejected or week_rejected else "allowed"),
            (p + "representative-claim", claim),
            (p + "reset", str(int(claim_reset))),
            (p + "fallback-percentage", "0.5"),
            (p + "overage-status", "rejected"),
        ]
        if five_rejected or week_rejected:
            pairs.append(("retry-after", str(int(max(1.0, claim_reset - now)))))
        return pairs

    def charge(self, burn: float, now: float, wasted: float = 0.0) -> None:
        self.roll(now)
        if self.five_start is None:
            self.five_start = now
        self.five_used += burn
        self.week_used += burn
        self.week_wasted += wasted

    def has_headroom(self, threshold: float) -> bool:
        return self.five_used < threshold * self.five_cap and self.week_used < threshold * self.week_cap


@dataclass(frozen=True)
class AccountSetup:
    name: str
    reset_in: float  # seconds from the start to its next weekly reset
    used: float  # share of the weekly cap already used at the start


FIVE_HOUR_CAP = 6_000_000.0
WEEK_CAP = 4 * FIVE_HOUR_CAP

ACCOUNTS = (
    AccountSetup("expiring", reset_in=6 * HOUR, used=0.60),  # 40 % unused, resets in 6 h
    AccountSetup("fresh", reset_in=WEEK - 60.0, used=0.0),  # its week just began
    AccountSetup("spent", reset_in=2.5 * DAY, used=0.95),  # nearly spent, resets in 2.5 days
)


def hidden_accounts() -> list[HiddenAccount]:
    return [
        HiddenAccount(
            name=a.name, five_cap=FIVE_HOUR_CAP, week_cap=WEEK_CAP,
            week_reset=EPOCH + a.reset_in, week_used=a.used * WEEK_CAP,
        )
        for a in ACCOUNTS
    ]


# -- workload ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionPlan:
    sid: str
    start: float
    end: float
    kind: str  # "human" or "subagent"
    seed: int
    model: str
    think: tuple[float, float]  # seconds between a response and the next request


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    day_rate: float  # new human sessions per hour, weekdays 09-19
    evening_rate: float  # 19-23 and weekend days
    night_rate: float  # 23-09 (quiet)
    bursts_per_workday: int


SCENARIOS = (
    Scenario("overload", "demand ~1.5x supply (busy weekdays, quiet nights)", 2.2, 0.6, 0.1, 2),
    Scenario("normal", "demand ~0.6x supply", 0.9, 0.3, 0.05, 1),
)


def _hour_rate(scenario: Scenario, t: float) -> float:
    offset = t - EPOCH + 12 * HOUR  # EPOCH is Monday noon
    day = int(offset // DAY) % 7
    hour = (offset % DAY) / HOUR
    if hour >= 23 or hour < 9:
        return scenario.night_rate
    if day >= 5 or hour >= 19:
        return scenario.evening_rate
    return scenario.day_rate


def build_workload(scenario: Scenario, duration: float, seed: int) -> list[SessionPlan]:
    """Human sessions (Poisson arrivals by time of day, 30 min - 3 h) and bursts of 20
    short subagent sessions during work hours. Deterministic for a seed."""
    rng = random.Random(seed)
    plans: list[SessionPlan] = []
    counter = 0
    t = EPOCH - 3 * HOUR  # the fleet is already at work when the proxy starts at noon
    while t < EPOCH + duration:
        rate = _hour_rate(scenario, t)
        arrivals = _poisson(rng, rate)
        for _ in range(arrivals):
            start = t + rng.uniform(0, HOUR)
            end = min(start + rng.uniform(0.5 * HOUR, 3 * HOUR), EPOCH + duration)
            counter += 1
            seed_ = rng.randrange(1 << 30)
            if end <= EPOCH:
                continue
            plans.append(SessionPlan(
                f"h{counter}", max(start, EPOCH), end, "human", seed_, "claude-opus-4-5",
                (5.0, 40.0),
            ))
        t += HOUR
    rng = random.Random(seed + 1)  # bursts draw apart, so a shorter run is a prefix
    days = int(math.ceil(duration / DAY))
    for day in range(days):
        if day % 7 >= 5:  # weekend
            continue
        for _ in range(scenario.bursts_per_workday):
            start = EPOCH + day * DAY + rng.uniform(-3 * HOUR, 6 * HOUR)  # 09:00-18:00
            if not EPOCH <= start < EPOCH + duration:
                continue
            for _ in range(20):
                counter += 1
                length = rng.uniform(5 * 60, 20 * 60)
                plans.append(SessionPlan(
                    f"s{counter}", start, min(start + length, EPOCH + duration), "subagent",
                    rng.randrange(1 << 30), "claude-sonnet-4-5", (1.0, 8.0),
                ))
    plans.sort(key=lambda p: (p.start, p.sid))
    return plans


def _poisson(rng: random.Random, mean: float) -> int:
    threshold, count, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


class SessionRun:
    """A session's deterministic request stream; only routing decides what each costs."""

    def __init__(self, plan: SessionPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.context = 20_000
        self.last_account: str | None = None
        self.last_end: float | None = None
        self.finished_at: float | None = None
        self.rebinds = 0

    def next_request(self) -> tuple[int, int, float]:
        """(new input tokens, output tokens, seconds to stream the answer)."""
        if self.plan.kind == "subagent":
            return self.rng.randint(500, 3000), self.rng.randint(200, 1500), self.rng.uniform(3, 20)
        return self.rng.randint(1000, 5000), self.rng.randint(300, 3000), self.rng.uniform(8, 45)

    def think(self) -> float:
        return self.rng.uniform(*self.plan.think)

    def grow(self, new_input: int, output: int) -> None:
        self.context += new_input + output
        if self.context > 160_000:  # compaction
            self.context = 40_000


# -- policies ---------------------------------------------------------------------------


class BaselineRouter(Router):
    """Baselines share the usable set of behaviour §5 as written: every account stops at the
    switch threshold (no draining before a weekly reset; that is our policy's)."""

    def _usable(self, state, facts, request: RequestInfo, now: float) -> bool:
        return (
            state.can_be_selected(now)
            and state.bench_for(model_family(request.model), now) is None
            and state.blocking_window(request.model, now, self.config.switch_threshold) is None
        )


class RoundRobinRouter(BaselineRouter):
    """Baseline: the next usable account in turn, ignoring sessions."""

    _turn = 0

    def _plan(self, request: RequestInfo, now: float, exclude: Collection[str]) -> Plan | None:
        pool, _ = self._pool(request, now, exclude)
        if not pool:
            return None
        names = [n for n in self._accounts if n in pool]
        name = names[self._turn % len(names)]
        self._turn += 1
        return Plan(name, "round-robin", "round robin", bind=True)


class LeastLoadedRouter(BaselineRouter):
    """Baseline: the usable account with the fewest requests in flight."""

    def _plan(self, request: RequestInfo, now: float, exclude: Collection[str]) -> Plan | None:
        pool, _ = self._pool(request, now, exclude)
        if not pool:
            return None
        best = min(pool.values(), key=lambda c: (c.inflight, c.name))
        return Plan(best.name, "least-loaded", "least loaded", bind=True)


class ThresholdRotationRouter(BaselineRouter):
    """Baseline: one account for everyone until it reaches 98 % (or cannot serve), then the
    usable account whose weekly window resets soonest."""

    def _plan(self, request: RequestInfo, now: float, exclude: Collection[str]) -> Plan | None:
        pool, _ = self._pool(request, now, exclude)
        if not pool:
            return None
        current = pool.get(self._current) if self._current else None
        if current is not None:
            return Plan(current.name, "current", "threshold rotation: stay", bind=False)

        def reset_order(c):  # unknown reset last
            return (c.hours_to_weekly_reset is None, c.hours_to_weekly_reset or 0.0, c.name)

        best = min(pool.values(), key=reset_order)
        self._current = best.name
        return Plan(best.name, "current", "threshold rotation: switch", bind=False)


POLICIES: dict[str, type[Router]] = {
    "teamclaude": Router,
    "round-robin": RoundRobinRouter,
    "least-loaded": LeastLoadedRouter,
    "threshold-98": ThresholdRotationRouter,
}


# -- the simulation -------------------------------------------------------------------


@dataclass
class Attempt:
    session: SessionRun
    tried: set[str] = field(default_factory=set)
    hold_start: float | None = None
    new_input: int = 0
    output: int = 0
    stream_s: float = 0.0
    wasted: int = 0


@dataclass
class Metrics:
    requests: int = 0
    upstream_429: int = 0
    client_429: int = 0
    client_429_with_headroom: int = 0
    held: int = 0
    hold_time_s: float = 0.0
    rebinds: int = 0
    session_hours: float = 0.0
    burn: float = 0.0
    cache_writes: float = 0.0


class Simulation:
    def __init__(self, router: Router, plans: Sequence[SessionPlan], duration: float) -> None:
        self.router = router
        self.duration = duration
        self.accounts = {a.name: a for a in hidden_accounts()}
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.held: list[Attempt] = []
        self.wake_at: float | None = None
        self.metrics = Metrics()
        self.sessions = [SessionRun(p) for p in plans]
        for run in self.sessions:
            self._at(run.plan.start, "issue", Attempt(run))

    def _at(self, t: float, kind: str, data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, data))

    def run(self) -> Metrics:
        end = EPOCH + self.duration
        while self.events:
            now, _, kind, data = heapq.heappop(self.events)
            if now > end:
                break
            if kind == "issue":
                self._issue(data, now)
            elif kind == "headers":
                self._headers(data, now)
            elif kind == "done":
                self._done(data, now)
            elif kind == "wake":
                self._wake(now)
        for account in self.accounts.values():
            account.roll(end)
        for run in self.sessions:
            if run.last_end is not None:
                self.metrics.session_hours += (min(run.last_end, end) - run.plan.start) / HOUR
        return self.metrics

    def _issue(self, attempt: Attempt, now: float) -> None:
        if attempt.stream_s == 0.0:
            attempt.new_input, attempt.output, attempt.stream_s = attempt.session.next_request()
        self._try(attempt, now)

    def _try(self, attempt: Attempt, now: float) -> bool:
        plan = attempt.session.plan
        request = RequestInfo("/v1/messages", plan.model, True, plan.sid)
        decision = self.router.select(request, now, attempt.tried)
        if decision is None:
            if attempt.hold_start is None:
                attempt.hold_start = now
                attempt.tried.clear()
                self.metrics.held += 1
                self.held.append(attempt)
                self._schedule_wake(now)
            return False
        if attempt.hold_start is not None:
            self.metrics.hold_time_s += now - attempt.hold_start
            attempt.hold_start = None
        self._at(now + TIME_TO_HEADERS_S, "headers", (attempt, decision))
        return True

    def _headers(self, payload: tuple[Attempt, Any], now: float) -> None:
        attempt, decision = payload
        account = self.accounts[decision.account]
        status, header_pairs = account.admit(now)
        limits = parse_ratelimit_headers(header_pairs)
        self.router.observe(decision.account, status, limits, now)
        if status == 429:
            self.metrics.upstream_429 += 1
            rejected = limits.rejected_windows()
            window = rejected[0] if rejected else "5h"
            reset = limits.windows[window].reset if window in limits.windows else None
            until = reset if reset is not None else now + (limits.retry_after or 60.0)
            self.router.bench(decision.account, until, f"{window} window rejected", now)
            self.router.release(decision.ticket, now, None, 429)
            attempt.tried.add(decision.account)
            self._try(attempt, now)
            return
        run = attempt.session
        cold = (
            run.last_account != decision.account
            or run.last_end is None
            or now - run.last_end > WARM_CACHE_S
        )
        cache_broken = (
            run.last_account is not None
            and run.last_account != decision.account
            and run.last_end is not None
            and now - run.last_end <= WARM_CACHE_S
        )
        if cache_broken:
            run.rebinds += 1
            self.metrics.rebinds += 1
        attempt.wasted = run.context if cache_broken else 0
        usage = Usage(
            input_tokens=attempt.new_input,
            output_tokens=attempt.output,
            cache_write_5m=run.context if cold else 0,
            cache_read=0 if cold else run.context,
            model=run.plan.model,
        )
        run.last_account = decision.account
        self._at(now + attempt.stream_s, "done", (attempt, decision, usage))

    def _done(self, payload: tuple[Attempt, Any, Usage], now: float) -> None:
        attempt, decision, usage = payload
        self.accounts[decision.account].charge(usage.burn, now, attempt.wasted)
        self.router.release(decision.ticket, now, usage, 200)
        self.metrics.requests += 1
        self.metrics.burn += usage.burn
        self.metrics.cache_writes += usage.cache_write_5m
        run = attempt.session
        run.last_end = now
        run.grow(attempt.new_input, attempt.output)
        next_at = now + run.think()
        if next_at < run.plan.end:
            self._at(next_at, "issue", Attempt(run))

    def _schedule_wake(self, now: float) -> None:
        change = self.router.next_change_at(now)
        target = now + HOLD_POLL_S
        if change is not None and now < change < target:
            target = change
        if self.wake_at is None or target < self.wake_at or self.wake_at <= now:
            self.wake_at = target
            self._at(target, "wake", None)

    def _wake(self, now: float) -> None:
        if self.wake_at is not None and now < self.wake_at:
            return
        self.wake_at = None
        waiting, self.held = self.held, []
        refused_models: set[str] = set()  # held requests carry no exclusions: same answer
        for attempt in waiting:
            started = attempt.hold_start
            assert started is not None
            model = attempt.session.plan.model
            if model not in refused_models:
                if self._try_held(attempt, now):
                    continue
                refused_models.add(model)
            if now - started >= HOLD_BUDGET_S:
                self._client_429(attempt, now)
            else:
                self.held.append(attempt)
        if self.held:
            self._schedule_wake(now)

    def _try_held(self, attempt: Attempt, now: float) -> bool:
        plan = attempt.session.plan
        request = RequestInfo("/v1/messages", plan.model, True, plan.sid)
        decision = self.router.select(request, now, attempt.tried)
        if decision is None:
            return False
        self.metrics.hold_time_s += now - (attempt.hold_start or now)
        attempt.hold_start = None
        self._at(now + TIME_TO_HEADERS_S, "headers", (attempt, decision))
        return True

    def _client_429(self, attempt: Attempt, now: float) -> None:
        """The hold budget is spent: the client gets a 429 and retries after retry-after."""
        self.metrics.client_429 += 1
        self.metrics.hold_time_s += now - (attempt.hold_start or now)
        if any(a.has_headroom(0.98) for a in self.accounts.values()):
            self.metrics.client_429_with_headroom += 1
        change = self.router.next_change_at(now)
        wait = 1.0 if change is None else change - now
        retry_after = min(CLIENT_RETRY_AFTER_MAX_S, max(1.0, wait))
        attempt.hold_start = None
        attempt.tried.clear()
        self._at(now + retry_after, "issue", attempt)


# -- the ideal fluid schedule -----------------------------------------------------------


def demand_per_slot(plans: Sequence[SessionPlan], duration: float) -> list[float]:
    """Burn each session would ask for if it were never held and its cache never broken."""
    slots = [0.0] * (int(duration // SLOT_S) + 1)
    for plan in plans:
        run = SessionRun(plan)
        t = plan.start
        first = True
        while t < plan.end:
            new_input, output, stream_s = run.next_request()
            t += TIME_TO_HEADERS_S
            burn = new_input + output + (run.context if first else 0)
            first = False
            done = t + stream_s
            index = int((done - EPOCH) // SLOT_S)
            if index < len(slots):
                slots[index] += burn
            run.grow(new_input, output)
            t = done + run.think()
    return slots


def ideal_schedule(plans: Sequence[SessionPlan], duration: float) -> dict[str, Any]:
    """Serve demand slot by slot, earliest weekly reset first, within the hidden caps;
    demand not served in its slot may wait one more slot (a hold), then it is lost."""
    accounts = hidden_accounts()
    backlog = 0.0
    for index, demand in enumerate(demand_per_slot(plans, duration)):
        now = EPOCH + index * SLOT_S
        pending = demand + backlog
        for account in sorted(accounts, key=lambda a: a.week_reset):
            account.roll(now)
            if pending <= 0:
                break
            room = min(account.five_cap - account.five_used, account.week_cap - account.week_used)
            if room <= 0:
                continue
            take = min(room, pending)
            account.charge(take, now)
            pending -= take
        backlog = min(pending, demand)
    for account in accounts:
        account.roll(EPOCH + duration)
    return summarise_accounts(accounts)


# -- results ----------------------------------------------------------------------------


def summarise_accounts(accounts: Sequence[HiddenAccount]) -> dict[str, Any]:
    windows = [dict(w, account=a.name) for a in accounts for w in a.completed]
    cap = sum(w["cap"] for w in windows)
    used = sum(min(w["used"], w["cap"]) for w in windows)
    useful = sum(min(w["used"] - w["wasted"], w["cap"]) for w in windows)
    # Utilization at each reset, capped at 1 (answers already admitted may overshoot).
    end_utils = [min(1.0, w["used"] / w["cap"]) for w in windows]
    # Weeks that ran entirely inside the simulation (no inherited start).
    whole = [min(1.0, w["used"] / w["cap"]) for w in windows if w["reset"] - WEEK >= EPOCH - HOUR]
    return {
        "quota_used_pct": 100.0 * used / cap if cap else None,
        "useful_quota_pct": 100.0 * useful / cap if cap else None,
        "weekly_windows": [
            {"account": w["account"], "reset_h": round((w["reset"] - EPOCH) / HOUR, 1),
             "utilization": round(w["used"] / w["cap"], 4)}
            for w in sorted(windows, key=lambda w: w["reset"])
        ],
        "end_of_week_spread": (max(end_utils) - min(end_utils)) if end_utils else None,
        "whole_week_spread": (max(whole) - min(whole)) if len(whole) > 1 else None,
    }


def run_policy(policy: str, plans: Sequence[SessionPlan], duration: float) -> dict[str, Any]:
    specs = [AccountSpec(name=a.name, kind="oauth") for a in ACCOUNTS]
    router = POLICIES[policy](RoutingConfig(), specs)
    sim = Simulation(router, plans, duration)
    started = time.perf_counter()
    metrics = sim.run()
    elapsed = time.perf_counter() - started
    summary = summarise_accounts(list(sim.accounts.values()))
    per_5h = metrics.rebinds / (metrics.session_hours / 5) if metrics.session_hours else 0.0
    return {
        **summary,
        "requests": metrics.requests,
        "upstream_429": metrics.upstream_429,
        "client_429": metrics.client_429,
        "client_429_with_headroom": metrics.client_429_with_headroom,
        "held": metrics.held,
        "hold_time_s": round(metrics.hold_time_s, 1),
        "rebinds": metrics.rebinds,
        "session_hours": round(metrics.session_hours, 1),
        "rebinds_per_session_hour": metrics.rebinds / metrics.session_hours if metrics.session_hours else 0.0,
        "rebinds_per_session_5h": per_5h,
        "burn_tokens": metrics.burn,
        "cache_write_share": metrics.cache_writes / metrics.burn if metrics.burn else 0.0,
        "wall_s": round(elapsed, 2),
    }


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)
        return "—".rjust(width)
    return format(value, spec)


def print_table(scenario: Scenario, results: dict[str, dict[str, Any]], out=sys.stdout) -> None:
    print(f"\n== {scenario.name}: {scenario.description}", file=out)
    header = (f"{'policy':<14}{'quota used':>11}{'useful':>8}{'spread':>8}{'(whole)':>8}{'429 up':>8}{'429 client':>11}"
              f"{'(w/ room)':>10}{'held':>7}{'hold s':>9}{'rebinds':>8}{'/sess·5h':>9}"
              f"{'/sess·h':>8}{'requests':>9}{'cache-wr%':>10}")
    print(header, file=out)
    for name, r in results.items():
        print(
            f"{name:<14}{_fmt(r.get('quota_used_pct'), '10.2f')}%"
            f"{_fmt(r.get('useful_quota_pct'), '7.2f')}%"
            f"{_fmt(r.get('end_of_week_spread'), '8.3f')}{_fmt(r.get('whole_week_spread'), '8.3f')}"
            f"{_fmt(r.get('upstream_429'), '8d')}{_fmt(r.get('client_429'), '11d')}"
            f"{_fmt(r.get('client_429_with_headroom'), '10d')}{_fmt(r.get('held'), '7d')}"
            f"{_fmt(r.get('hold_time_s'), '9.0f')}{_fmt(r.get('rebinds'), '8d')}"
            f"{_fmt(r.get('rebinds_per_session_5h'), '9.3f')}"
            f"{_fmt(r.get('rebinds_per_session_hour'), '8.3f')}{_fmt(r.get('requests'), '9d')}"
            f"{_fmt(None if r.get('cache_write_share') is None else 100 * r['cache_write_share'], '10.1f')}",
            file=out,
        )
    windows = results["teamclaude"]["weekly_windows"]
    print("   weekly windows completed (teamclaude): " + ", ".join(
        f"{w['account']}@{w['reset_h']}h={w['utilization']:.3f}" for w in windows), file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="simulate 2.6 days instead of 8")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scenario", choices=[s.name for s in SCENARIOS], action="append")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "simulate.json")
    args = parser.parse_args(argv)
    duration = 2.6 * DAY if args.quick else 8 * DAY
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    document: dict[str, Any] = {
        "duration_days": duration / DAY, "seed": args.seed,
        "caps": {"five_hour": FIVE_HOUR_CAP, "week": WEEK_CAP},
        "accounts": [a.__dict__ for a in ACCOUNTS], "scenarios": {},
    }
    started = time.perf_counter()
    for scenario in chosen:
        plans = build_workload(scenario, duration, args.seed)
        results = {name: run_policy(name, plans, duration) for name in POLICIES}
        results["ideal (fluid)"] = ideal_schedule(plans, duration)
        document["scenarios"][scenario.name] = {
            "description": scenario.description, "sessions": len(plans),
            "demand_tokens": sum(demand_per_slot(plans, duration)), "results": results,
        }
        print_table(scenario, results)
    print(f"\n{time.perf_counter() - started:.1f}s; JSON: {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
