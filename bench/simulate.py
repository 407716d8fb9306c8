"""Routing simulation: the real engine and its lifecycle against simulated fleets.

    .venv/bin/python bench/simulate.py               # every workload, ~3 simulated days each
    .venv/bin/python bench/simulate.py --quick       # 1.5 days each
    .venv/bin/python bench/simulate.py --workload storm --days 2 --seed 3

Accounts have hidden caps (5-hour, weekly and a premium-model weekly window, `7d_oi`) sized by
plan (Pro : Max 5x : Max 20x = 1 : 5 : 20); every answer carries the
`anthropic-ratelimit-unified-*` headers those caps imply, read by the real header parser. The
request lifecycle (classify, bench, fail over, refresh and retry, hold, answer) is
`routing.lifecycle.exchange`, the same code the proxy runs; the simulator only carries out its
steps (send after 1 s, wake a held request at the time asked, refresh a token).

Sessions are closed loops: a conversation sends its next request only after the answer to the
last one and a think time. A session has a main conversation and subagents that share its
session id, each its own conversation with its own prompt cache; the parent keeps working
while they run (background). Prompt caches live per (account, conversation) for 5 minutes: a
hit costs 0.1x of the prefix, a miss writes it at 1.25x. A request served on an account
without the conversation's warm cache while another account has it is a cache-breaking move.

Policies share everything but the choice: `teamclaude` (the engine, affinity per conversation)
and two baselines sticky per session (a new session is bound to one account and stays there
until that account cannot serve it): `sticky-rr` (round robin) and `sticky-least-5h` (the
account with the least 5-hour utilization). Prints a table per workload and writes JSON to
bench/results/simulate.json.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from routing.config import RoutingConfig  # noqa: E402
from routing.engine import Router  # noqa: E402
from routing.failures import Streaks  # noqa: E402
from routing.lifecycle import (  # noqa: E402
    Answer,
    Exchange,
    LifecycleSettings,
    NoAccount,
    Refresh,
    Refreshed,
    Send,
    Step,
    Upstream,
    Wait,
    Woke,
    exchange,
)
from routing.policy import Candidate  # noqa: E402
from routing.ratelimits import parse_ratelimit_headers  # noqa: E402
from routing.types import AccountSpec, RequestInfo  # noqa: E402
from routing.usage import Usage  # noqa: E402

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
EPOCH = 1_800_000_000.0  # the simulation starts on a Monday at noon
TIME_TO_HEADERS_S = 1.0
CACHE_S = 300.0
READ_COST, WRITE_COST = 0.1, 1.25
CLIENT_RETRY_AFTER_MAX_S = 59.0
UNAVAILABLE_RETRY_S = 30.0
PLANS = {"pro": 1.0, "max5x": 5.0, "max20x": 20.0}
PRO_FIVE_HOUR_CAP = 1_500_000.0  # quota units (input + output + 0.1 read + 1.25 write)
WEEK_PER_FIVE_HOUR = 8.0
PREMIUM_SHARE_OF_WEEK = 0.5  # the `7d_oi` cap, as a share of the weekly cap
OPUS, SONNET = "claude-opus-4-5", "claude-sonnet-4-5"


# -- hidden accounts -------------------------------------------------------------------


@dataclass(frozen=True)
class AccountSetup:
    name: str
    plan: str
    reset_in: float  # seconds from the start to its next weekly reset
    used: float  # share of the week already used at the start


@dataclass
class Hidden:
    """An account as Anthropic sees it: caps the proxy never learns directly."""

    setup: AccountSetup
    five_cap: float
    week_cap: float
    oi_cap: float
    week_reset: float
    week_used: float = 0.0
    oi_used: float = 0.0
    five_start: float | None = None
    five_used: float = 0.0
    wasted: float = 0.0
    completed: list[dict[str, float]] = field(default_factory=list)
    dead_from: float | None = None

    @classmethod
    def make(cls, setup: AccountSetup, start: float) -> Hidden:
        five = PRO_FIVE_HOUR_CAP * PLANS[setup.plan]
        week = five * WEEK_PER_FIVE_HOUR
        return cls(setup, five, week, week * PREMIUM_SHARE_OF_WEEK, start + setup.reset_in,
                   week_used=setup.used * week, oi_used=setup.used * week * PREMIUM_SHARE_OF_WEEK)

    def roll(self, now: float) -> None:
        while now >= self.week_reset:
            self.completed.append({"reset": self.week_reset, "used": self.week_used,
                                   "cap": self.week_cap, "wasted": self.wasted})
            self.week_used = self.oi_used = self.wasted = 0.0
            self.week_reset += WEEK
        if self.five_start is not None and now >= self.five_start + 5 * HOUR:
            self.five_start, self.five_used = None, 0.0

    def dead(self, now: float) -> bool:
        return self.dead_from is not None and now >= self.dead_from

    def room(self, opus: bool) -> bool:
        return (self.five_used < 0.98 * self.five_cap and self.week_used < 0.98 * self.week_cap
                and (not opus or self.oi_used < 0.98 * self.oi_cap))

    def admit(self, now: float, opus: bool) -> tuple[int, list[tuple[str, str]]]:
        self.roll(now)
        if self.five_start is None:
            self.five_start = now
        rejected = {
            "5h": self.five_used >= self.five_cap,
            "7d": self.week_used >= self.week_cap,
            "7d_oi": self.oi_used >= self.oi_cap,
        }
        refused = rejected["5h"] or rejected["7d"] or (opus and rejected["7d_oi"])
        p = "anthropic-ratelimit-unified-"
        pairs: list[tuple[str, str]] = []
        for name, used, cap, reset in (
            ("5h", self.five_used, self.five_cap, self.five_start + 5 * HOUR),
            ("7d", self.week_used, self.week_cap, self.week_reset),
            ("7d_oi", self.oi_used, self.oi_cap, self.week_reset),
        ):
            util = used / cap
            status = "rejected" if rejected[name] else ("allowed_warning" if util >= 0.8 else "allowed")
            pairs += [(p + f"{name}-utilization", f"{util:.4f}"), (p + f"{name}-reset", str(int(reset))),
                      (p + f"{name}-status", status)]
        pairs.append((p + "status", "rejected" if refused else "allowed"))
        if refused:
            resets = [self.five_start + 5 * HOUR if rejected["5h"] else 0.0,
                      self.week_reset if rejected["7d"] or (opus and rejected["7d_oi"]) else 0.0]
            pairs.append(("retry-after", str(int(max(1.0, max(resets) - now)))))
        return (429 if refused else 200), pairs

    def charge(self, cost: float, opus: bool, wasted: float, now: float) -> None:
        self.roll(now)
        if self.five_start is None:
            self.five_start = now
        self.five_used += cost
        self.week_used += cost
        if opus:
            self.oi_used += cost
        self.wasted += wasted


# -- workloads -------------------------------------------------------------------------

BASE_ACCOUNTS = (
    AccountSetup("m20-a", "max20x", reset_in=0.6 * DAY, used=0.55),
    AccountSetup("m20-b", "max20x", reset_in=2.2 * DAY, used=0.35),
    AccountSetup("m5-a", "max5x", reset_in=1.1 * DAY, used=0.50),
    AccountSetup("m5-b", "max5x", reset_in=2.8 * DAY, used=0.20),
    AccountSetup("pro-a", "pro", reset_in=0.3 * DAY, used=0.70),
    AccountSetup("pro-b", "pro", reset_in=1.7 * DAY, used=0.30),
)
ADDED = AccountSetup("m5-new", "max5x", reset_in=WEEK - 60, used=0.0)


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    load: float  # demand ÷ pooled weekly supply
    orchestrators: int = 0  # sessions that spawn 30 subagent requests in 10 s every 20 min
    fanout: float = 0.04  # chance per main turn of spawning 2-6 subagents
    flaky: float = 0.0  # chance of a 529 per request
    die_at_day: float | None = None  # the first Max 20x account's token is revoked then
    add_at_day: float | None = None  # a Max 5x account is added then
    premium: float = 0.5  # share of main conversations on the premium model


WORKLOADS = (
    Workload("mixed", "mixed plans, demand ~0.9x supply", 0.9),
    Workload("half", "half load", 0.5),
    Workload("overload", "3x overload", 3.0),
    Workload("storm", "orchestrators: 30 subagent requests in 10 s every 20 min, ~0.9x", 0.9, orchestrators=2),
    Workload("churn", "an account dies on day 1, one is added on day 1.5, ~0.9x", 0.9,
             die_at_day=1.0, add_at_day=1.5),
    Workload("flaky", "2 % of answers are 529, ~0.9x", 0.9, flaky=0.02),
)


def _day_weight(t: float) -> float:
    """Arrivals by time of day: busy weekdays 09-19, lighter evenings, quiet nights."""
    offset = t - EPOCH + 12 * HOUR
    day, hour = int(offset // DAY) % 7, (offset % DAY) / HOUR
    if hour >= 23 or hour < 9:
        return 0.08
    if day >= 5 or hour >= 19:
        return 0.35
    return 1.0


class Conversation:
    """One conversation's deterministic request stream; only routing decides its cost."""

    def __init__(self, session: SessionRun, agent: str | None, model: str, seed: int, turns: int | None) -> None:
        self.session = session
        self.agent = agent
        self.model = model
        self.rng = random.Random(seed)
        self.context = 20_000 if agent is None else 8_000
        self.turns_left = turns  # None: until the session ends
        self.caches: dict[str, float] = {}  # account -> when its cache of this conversation was last used
        self.started: float | None = None
        self.last_end: float | None = None
        self.breaks = 0

    def next_request(self) -> tuple[int, int, float]:
        if self.agent is None:
            return self.rng.randint(1000, 5000), self.rng.randint(300, 3000), self.rng.uniform(8, 45)
        return self.rng.randint(500, 3000), self.rng.randint(200, 1500), self.rng.uniform(3, 20)

    def think(self) -> float:
        return self.rng.uniform(5, 40) if self.agent is None else self.rng.uniform(1, 6)

    def grow(self, new_input: int, output: int) -> None:
        self.context += new_input + output
        if self.context > 160_000:  # compaction
            self.context = 40_000


@dataclass
class SessionRun:
    sid: str
    start: float
    end: float
    orchestrator: bool
    seed: int
    premium: bool
    rng: random.Random = field(init=False)
    spawned: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


def build_sessions(workload: Workload, duration: float, seed: int, rate: float) -> list[SessionRun]:
    """Human sessions (Poisson by time of day, 30 min - 3 h) and orchestrators (work hours)."""
    rng = random.Random(seed)
    sessions: list[SessionRun] = []
    t = EPOCH - 2 * HOUR
    while t < EPOCH + duration:
        mean = rate * _day_weight(t) / 12  # per 5-minute step
        for _ in range(_poisson(rng, mean)):
            start = t + rng.uniform(0, 300)
            end = min(start + rng.uniform(0.5 * HOUR, 3 * HOUR), EPOCH + duration)
            sid = f"h{len(sessions)}"
            if end > EPOCH:
                sessions.append(SessionRun(sid, max(start, EPOCH), end, False, rng.randrange(1 << 30),
                                           rng.random() < workload.premium))
        t += 300
    for day in range(int(math.ceil(duration / DAY))):
        if day % 7 >= 5:
            continue
        for k in range(workload.orchestrators):
            start = EPOCH + day * DAY - 3 * HOUR + k * 0.5 * HOUR  # 09:00, 09:30, ...
            end = min(start + 8 * HOUR, EPOCH + duration)
            if end > EPOCH:
                sessions.append(SessionRun(f"o{day}-{k}", max(start, EPOCH), end, True,
                                           rng.randrange(1 << 30), True))
    return sessions


def _poisson(rng: random.Random, mean: float) -> int:
    threshold, count, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


# -- policies --------------------------------------------------------------------------


def _round_robin() -> Callable[[Sequence[Candidate]], Candidate]:
    turn = [0]

    def place(candidates: Sequence[Candidate]) -> Candidate:
        ordered = sorted(candidates, key=lambda c: c.name)
        turn[0] += 1
        return ordered[turn[0] % len(ordered)]

    return place


def _least_five_hour(candidates: Sequence[Candidate]) -> Candidate:
    return min(candidates, key=lambda c: (c.util_5h or 0.0, c.name))


# Baselines: sticky per session (no affinity per conversation, no in-flight cap, no pace
# line, no ramp), the usable set and the lifecycle as the engine's.
_BASELINE = RoutingConfig(far_over_line=100.0, ramp_tiers=(), max_inflight_per_account=1000,
                          max_sessions_per_account=10**6)
POLICIES: dict[str, tuple[Callable[[], Any], RoutingConfig, bool]] = {
    "teamclaude": (lambda: None, RoutingConfig(), True),
    "sticky-rr": (_round_robin, _BASELINE, False),
    "sticky-least-5h": (lambda: _least_five_hour, _BASELINE, False),
}


# -- the simulation --------------------------------------------------------------------


@dataclass
class Metrics:
    requests: int = 0
    served_cost: float = 0.0
    wasted: float = 0.0
    breaks: int = 0
    main_breaks_storm: int = 0
    upstream_429: int = 0
    client_429: int = 0
    client_429_with_room: int = 0
    unavailable: int = 0
    held: int = 0
    hold_s: float = 0.0
    detours: int = 0
    conversation_hours: float = 0.0
    break_reasons: dict[str, int] = field(default_factory=dict)


class Request:
    """One turn of a conversation, as it goes through the lifecycle."""

    def __init__(self, conversation: Conversation, info: RequestInfo, now: float) -> None:
        self.conversation = conversation
        self.info = info
        self.new_input, self.output, self.stream_s = conversation.next_request()
        self.issued = now
        self.held = False
        self.flow: Any = None
        self.state: Exchange | None = None


class Simulation:
    def __init__(self, workload: Workload, policy: str, sessions: Sequence[SessionRun], duration: float,
                 seed: int) -> None:
        make_placement, config, per_conversation = POLICIES[policy]
        self.workload = workload
        self.per_conversation = per_conversation
        self.duration = duration
        self.hidden = {a.name: Hidden.make(a, EPOCH) for a in BASE_ACCOUNTS}
        self.specs = [AccountSpec(a.name, "oauth") for a in BASE_ACCOUNTS]
        self.router = Router(config, self.specs, placement=make_placement())
        self.settings = LifecycleSettings()
        self.streaks = Streaks()
        self.rng = random.Random(seed ^ 0x5EED)
        self.metrics = Metrics()
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.conversations: list[Conversation] = []
        for run in sessions:
            self._at(run.start, "main", run)
        if workload.die_at_day is not None:
            self.hidden[BASE_ACCOUNTS[0].name].dead_from = EPOCH + workload.die_at_day * DAY
        if workload.add_at_day is not None:
            self._at(EPOCH + workload.add_at_day * DAY, "add", ADDED)

    def _at(self, t: float, kind: str, data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, data))

    def run(self) -> Metrics:
        end = EPOCH + self.duration
        handlers = {"main": self._start_main, "issue": self._issue, "step": self._resume,
                    "done": self._done, "storm": self._storm, "add": self._add}
        while self.events:
            now, _, kind, data = heapq.heappop(self.events)
            if now > end:
                break
            handlers[kind](data, now)
        for account in self.hidden.values():
            account.roll(end)
        for conversation in self.conversations:
            if conversation.started is not None and conversation.last_end is not None:
                self.metrics.conversation_hours += (min(conversation.last_end, end) - conversation.started) / HOUR
        return self.metrics

    # -- sessions and conversations --

    def _start_main(self, run: SessionRun, now: float) -> None:
        model = OPUS if run.premium else SONNET
        main = Conversation(run, None, model, run.seed ^ 1, None)
        self.conversations.append(main)
        self._at(now, "issue", main)
        if run.orchestrator:
            self._at(now + 60, "storm", run)

    def _spawn(self, run: SessionRun, count: int, within: float, now: float) -> None:
        for _ in range(count):
            run.spawned += 1
            agent = f"{run.sid}-a{run.spawned:05d}".ljust(17, "0")[:24]
            model = OPUS if run.rng.random() < 0.3 else SONNET
            sub = Conversation(run, agent, model, run.rng.randrange(1 << 30), run.rng.randint(2, 8))
            self.conversations.append(sub)
            self._at(now + run.rng.uniform(0, within), "issue", sub)

    def _storm(self, run: SessionRun, now: float) -> None:
        if now < run.end:
            self._spawn(run, 30, 10.0, now)
            self._at(now + 20 * 60, "storm", run)

    def _add(self, setup: AccountSetup, now: float) -> None:
        self.hidden[setup.name] = Hidden.make(setup, now)
        self.specs.append(AccountSpec(setup.name, "oauth"))
        self.router.set_accounts(self.specs)

    # -- one request through the lifecycle --

    def _issue(self, conversation: Conversation, now: float) -> None:
        run = conversation.session
        agent = conversation.agent if self.per_conversation else None
        info = RequestInfo("/v1/messages", conversation.model, True, run.sid,
                           conversation=agent, agent_id=agent)
        request = Request(conversation, info, now)
        if conversation.started is None:
            conversation.started = now
        request.state = Exchange(info)
        request.flow = exchange(self.router, info, self.streaks, self.settings, now, request.state)
        self._carry_out(request, next(request.flow), now)

    def _resume(self, payload: tuple[Request, Any], now: float) -> None:
        request, outcome = payload
        if isinstance(outcome, Send):  # the answer's headers arrive
            outcome = self._upstream(outcome, request, now)
        elif outcome is None:
            outcome = Woke(now)
        self._carry_out(request, request.flow.send(outcome), now)

    def _upstream(self, send: Send, request: Request, now: float) -> Upstream:
        hidden = self.hidden[send.decision.account]
        if hidden.dead(now):
            return Upstream(401, parse_ratelimit_headers([]), now)
        if self.workload.flaky and self.rng.random() < self.workload.flaky:
            return Upstream(529, parse_ratelimit_headers([]), now)
        status, headers = hidden.admit(now, request.info.model == OPUS)
        if status == 429:
            self.metrics.upstream_429 += 1
        return Upstream(status, parse_ratelimit_headers(headers), now)

    def _carry_out(self, request: Request, step: Step, now: float) -> None:
        while True:
            if isinstance(step, Send):
                self._at(now + TIME_TO_HEADERS_S, "step", (request, step))
                return
            if isinstance(step, Wait):
                if not request.held:
                    request.held = True
                    self.metrics.held += 1
                self._at(max(step.until, now + 0.01), "step", (request, None))
                return
            if isinstance(step, Refresh):
                dead = self.hidden[step.account].dead(now)
                step = request.flow.send(Refreshed(not dead, now, "refresh token revoked", needs_login=dead))
                continue
            break
        assert request.state is not None
        self.metrics.hold_s += request.state.held_s
        if isinstance(step, Answer) and step.verdict.ok:
            self._answered(request, step, now)
        elif isinstance(step, Answer):  # an error given to the client: it retries soon
            self.router.release(step.decision.ticket, now, None, None)
            self._at(now + 5.0, "issue", request.conversation)
        elif isinstance(step, NoAccount):
            self._refused(request, step, now)

    def _answered(self, request: Request, step: Answer, now: float) -> None:
        conversation = request.conversation
        account = step.decision.account
        if step.decision.reason == "detour":
            self.metrics.detours += 1
        warm = {a for a, t in conversation.caches.items() if now - t <= CACHE_S}
        hit = account in warm
        broken = not hit and bool(warm)
        context = conversation.context
        cost = request.new_input + request.output + context * (READ_COST if hit else WRITE_COST)
        wasted = (WRITE_COST - READ_COST) * context if broken else 0.0
        if broken:
            conversation.breaks += 1
            self.metrics.breaks += 1
            reason = step.decision.reason
            self.metrics.break_reasons[reason] = self.metrics.break_reasons.get(reason, 0) + 1
            if conversation.agent is None and conversation.session.orchestrator:
                self.metrics.main_breaks_storm += 1
        usage = Usage(input_tokens=request.new_input, output_tokens=request.output,
                      cache_write_5m=0 if hit else context, cache_read=context if hit else 0,
                      model=conversation.model)
        self._at(now + request.stream_s, "done", (request, step, usage, cost, wasted))

    def _done(self, payload: tuple[Request, Answer, Usage, float, float], now: float) -> None:
        request, step, usage, cost, wasted = payload
        conversation = request.conversation
        account = step.decision.account
        self.hidden[account].charge(cost, conversation.model == OPUS, wasted, now)
        self.router.release(step.decision.ticket, now, usage, 200)
        self.metrics.requests += 1
        self.metrics.served_cost += cost
        self.metrics.wasted += wasted
        conversation.caches[account] = now
        conversation.last_end = now
        conversation.grow(request.new_input, request.output)
        run = conversation.session
        if conversation.agent is None:
            if not run.orchestrator and run.rng.random() < self.workload.fanout:
                self._spawn(run, run.rng.randint(2, 6), 3.0, now)
            if now + 1 < run.end:
                self._at(now + conversation.think(), "issue", conversation)
        else:
            assert conversation.turns_left is not None
            conversation.turns_left -= 1
            if conversation.turns_left > 0:
                self._at(now + conversation.think(), "issue", conversation)

    def _refused(self, request: Request, step: NoAccount, now: float) -> None:
        if not step.throttled:
            self.metrics.unavailable += 1
            self._at(now + UNAVAILABLE_RETRY_S, "issue", request.conversation)
            return
        self.metrics.client_429 += 1
        opus = request.info.model == OPUS
        if any(h.room(opus) and not h.dead(now) for h in self.hidden.values()):
            self.metrics.client_429_with_room += 1
        change = self.router.next_change_at(now)
        wait = 1.0 if change is None else change - now
        self._at(now + min(CLIENT_RETRY_AFTER_MAX_S, max(1.0, wait)), "issue", request.conversation)


# -- calibration and results -----------------------------------------------------------


def supply_per_second(workload: Workload) -> float:
    accounts = [Hidden.make(a, EPOCH) for a in BASE_ACCOUNTS]
    return sum(a.week_cap for a in accounts) / WEEK


def demand_per_session(workload: Workload, seed: int) -> float:
    """Mean cost of a human session served with every cache hit (no routing), by sampling."""
    rng = random.Random(seed)
    total, samples = 0.0, 40
    for _ in range(samples):
        run = SessionRun("x", 0.0, rng.uniform(0.5 * HOUR, 3 * HOUR), False, rng.randrange(1 << 30), True)
        main = Conversation(run, None, OPUS, run.seed, None)
        t = 0.0
        while t < run.end:
            new_input, output, stream = main.next_request()
            total += new_input + output + main.context * READ_COST
            main.grow(new_input, output)
            if run.rng.random() < workload.fanout:
                for _ in range(run.rng.randint(2, 6)):
                    sub = Conversation(run, "s", SONNET, run.rng.randrange(1 << 30), run.rng.randint(2, 8))
                    total += sub.context * WRITE_COST
                    for _ in range(sub.turns_left or 0):
                        new_input, output, _ = sub.next_request()
                        total += new_input + output + sub.context * READ_COST
                        sub.grow(new_input, output)
            t += TIME_TO_HEADERS_S + stream + main.think()
    return total / samples


def arrival_rate(workload: Workload, seed: int) -> float:
    """Human sessions per hour at full weight, so that demand ≈ load × supply over a week
    (orchestrators come on top)."""
    week_weight = sum(_day_weight(EPOCH + i * 300) for i in range(int(WEEK // 300))) / (WEEK / 300)
    per_hour = workload.load * supply_per_second(workload) * HOUR
    return per_hour / (demand_per_session(workload, seed) * week_weight)


def summarise(sim: Simulation, elapsed: float) -> dict[str, Any]:
    m = sim.metrics
    windows = [w for a in sim.hidden.values() for w in a.completed]
    cap = sum(w["cap"] for w in windows)
    used = sum(min(w["used"], w["cap"]) for w in windows)
    net = sum(min(w["used"] - w["wasted"], w["cap"]) for w in windows)
    live = [a for a in sim.hidden.values() if not a.dead(EPOCH + sim.duration)]
    utils = [a.week_used / a.week_cap for a in live]
    fair = (sum(utils) ** 2 / (len(utils) * sum(u * u for u in utils))) if utils and any(utils) else None
    per_5h = m.breaks / (m.conversation_hours / 5) if m.conversation_hours else 0.0
    return {
        "quota_used_pct": 100 * used / cap if cap else None,
        "quota_net_pct": 100 * net / cap if cap else None,
        "served_cost": round(m.served_cost),
        "rebuild_share_pct": 100 * m.wasted / m.served_cost if m.served_cost else 0.0,
        "breaks": m.breaks,
        "breaks_per_conversation_5h": per_5h,
        "main_breaks_storm": m.main_breaks_storm,
        "detours": m.detours,
        "break_reasons": dict(sorted(m.break_reasons.items())),
        "upstream_429": m.upstream_429,
        "client_429": m.client_429,
        "client_429_with_room": m.client_429_with_room,
        "unavailable": m.unavailable,
        "held": m.held,
        "hold_s": round(m.hold_s),
        "requests": m.requests,
        "fairness_jain": fair,
        "week_utilization_end": {a.setup.name: round(a.week_used / a.week_cap, 3) for a in sim.hidden.values()},
        "wall_s": round(elapsed, 1),
    }


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "—".rjust(int(spec.split(".")[0]))
    return format(value, spec)


def print_table(workload: Workload, results: dict[str, dict[str, Any]], out=sys.stdout) -> None:
    print(f"\n== {workload.name}: {workload.description}", file=out)
    print(f"{'policy':<17}{'quota':>7}{'net':>7}{'rebuild%':>9}{'breaks/conv·5h':>15}{'main brk':>9}"
          f"{'detours':>8}{'429 up':>7}{'429 cl':>7}{'w/ room':>8}{'503':>5}{'held':>6}{'fair':>6}"
          f"{'requests':>9}{'wall s':>7}", file=out)
    for name, r in results.items():
        print(f"{name:<17}{_fmt(r['quota_used_pct'], '6.1f')}%{_fmt(r['quota_net_pct'], '6.1f')}%"
              f"{r['rebuild_share_pct']:9.2f}{r['breaks_per_conversation_5h']:15.3f}{r['main_breaks_storm']:9d}"
              f"{r['detours']:8d}{r['upstream_429']:7d}{r['client_429']:7d}{r['client_429_with_room']:8d}"
              f"{r['unavailable']:5d}{r['held']:6d}{_fmt(r['fairness_jain'], '6.3f')}{r['requests']:9d}"
              f"{r['wall_s']:7.1f}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1.5 simulated days per workload")
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workload", choices=[w.name for w in WORKLOADS], action="append")
    parser.add_argument("--policy", choices=list(POLICIES), action="append")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "simulate.json")
    args = parser.parse_args(argv)
    duration = (1.5 if args.quick else args.days) * DAY
    chosen = [w for w in WORKLOADS if not args.workload or w.name in args.workload]
    policies = args.policy or list(POLICIES)
    document: dict[str, Any] = {"duration_days": duration / DAY, "seed": args.seed,
                                "accounts": [a.__dict__ for a in BASE_ACCOUNTS], "workloads": {}}
    started = time.perf_counter()
    for workload in chosen:
        rate = arrival_rate(workload, args.seed)
        sessions = build_sessions(workload, duration, args.seed, rate)
        results = {}
        for policy in policies:
            began = time.perf_counter()
            sim = Simulation(workload, policy, [replace(s) for s in sessions], duration, args.seed)
            sim.run()
            results[policy] = summarise(sim, time.perf_counter() - began)
        document["workloads"][workload.name] = {"description": workload.description, "sessions": len(sessions),
                                                "human_sessions_per_hour": rate, "results": results}
        print_table(workload, results)
    print(f"\n{time.perf_counter() - started:.1f}s; JSON: {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
