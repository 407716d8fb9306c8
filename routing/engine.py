"""The Router: the one object the proxy addon (and the simulator) talks to.

All state lives here and every method takes `now`; nothing reads a clock, does I/O or
blocks. `select` chooses an account and reserves its in-flight slot in one synchronous
call, so a check and its reservation can never interleave with another request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

from routing import persistence
from routing.account_state import (
    FIVE_HOUR,
    SEVEN_DAY,
    AccountState,
    PaceFacts,
    UsageTotals,
)
from routing.capacity import AccountCapacity, pool_capacity
from routing.config import RoutingConfig
from routing.policy import (
    API_KEY_LAST_RESORT,
    BLOCKED,
    BOUND,
    CLIENT_PIN,
    CURRENT,
    DETOUR,
    FAR_OVER_LINE,
    NEW_SESSION,
    PINNED,
    WINDOW_LAPSED,
    Candidate,
    Choice,
    choose,
    keep_failure,
    leaves_line,
)
from routing.ratelimits import RateLimits, model_family
from routing.sessions import Binding, SessionTable
from routing.types import AccountSpec, Decision, RequestInfo
from routing.usage import PriceTable, Usage, default_prices

_REASON_WORDS = {
    NEW_SESSION: "new conversation",
    WINDOW_LAPSED: "window lapsed",
    BLOCKED: "blocked",
    CLIENT_PIN: "client pinned it elsewhere",
    "far-over-line": "far over line",
    "rail": "5h rail",
    CURRENT: "no session",
}


# Picks an account for a conversation from the usable candidates (never empty).
Placement = Callable[[Sequence[Candidate]], Candidate]


@dataclass(frozen=True)
class Plan:
    """A selection before it is committed: who serves, why, and what it changes."""

    account: str
    reason: str
    detail: str
    bind: bool  # (re)bind the request's conversation, or move the sticky current account


# Facts are recomputed at least this often (the pace line moves slowly).
_VIEW_TTL_S = 60.0


@dataclass
class _View:
    version: int
    computed_at: float
    valid_until: float
    facts: PaceFacts
    candidate: Candidate
    usable: dict[tuple[str | None, bool], bool]  # by model family, for a warm conversation


@dataclass
class _Ticket:
    account: AccountState
    binding: Binding | None
    model: str | None


class Router:
    def __init__(
        self,
        config: RoutingConfig,
        accounts: Sequence[AccountSpec] = (),
        prices: PriceTable | None = None,
        placement: Placement | None = None,
    ) -> None:
        """`placement` replaces step 2's choice (`policy.choose`) for conversations
        without a warm binding and for detours: bench/simulate.py's baselines use it."""
        self.config = config
        self.prices = prices if prices is not None else default_prices()
        self._placement = placement
        self._accounts: dict[str, AccountState] = {}
        self._sessions = SessionTable()
        self._tickets: dict[int, _Ticket] = {}
        self._next_ticket = 1
        self._current: str | None = None
        self._pinned: str | None = None
        self._totals = UsageTotals()
        self._models: dict[str, UsageTotals] = {}
        # Saved data of accounts not configured (yet): applied when they appear.
        self._pending_restore: dict[str, tuple[dict[str, Any], float]] = {}
        self._views: dict[str, _View] = {}
        self.set_accounts(accounts)

    # -- configuration ---------------------------------------------------------------

    def configure(self, config: RoutingConfig) -> None:
        self.config = config
        self._views.clear()

    def set_accounts(self, accounts: Sequence[AccountSpec]) -> None:
        """Apply the configured account list; state is kept by name, removed ones dropped."""
        fresh: dict[str, AccountState] = {}
        for spec in accounts:
            state = self._accounts.get(spec.name)
            if state is None:
                state = AccountState(spec)
                pending = self._pending_restore.pop(spec.name, None)
                if pending is not None:
                    persistence.restore_account(state, *pending)
            elif state.spec != spec:
                state.spec = spec
                state.version += 1
            fresh[spec.name] = state
        for name in self._accounts.keys() - fresh.keys():
            self._sessions.drop_account(name)
        self._accounts = fresh
        self._views = {name: view for name, view in self._views.items() if name in fresh}
        if self._current not in fresh:
            self._current = None
        if self._pinned not in fresh:
            self._pinned = None

    def mark_needs_login(self, account: str, needs: bool) -> None:
        """Unknown names are ignored: a reload may remove an account while it answers."""
        state = self._accounts.get(account)
        if state is not None and state.needs_login != needs:
            state.needs_login = needs
            state.version += 1

    def account_kind(self, account: str) -> str | None:
        """"oauth" or "apikey" for a configured account, None for an unknown name."""
        state = self._accounts.get(account)
        return None if state is None else state.spec.kind

    def may_free_up(self, refused: Collection[str], now: float, request: RequestInfo | None = None) -> bool:
        """Could waiting help a request? True when some account it has not refused (and
        that may serve it: `RequestInfo.allows`) is only throttled (benched or
        window-blocked), not disabled or waiting for a new login."""
        return any(
            name not in refused and not state.spec.disabled and not state.needs_login
            and (request is None or request.allows(name))
            for name, state in self._accounts.items()
        )

    def pin(self, account: str | None) -> None:
        """Pin the account serving requests without a session (None: automatic)."""
        if account is not None:
            self._account(account)
        self._pinned = account

    def _account(self, name: str) -> AccountState:
        try:
            return self._accounts[name]
        except KeyError:
            raise KeyError(f"unknown account {name!r}") from None

    # -- the request path ------------------------------------------------------------

    def select(
        self, request: RequestInfo, now: float, exclude: Collection[str] = ()
    ) -> Decision | None:
        """Choose an account for `request` and reserve an in-flight slot on it."""
        self._sessions.evict(now, self.config.binding_evict_s)
        plan = self._plan(request, now, exclude)
        if plan is None:
            return None
        account = self._accounts[plan.account]
        binding: Binding | None = None
        key = request.conversation_key
        if key is not None:
            binding = self._sessions.get(key)
            if plan.bind or binding is None:
                binding = self._sessions.bind(key, plan.account, plan.reason, now)
                binding.describe(request)
            else:
                self._sessions.touch(binding, now)
                if plan.reason == DETOUR:
                    binding.detours += 1
            binding.inflight += 1
            if request.model:
                binding.model = request.model
        elif plan.bind:
            self._current = plan.account
        account.inflight += 1
        ticket = self._next_ticket
        self._next_ticket += 1
        self._tickets[ticket] = _Ticket(account, binding, request.model)
        detail = plan.detail
        if request.restricted and plan.reason != DETOUR:
            detail += f" · {request.restriction()}"
        return Decision(
            account=plan.account,
            reason=plan.reason,
            detail=detail,
            session_id=request.session_id,
            ticket=ticket,
        )

    def can_serve(self, request: RequestInfo, now: float, exclude: Collection[str] = ()) -> bool:
        return self._plan(request, now, exclude) is not None

    def observe(self, account: str, status: int, limits: RateLimits, now: float) -> None:
        """Headers of one upstream response (any status), at header time."""
        state = self._accounts.get(account)
        if state is None:
            return
        state.observe(status, limits, now)
        five_hour = limits.windows.get(FIVE_HOUR)
        if status == 429 and five_hour is not None and five_hour.rejected:
            state.cap.on_rejection(state.burn.total(now), now)

    def release(
        self, ticket: int, now: float, usage: Usage | None = None, status: int | None = None
    ) -> None:
        """Free a reserved slot and book the request's usage. A second call is a no-op."""
        entry = self._tickets.pop(ticket, None)
        if entry is None:
            return
        account = entry.account
        account.inflight = max(0, account.inflight - 1)
        cost = self.prices.cost(usage) if usage is not None else 0.0
        account.usage.add(usage, cost)
        self._totals.add(usage, cost)
        model = (usage.model if usage is not None else None) or entry.model
        if model:
            self._models.setdefault(model, UsageTotals()).add(usage, cost)
        if entry.binding is not None:
            entry.binding.inflight = max(0, entry.binding.inflight - 1)
            entry.binding.totals.add(usage, cost)
            if self._sessions.get(entry.binding.key) is entry.binding:
                self._sessions.touch(entry.binding, now)
        if usage is not None and usage.burn > 0:
            account.burn.add(usage.burn, now)
            succeeded = status is None or 200 <= status < 300
            if succeeded:
                account.cap.on_success(
                    account.burn.total(now), account.utilization(FIVE_HOUR, now), now
                )

    def bench(
        self,
        account: str,
        until: float,
        reason: str,
        now: float,
        model_family: str | None = None,
    ) -> None:
        """Bench an account (or one model family on it) until `until`, never before the
        known reset of the window named in `reason`."""
        state = self._accounts.get(account)
        if state is None:
            return
        state.set_bench(until, reason, model_family, now)

    def next_change_at(self, now: float) -> float | None:
        """The soonest future moment a bench ends, a window resets (or, without a usable
        reset, ends) or a stale family reading may be re-checked."""
        soonest: float | None = None
        for state in self._accounts.values():
            moments = [state.window_end(n, w) for n, w in state.live_windows(now).items()]
            moments.extend(state.family_recheck_at(now))
            if state.bench is not None:
                moments.append(state.bench.until)
            moments.extend(b.until for b in state.family_benches.values())
            for moment in moments:
                if moment > now and (soonest is None or moment < soonest):
                    soonest = moment
        return soonest

    # -- shared state (teamclaude.shared: the pool's other proxies) -------------------

    def binding_of(self, conversation_key: str) -> tuple[str, float] | None:
        """(account, last used) of a conversation's binding, if any."""
        binding = self._sessions.get(conversation_key)
        return None if binding is None else (binding.account, binding.last_used)

    def adopt_binding(self, conversation_key: str, account: str, last_used: float, now: float,
                      *, force: bool = False) -> bool:
        """Another proxy's binding of a conversation, used at `last_used`: taken when this
        proxy has none, or an older one (the newest use wins), or with `force` (it won the
        race to bind the conversation). True when it changed here."""
        if account not in self._accounts:
            return False
        binding = self._sessions.get(conversation_key)
        if binding is not None and (binding.account == account or (binding.last_used > last_used and not force)):
            return False
        used = max(last_used, binding.last_used) if binding is not None else last_used
        self._sessions.bind(conversation_key, account, "shared", min(used, now))
        return True

    def warm_conversations(self, now: float, limit: int) -> list[dict[str, Any]]:
        """The most recently used warm conversations (at most `limit`): session, agent, account."""
        found: list[dict[str, Any]] = []
        for binding in self._sessions.most_recent():
            if len(found) >= limit or not binding.warm(now, self.config.warm_window_s):
                break
            found.append({"session": binding.session_id, "conversation": binding.conversation,
                          "account": binding.account, "inflight": binding.inflight})
        return found

    def local_inflight(self) -> int:
        """Requests in flight at this proxy."""
        return sum(state.inflight for state in self._accounts.values())

    def account_names(self) -> list[str]:
        return list(self._accounts)

    def remote_inflight(self, account: str) -> int:
        state = self._accounts.get(account)
        return 0 if state is None else state.remote_inflight

    def set_remote_inflight(self, account: str, count: int) -> None:
        """Requests in flight on `account` at the other proxies (their leases)."""
        state = self._accounts.get(account)
        if state is not None:
            state.remote_inflight = max(0, count)

    def benches_of(self, account: str, now: float) -> dict[str | None, tuple[float, str]]:
        """The account's live benches by model family (None: every model): (until, reason)."""
        state = self._accounts.get(account)
        if state is None:
            return {}
        benches: dict[str | None, tuple[float, str]] = {}
        if state.bench is not None and state.bench.until > now:
            benches[None] = (state.bench.until, state.bench.reason)
        for family, bench in state.family_benches.items():
            if bench.until > now:
                benches[family] = (bench.until, bench.reason)
        return benches

    def observe_shared(self, account: str, status: int, limits: RateLimits, observed_at: float) -> bool:
        """Rate-limit headers another proxy saw at `observed_at`: each window is taken only
        when newer than this proxy's own reading of it. True when any was taken."""
        state = self._accounts.get(account)
        if state is None:
            return False
        newer = {name: w for name, w in limits.windows.items() if state.seen.get(name, float("-inf")) < observed_at}
        if not newer:
            return False
        state.observe(status, replace(limits, windows=newer), observed_at)
        return True

    # -- policy ----------------------------------------------------------------------

    def _view(self, state: AccountState, now: float) -> _View:
        """The account's facts and candidate, recomputed only when its state changed or
        a moment passed that changes them; the live fields (in flight, warm
        conversations) are refreshed on every call. Keeps selection cheap per account."""
        name = state.spec.name
        view = self._views.get(name)
        if view is None or view.version != state.version or not view.computed_at <= now < view.valid_until:
            facts = state.facts(self.config, now)
            view = _View(state.version, now, self._valid_until(state, now), facts,
                         self._candidate(state, facts, now), {})
            self._views[name] = view
        else:
            candidate = view.candidate
            candidate.inflight = state.inflight + state.remote_inflight
            candidate.warm_sessions = self._sessions.warm_count(name, now, self.config.warm_window_s)
        return view

    def _valid_until(self, state: AccountState, now: float) -> float:
        """The first moment the account's facts or usability may change without a new
        response: a bench or window ending, a stale reading, a ramp tier starting. The pace
        line itself moves by 0.01 % a minute: recomputing once a minute is plenty."""
        soonest = now + _VIEW_TTL_S
        moments = [state.window_end(n, w) for n, w in state.windows.items()]
        moments.extend(state.family_recheck_at(now))
        if state.bench is not None:
            moments.append(state.bench.until)
        moments.extend(b.until for b in state.family_benches.values())
        week = state.windows.get(SEVEN_DAY)
        if week is not None and week.reset is not None:
            moments.extend(week.reset - hours * 3600.0 for hours, _ in self.config.ramp_tiers)
        for moment in moments:
            if now < moment < soonest:
                soonest = moment
        return soonest

    def _usable_now(
        self, state: AccountState, view: _View, request: RequestInfo, family: str | None, now: float,
        warm: bool = False,
    ) -> bool:
        usable = view.usable.get((family, warm))
        if usable is None:
            usable = view.usable[(family, warm)] = self._usable(state, view.facts, request, now, warm)
        return usable

    def _candidate(self, state: AccountState, facts: PaceFacts, now: float) -> Candidate:
        config = self.config
        return Candidate(
            name=state.name,
            api_key=state.is_api_key,
            priority=state.spec.priority,
            score=facts.score,
            gap=facts.pace_gap,
            boost=facts.ramp_boost,
            util_5h=facts.utilization_5h,
            util_7d=facts.utilization_7d,
            hours_to_weekly_reset=facts.hours_to_weekly_reset,
            under_rail=facts.under_rail,
            inflight=state.inflight + state.remote_inflight,
            inflight_cap=facts.inflight_cap,
            warm_sessions=self._sessions.warm_count(state.name, now, config.warm_window_s),
            far_over_line=facts.far_over_line,
        )

    def _usable(
        self, state: AccountState, facts: PaceFacts, request: RequestInfo, now: float, warm: bool = False
    ) -> bool:
        """Usable for this request (§5), exclusions aside. A draining account has no
        switch threshold: it serves until a window is rejected. For a conversation warm on
        this account (`warm`), a 529/5xx cooldown does not count: the request that met the
        error fails over, the others keep their cache (bench/simulate.py, 2 % of 529s:
        detouring every request during the cooldown cost 28 cache breaks per
        conversation per 5 h)."""
        threshold = None if facts.draining else self.config.switch_threshold
        return (
            not state.spec.disabled
            and not state.needs_login
            and state.bench_for(model_family(request.model), now, ignore_cooldown=warm) is None
            and state.blocking_window(request.model, now, threshold) is None
        )

    def _pool(
        self, request: RequestInfo, now: float, exclude: Collection[str]
    ) -> tuple[dict[str, Candidate], bool]:
        """Usable accounts as candidates; API keys only when no OAuth account is usable
        (with `api_keys_last_resort`). The flag says the pool is the last resort."""
        usable: list[Candidate] = []
        family = model_family(request.model)
        for name, state in self._accounts.items():
            if name in exclude or not request.allows(name):
                continue
            view = self._view(state, now)
            if self._usable_now(state, view, request, family, now):
                usable.append(view.candidate)
        if self.config.api_keys_last_resort:
            oauth = [c for c in usable if not c.api_key]
            if oauth or not usable:
                return {c.name: c for c in oauth}, False
            return {c.name: c for c in usable}, True
        return {c.name: c for c in usable}, False

    def _plan(self, request: RequestInfo, now: float, exclude: Collection[str]) -> Plan | None:
        key = request.conversation_key
        binding = self._sessions.get(key) if key is not None else None
        warm = binding is not None and binding.warm(now, self.config.warm_window_s)
        if binding is not None and warm:
            kept = self._keep(binding, request, now, exclude)
            if kept is not None:
                return kept
        pool, last_resort = self._pool(request, now, exclude)
        if not pool:
            return None
        if key is None:
            plan = self._plan_sessionless(pool, last_resort, now)
            # A restricted request does not move the sticky account of everyone else's.
            return replace(plan, bind=False) if request.restricted else plan
        if binding is None:
            return self._place(pool, last_resort, NEW_SESSION)
        if not warm:
            return self._place(pool, last_resort, WINDOW_LAPSED)
        return self._plan_warm(binding, request, pool, last_resort, now)

    def _keep(
        self, binding: Binding, request: RequestInfo, now: float, exclude: Collection[str]
    ) -> Plan | None:
        """The warm conversation stays on its account, in O(1) of the number of accounts
        (None: the full procedure decides). It is never moved to use quota that is about
        to expire (the ramp steers new conversations only): in bench/simulate.py those
        moves bought ~3 points of quota for +0.6 cache breaks per conversation per 5 h."""
        state = self._accounts.get(binding.account)
        if state is None or state.name in exclude or not request.allows(state.name):
            return None
        if state.is_api_key and self.config.api_keys_last_resort:
            return None  # whether a subscription can take it over needs the whole pool
        view = self._view(state, now)
        if not self._usable_now(state, view, request, model_family(request.model), now, warm=True):
            return None
        bound = view.candidate
        if leaves_line(bound, self.config):
            return None
        return Plan(bound.name, BOUND, f"warm conversation kept on {bound.name}", bind=False)

    def _choose(self, candidates: list[Candidate]) -> Choice:
        if self._placement is None:
            return choose(candidates, self.config)
        picked = self._placement(candidates)
        return Choice(picked, kept=False, why="placement")

    def _place(self, pool: dict[str, Candidate], last_resort: bool, reason: str) -> Plan:
        """A conversation without a warm binding (or leaving one for good): step 2."""
        choice = self._choose(list(pool.values()))
        name = choice.candidate.name
        words = _REASON_WORDS.get(reason, reason)
        if last_resort:
            reason = API_KEY_LAST_RESORT
            words = f"no subscription usable ({words})"
        return Plan(name, reason, f"{words} → {name} ({choice.why})", bind=True)

    def _plan_warm(
        self,
        binding: Binding,
        request: RequestInfo,
        pool: dict[str, Candidate],
        last_resort: bool,
        now: float,
    ) -> Plan:
        """A warm conversation whose account did not simply keep it. Only a lasting
        obstacle moves the binding (window rejected or at the threshold, needs-login,
        disabled, a bench longer than a cache lives, far over its line); a transient one
        (a short cooldown, a rejection about to reset, an account excluded for this
        request) serves this one request elsewhere and leaves the binding where its cache
        is. The in-flight cap does not apply to a warm conversation at all: it spreads new
        conversations; in bench/simulate.py applying it to warm ones only broke caches."""
        bound = pool.get(binding.account)
        if bound is not None:
            if leaves_line(bound, self.config):
                choice = choose(list(pool.values()), self.config, bound)
                name = choice.candidate.name
                if choice.kept:
                    return Plan(name, BOUND, f"far over line, kept on {name} ({choice.why})", bind=False)
                return Plan(name, FAR_OVER_LINE, f"far over line → {name} ({choice.why})", bind=True)
            return Plan(bound.name, BOUND, f"warm conversation kept on {bound.name}", bind=False)
        if request.pin is not None and request.pin != binding.account:
            # The client moved its conversation to another account: it follows.
            return self._place(pool, last_resort, CLIENT_PIN)
        if not request.allows(binding.account):
            choice = self._choose(list(pool.values()))
            return Plan(choice.candidate.name, DETOUR,
                        f"{request.restriction()} → this request on {choice.candidate.name} ({choice.why}); "
                        f"the conversation stays on {binding.account}", bind=False)
        if self._lasting_obstacle(binding.account, request, last_resort, now):
            return self._place(pool, last_resort, BLOCKED)
        choice = self._choose(list(pool.values()))
        name = choice.candidate.name
        return Plan(
            name, DETOUR,
            f"{binding.account} busy for now → this request on {name} ({choice.why}); "
            f"the conversation stays on {binding.account}",
            bind=False,
        )

    def _lasting_obstacle(self, account: str, request: RequestInfo, last_resort: bool, now: float) -> bool:
        """Is the bound account out of this conversation's reach for longer than its cache
        lives? (An account only excluded for this request is not.)"""
        state = self._accounts.get(account)
        if state is None:
            return True
        if state.is_api_key and self.config.api_keys_last_resort and not last_resort:
            return True  # a subscription can serve: the API key was only the last resort
        facts = state.facts(self.config, now)
        threshold = None if facts.draining else self.config.switch_threshold
        free_at = state.free_at(request.model, now, threshold)
        return free_at is not None and free_at - now > self.config.warm_window_s

    def _plan_sessionless(
        self, pool: dict[str, Candidate], last_resort: bool, now: float
    ) -> Plan:
        pinned = pool.get(self._pinned) if self._pinned is not None else None
        if pinned is not None and pinned.has_room:
            return Plan(pinned.name, PINNED, f"no session → pinned {pinned.name}", bind=False)
        current = pool.get(self._current) if self._current is not None else None
        if current is not None and keep_failure(current) is None:
            return Plan(current.name, CURRENT, f"no session → current {current.name}", bind=False)
        choice = choose(list(pool.values()), self.config, current)
        name = choice.candidate.name
        if choice.kept:
            return Plan(name, CURRENT, f"no session → current {name} ({choice.why})", bind=False)
        reason = API_KEY_LAST_RESORT if last_resort else CURRENT
        return Plan(name, reason, f"no session → {name} ({choice.why})", bind=True)

    # -- reporting -------------------------------------------------------------------

    def _capacity_lines(self, now: float) -> list[AccountCapacity]:
        config = self.config
        lines = []
        for state in self._accounts.values():
            status = state.status(now)
            facts = state.facts(config, now)
            # /capacity agrees with routing: an account no model can use is benched until
            # it can (a draining account has no switch threshold, as in `_usable`).
            locked = state.locked_until(now, None if facts.draining else config.switch_threshold)
            if locked is not None and status in ("ok", "unknown"):
                status = "benched"
            live = status in ("ok", "unknown")
            used_5h = state.utilization(FIVE_HOUR, now)
            used_7d = state.utilization(SEVEN_DAY, now)
            unconstrained = (
                live
                and (used_5h is None or used_5h < config.five_hour_warn)
                and (used_7d is None or used_7d < config.switch_threshold)
                and not any(w.rejected for w in state.live_windows(now).values())
            )
            burn = state.burn.total(now)
            cap = state.cap.current(now)
            lines.append(
                AccountCapacity(
                    name=state.name,
                    status=status,
                    benched=locked is not None,
                    bench_sec=0 if locked is None else max(0, math.ceil(locked - now)),
                    inflight=state.inflight + state.remote_inflight,
                    burn5h=burn,
                    cap_est_5h=None if cap is None else int(round(cap)),
                    headroom_tok=None if cap is None else max(0, int(round(cap - burn))),
                    live=live,
                    unconstrained=unconstrained,
                    warm_sessions=self._sessions.warm_count(state.name, now, config.warm_window_s),
                )
            )
        return lines

    def _soonest_reset(self, now: float) -> float | None:
        soonest: float | None = None
        for state in self._accounts.values():
            if state.spec.disabled:
                continue
            for name in (FIVE_HOUR, SEVEN_DAY):
                window = state.window(name, now)
                end = None if window is None else state.window_end(name, window)
                if end is not None and end > now:
                    soonest = end if soonest is None else min(soonest, end)
            bench = state.bench_for(None, now)
            if bench is not None:
                soonest = bench.until if soonest is None else min(soonest, bench.until)
        return soonest

    def capacity(self, now: float) -> dict[str, Any]:
        return pool_capacity(self._capacity_lines(now), self._soonest_reset(now), now)

    def snapshot(self, now: float) -> dict[str, Any]:
        """The engine's part of the state file (docs/state-file.md); JSON-serialisable."""
        self._sessions.evict(now, self.config.binding_evict_s)
        capacity = self.capacity(now)
        lines = {line["name"]: line for line in capacity["accounts"]}
        accounts = [
            self._account_snapshot(state, lines[state.name], now)
            for state in self._accounts.values()
        ]
        sessions = self._sessions.by_session(now, self.config.warm_window_s)
        return {
            "current": self._current,
            "pinned": self._pinned,
            "accounts": accounts,
            "sessions": sessions,
            "capacity": capacity,
            "totals": {
                "requests": self._totals.requests,
                "tokens": self._totals.usage.total,
                "cost_usd": round(self._totals.cost_usd, 6),
                "models": {m: t.as_dict() for m, t in sorted(self._models.items())},
            },
        }

    def _account_snapshot(
        self, state: AccountState, line: dict[str, Any], now: float
    ) -> dict[str, Any]:
        config = self.config
        bench = state.bench_for(None, now)
        facts = state.facts(config, now)
        return {
            "name": state.name,
            "kind": state.spec.kind,
            "email": state.spec.email,
            "plan": state.spec.plan,
            "priority": state.spec.priority,
            "disabled": state.spec.disabled,
            "status": line["status"],
            "windows": {
                name: {"utilization": w.utilization, "reset": w.reset, "status": w.status,
                       "ends": state.window_end(name, w), "seen": state.seen.get(name)}
                for name, w in sorted(state.live_windows(now).items())
            },
            "unified": dict(state.unified),
            "raw": dict(state.raw),
            "new_headers": list(state.new_headers),
            "pace_line": facts.pace_line,
            "pace_gap": facts.pace_gap,
            "score": facts.score,
            "inflight": state.inflight + state.remote_inflight,
            "inflight_here": state.inflight,
            "inflight_cap": facts.inflight_cap,
            "proven": state.proven,
            "warm_sessions": self._sessions.warm_count(state.name, now, config.warm_window_s),
            "bench_until": None if bench is None else bench.until,
            "bench_reason": None if bench is None else bench.reason,
            "family_benches": {
                family: {"until": b.until, "reason": b.reason}
                for family, b in sorted(state.family_benches.items())
                if b.until > now
            },
            "needs_login": state.needs_login,
            "token_expires_at_ms": None,
            "usage": state.usage.as_dict(),
            "burn5h": line["burn5h"],
            "cap_est_5h": line["capEst5h"],
            "headroom_tok": line["headroomTok"],
            "live": line["live"],
        }

    # -- persistence (behaviour §8.3) -----------------------------------------------------

    def export_persistent(self, now: float) -> dict[str, Any]:
        return persistence.export_router(
            self._accounts,
            {name: data for name, (data, _) in self._pending_restore.items()},
            self._totals,
            self._models,
            now,
        )

    def restore_persistent(self, data: dict[str, Any], now: float) -> None:
        """Reload saved engine data; anything that does not validate is ignored."""
        saved = persistence.parse(data)
        for name, account_data in saved.accounts.items():
            state = self._accounts.get(name)
            if state is None:
                self._pending_restore[name] = (account_data, now)
            else:
                persistence.restore_account(state, account_data, now)
        if saved.totals is not None:
            self._totals = saved.totals
        self._models.update(saved.models)

    # -- the pool's quota (teamclaude.quota) -----------------------------------------

    def quota_accounts(self, now: float) -> list[dict[str, Any]]:
        """Per account what the pool's quota is made of, in the state file's account shape
        (name, kind, plan, disabled, needs_login, windows): cheap enough for every response."""
        return [
            {
                "name": state.name,
                "kind": state.spec.kind,
                "plan": state.spec.plan,
                "disabled": state.spec.disabled,
                "needs_login": state.needs_login,
                "windows": {
                    name: {"utilization": w.utilization, "reset": w.reset, "status": w.status}
                    for name, w in state.live_windows(now).items()
                },
            }
            for state in self._accounts.values()
        ]
