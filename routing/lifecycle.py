"""One pooled request from selection to the client's answer, as pure steps (behaviour §6).

`exchange(...)` is a generator in the style of httpx's `Auth.auth_flow`: it yields what to
do next (a `Step`) and receives what happened (an `Outcome`), carrying the whole failover
and hold lifecycle — choose an account, classify its answer, bench, refresh and retry, fail
over, hold while nothing can serve, answer the client — over the `Router`, with no I/O and
no clock: every outcome brings its `now`. The proxy addon and bench/simulate.py drive the
same code:

    flow = exchange(router, request, streaks, settings, now)
    step = next(flow)
    while not step.final:
        step = flow.send(carry_out(step))      # Send → Upstream | Failed, Refresh → Refreshed,
                                               # Wait → Woke
    # step is Answer | ClientRetry | NoAccount; the chosen ticket (if any) is still held:
    router.release(step.decision.ticket, now, usage, status)   # once the answer has ended

Failed attempts' tickets are released here; the final one is the caller's to release,
because only the caller sees the end of the stream and its usage.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from routing.engine import Router
from routing.failures import THROTTLED_KINDS, Streaks, Verdict, classify
from routing.ratelimits import RateLimits
from routing.types import Decision, RequestInfo


@dataclass(frozen=True)
class LifecycleSettings:
    failover: str = "transparent"  # "transparent": retry here; "client": the client retries
    hold_budget_s: float = 300.0
    hold_poll_s: float = 5.0
    client_retry_cooldown_s: float = 5.0  # failover: client, after an answer nothing benched


# -- steps (yielded) -------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send the request to `decision.account` with its credentials. Reply `Upstream` when
    the answer's headers arrive, `Failed` when none can: the account's credentials are not
    usable (`needs_login` if it needs a new login) or the connection failed."""

    decision: Decision
    final = False


@dataclass(frozen=True)
class Refresh:
    """Force a token refresh for `account` (an OAuth 401). Reply `Refreshed`."""

    account: str
    final = False


@dataclass(frozen=True)
class Wait:
    """Hold the request: wait until `until`, or earlier when the router may have changed
    (a release, a response, a reload). Reply `Woke`."""

    until: float
    final = False


@dataclass(frozen=True)
class Answer:
    """Give the client the last upstream answer as it is (a success, an error that is the
    client's own, or a 5xx when no other account could serve)."""

    decision: Decision
    verdict: Verdict
    final = True


@dataclass(frozen=True)
class ClientRetry:
    """`failover: client`: turn the failed answer into a 429 with `retry_after` seconds
    (0: another account can serve now) and `x-should-retry: true`."""

    decision: Decision
    verdict: Verdict
    status: int
    retry_after: int
    final = True


@dataclass(frozen=True)
class NoAccount:
    """No account can serve. `throttled`: waiting would help (the 429 of §6.4, after
    `held_s` of holding); else a 503 (none configured, or all need a login or are
    disabled or refused this request)."""

    throttled: bool
    held_s: float
    final = True


Step = Send | Refresh | Wait | Answer | ClientRetry | NoAccount


# -- outcomes (sent in) ----------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """An upstream answer's status and rate-limit headers. `streaming`: it is already on its
    way to the client (a stream), so it cannot be replaced."""

    status: int
    limits: RateLimits
    now: float
    streaming: bool = False


@dataclass(frozen=True)
class Failed:
    reason: str
    now: float
    connection: bool = False  # True: the connection failed; False: no usable credentials
    needs_login: bool = False


@dataclass(frozen=True)
class Refreshed:
    ok: bool
    now: float
    reason: str = ""
    needs_login: bool = False


@dataclass(frozen=True)
class Woke:
    now: float


Outcome = Upstream | Failed | Refreshed | Woke


# -- the exchange ----------------------------------------------------------------------


@dataclass
class Exchange:
    """What one request went through: shown on the flow, logged, and used to decide."""

    request: RequestInfo
    decision: Decision | None = None
    verdict: Verdict | None = None
    tried: set[str] = field(default_factory=set)
    # Accounts that cannot serve this request even after waiting (403, dead token, broken
    # connection). Throttled ones are only in `tried`: a hold may use them once benches end.
    refused: set[str] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refreshed: bool = False
    held_s: float = 0.0
    last_account: str | None = None

    def choose(self, decision: Decision) -> None:
        self.decision = decision
        self.last_account = decision.account
        self.refreshed = False

    def fail(self, status: int | None, reason: str, *, throttled: bool) -> None:
        account = self.decision.account if self.decision else self.last_account
        self.history.append({"account": account, "status": status, "reason": reason})
        if account:
            self.tried.add(account)
            if not throttled:
                self.refused.add(account)


_O = TypeVar("_O", Upstream, Failed, Refreshed, Woke)


def _expect(outcome: Outcome, kind: type[_O]) -> _O:
    """The outcome a step is answered with (a driver bug otherwise, said plainly)."""
    if not isinstance(outcome, kind):
        raise TypeError(f"expected {kind.__name__} in reply, got {type(outcome).__name__}")
    return outcome


def connection_failed(reason: str) -> Verdict:
    """No answer at all: try another account; with none left the client gets the 502."""
    return Verdict("connection", f"connection failed: {reason}", failover=True, pass_through_if_alone=True)


def apply_verdict(router: Router, account: str, verdict: Verdict, now: float) -> None:
    """The effect of a classified answer on its account (behaviour §6)."""
    if verdict.bench_until is not None:
        router.bench(account, verdict.bench_until, verdict.reason, now, verdict.bench_family)
    if verdict.needs_login:
        router.mark_needs_login(account, True)


def exchange(
    router: Router,
    request: RequestInfo,
    streaks: Streaks,
    settings: LifecycleSettings,
    now: float,
    state: Exchange | None = None,
) -> Generator[Step, Outcome, None]:
    """The lifecycle of one request (module docstring). `state` is filled as it goes."""
    ex = state if state is not None else Exchange(request)
    sent = yield from _send_somewhere(router, ex, settings, now)
    while True:
        if sent is None:
            ex.decision = None
            yield NoAccount(router.may_free_up(ex.refused, now, ex.request), ex.held_s)
            return
        decision, outcome = sent
        now = outcome.now
        status, verdict, streaming = _evaluate(router, ex, decision, outcome, streaks, now)
        ex.verdict = verdict
        if streaming or not (verdict.failover or verdict.refresh_and_retry):
            yield Answer(decision, verdict)
            return
        if settings.failover == "client":
            yield from _client_retry(router, ex, decision, verdict, status, settings, now)
            return
        if verdict.refresh_and_retry:
            refreshed = _expect((yield Refresh(decision.account)), Refreshed)
            now = refreshed.now
            if refreshed.ok:
                ex.refreshed = True
                ex.notes.append(f"{decision.account}: token refreshed after 401")
                sent = decision, (yield Send(decision))
                continue
            apply_verdict(router, decision.account,
                          Verdict("unauthorized", refreshed.reason, needs_login=refreshed.needs_login), now)
            if not refreshed.needs_login:
                # No new token could be had (an outage): the next 401 is not "after a fresh
                # token", and must get its refresh rather than a needs-login mark.
                streaks.unauthorized.pop(decision.account, None)
        alone = not router.can_serve(request, now, ex.tried | {decision.account})
        if verdict.pass_through_if_alone and alone:
            yield Answer(decision, verdict)
            return
        ex.fail(status, verdict.reason, throttled=verdict.kind in THROTTLED_KINDS)
        router.release(decision.ticket, now, None, status)
        sent = yield from _send_somewhere(router, ex, settings, now)


def _send_somewhere(
    router: Router, ex: Exchange, settings: LifecycleSettings, now: float
) -> Generator[Step, Outcome, tuple[Decision, Outcome] | None]:
    """Choose an account (holding if need be) and send; an account whose credentials
    cannot be had is refused for this request and the next one is tried."""
    while True:
        decision = yield from _acquire(router, ex, settings, now)
        if decision is None:
            return None
        outcome = yield Send(decision)
        if isinstance(outcome, Failed) and not outcome.connection:
            now = outcome.now
            router.release(decision.ticket, now)
            if outcome.needs_login:
                router.mark_needs_login(decision.account, True)
            ex.notes.append(outcome.reason)
            ex.fail(None, "no usable token", throttled=False)
            continue
        return decision, outcome


def _evaluate(
    router: Router, ex: Exchange, decision: Decision, outcome: Outcome, streaks: Streaks, now: float
) -> tuple[int | None, Verdict, bool]:
    """Observe and classify one outcome of a Send; apply its verdict to the account."""
    if isinstance(outcome, Failed):
        return None, connection_failed(outcome.reason), False
    if not isinstance(outcome, Upstream):
        raise TypeError(f"a Send is answered with Upstream or Failed, not {type(outcome).__name__}")
    router.observe(decision.account, outcome.status, outcome.limits, now)
    if outcome.limits.unknown:
        ex.notes.append("new rate-limit headers: " + ", ".join(outcome.limits.unknown))
    verdict = classify(
        outcome.status, outcome.limits, account=decision.account,
        oauth=router.account_kind(decision.account) == "oauth", model=ex.request.model, now=now,
        ladder=router.config.backoff_ladder_s, streaks=streaks, refreshed_this_request=ex.refreshed,
    )
    apply_verdict(router, decision.account, verdict, now)
    return outcome.status, verdict, outcome.streaming


def _acquire(
    router: Router, ex: Exchange, settings: LifecycleSettings, now: float
) -> Generator[Step, Outcome, Decision | None]:
    """Select an account, holding inference while none can serve but one may free up."""
    request = ex.request
    decision = router.select(request, now, exclude=ex.tried)
    budget = settings.hold_budget_s - ex.held_s  # one budget per request
    if decision is None and request.is_inference and budget > 0 and router.may_free_up(ex.refused, now, request):
        began, deadline = now, now + budget
        while True:
            decision = router.select(request, now, exclude=ex.refused)
            if decision is not None or now >= deadline:
                break
            until = min(deadline, now + settings.hold_poll_s)
            change = router.next_change_at(now)
            if change is not None:
                until = min(until, change + 0.01)
            now = _expect((yield Wait(until)), Woke).now
        ex.held_s += now - began
    if decision is not None:
        ex.choose(decision)
    return decision


def _client_retry(
    router: Router, ex: Exchange, decision: Decision, verdict: Verdict, status: int | None,
    settings: LifecycleSettings, now: float,
) -> Generator[Step, Outcome, None]:
    """`failover: client`: the engine already benched the account, so the client's
    immediate retry (a new request) lands elsewhere, streaming."""
    account = decision.account
    if verdict.refresh_and_retry:
        refreshed = _expect((yield Refresh(account)), Refreshed)
        now = refreshed.now
        if not refreshed.ok:
            apply_verdict(router, account,
                          Verdict("unauthorized", refreshed.reason, needs_login=refreshed.needs_login), now)
    elif verdict.pass_through_if_alone and not router.can_serve(ex.request, now, {account}):
        yield Answer(decision, verdict)
        return
    elif verdict.bench_until is None and not verdict.needs_login:
        # Nothing benched it (a 403, a first bare 429): keep the client's retry off this
        # account for a moment (short: a warm conversation takes a detour, keeps its binding).
        router.bench(account, now + settings.client_retry_cooldown_s,
                     f"{verdict.reason}; client retries elsewhere", now)
    ex.history.append({"account": account, "status": status, "reason": verdict.reason + " (client retries)"})
    retry_after = 0 if router.can_serve(ex.request, now) else 1
    yield ClientRetry(decision, verdict, status if status is not None else 502, retry_after)
