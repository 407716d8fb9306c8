"""The pure request lifecycle, driven step by step with an explicit clock."""

from __future__ import annotations

from routing.failures import Streaks
from routing.lifecycle import (
    Answer,
    ClientRetry,
    Failed,
    LifecycleSettings,
    NoAccount,
    Refresh,
    Refreshed,
    Send,
    Upstream,
    Wait,
    Woke,
    exchange,
)
from routing.ratelimits import parse_ratelimit_headers
from routing.types import RequestInfo
from tests.routing.helpers import DAY, HOUR, T0, oauth, prove, req, router

OK = parse_ratelimit_headers([])
P = "anthropic-ratelimit-unified-"


def pool(*names: str):
    r = router(*(oauth(n) for n in names))
    for i, n in enumerate(names):
        prove(r, n, T0 - 1, u7=0.2 + 0.1 * i, reset7_in=3.5 * DAY)
    return r


DEFAULTS = LifecycleSettings()


def drive(r, request, script, settings=DEFAULTS, now=T0):
    """Run the lifecycle; `script(step)` returns the outcome of each non-final step.
    Returns (final step, list of steps)."""
    flow = exchange(r, request, Streaks(), settings, now)
    steps = [next(flow)]
    while not steps[-1].final:
        steps.append(flow.send(script(steps[-1])))
    return steps[-1], steps


def answers(table, now=T0):
    """A script answering Send by the account's entry in `table` (a list consumed in order)."""
    def script(step):
        if isinstance(step, Send):
            status, headers = table[step.decision.account].pop(0)
            return Upstream(status, parse_ratelimit_headers(headers), now)
        raise AssertionError(step)
    return script


def test_a_success_is_answered_and_its_ticket_left_to_the_caller() -> None:
    r = pool("a", "b")
    final, _ = drive(r, req("s"), answers({"a": [(200, [])]}))
    assert isinstance(final, Answer) and final.decision.account == "a" and final.verdict.ok
    assert {a["name"]: a["inflight"] for a in r.snapshot(T0)["accounts"]} == {"a": 1, "b": 0}


def test_a_rejected_window_benches_and_fails_over_releasing_the_failed_ticket() -> None:
    r = pool("a", "b")
    rejected = [(P + "5h-status", "rejected"), (P + "5h-reset", str(int(T0 + HOUR)))]
    final, steps = drive(r, req("s"), answers({"a": [(429, rejected)], "b": [(200, [])]}))
    assert [s.decision.account for s in steps if isinstance(s, Send)] == ["a", "b"]
    assert isinstance(final, Answer) and final.decision.account == "b"
    snap = {a["name"]: a for a in r.snapshot(T0)["accounts"]}
    assert snap["a"]["inflight"] == 0 and snap["a"]["status"] == "benched"


def test_a_401_refreshes_and_retries_on_the_same_account() -> None:
    r = pool("a", "b")
    table = {"a": [(401, []), (200, [])]}

    def script(step):
        if isinstance(step, Refresh):
            return Refreshed(True, T0 + 1)
        return answers(table)(step)

    final, steps = drive(r, req("s"), script)
    assert [type(s).__name__ for s in steps] == ["Send", "Refresh", "Send", "Answer"]
    assert final.decision.account == "a"


def test_a_failed_refresh_needing_login_fails_over() -> None:
    r = pool("a", "b")

    def script(step):
        if isinstance(step, Refresh):
            return Refreshed(False, T0 + 1, "refresh token revoked", needs_login=True)
        return answers({"a": [(401, [])], "b": [(200, [])]})(step) if step.decision.account == "a" else \
            Upstream(200, OK, T0 + 2)

    final, _ = drive(r, req("s"), script)
    assert final.decision.account == "b"
    assert {a["name"]: a for a in r.snapshot(T0 + 2)["accounts"]}["a"]["needs_login"]


def test_a_401_whose_refresh_could_not_run_leaves_the_next_401_its_refresh() -> None:
    r = pool("a", "b")
    streaks = Streaks()

    def run(refreshed: Refreshed) -> list[str]:
        def script(step):
            if isinstance(step, Refresh):
                return refreshed
            return Upstream(401 if step.decision.account == "a" else 200, OK, T0 + 1)

        flow = exchange(r, req("s"), streaks, DEFAULTS, T0)
        steps = [next(flow)]
        while not steps[-1].final:
            steps.append(flow.send(script(steps[-1])))
        return [type(s).__name__ for s in steps]

    # The token endpoint (or the pool's Redis) was away: an outage, not a login problem.
    assert run(Refreshed(False, T0 + 1, "no new token could be had")) == ["Send", "Refresh", "Send", "Answer"]
    assert run(Refreshed(False, T0 + 1, "no new token could be had")) == ["Send", "Refresh", "Send", "Answer"]
    assert not {a["name"]: a for a in r.snapshot(T0 + 2)["accounts"]}["a"]["needs_login"]


def test_unusable_credentials_refuse_the_account_for_this_request() -> None:
    r = pool("a", "b")

    def script(step):
        if step.decision.account == "a":
            return Failed("token expired and the token endpoint is down", T0)
        return Upstream(200, OK, T0)

    final, _ = drive(r, req("s"), script)
    assert final.decision.account == "b"


def test_everything_cooling_down_holds_then_sends_when_a_bench_ends() -> None:
    r = pool("a", "b")
    for n in ("a", "b"):
        r.bench(n, T0 + 12, "529 overloaded", T0)
    clock = [T0]

    def script(step):
        if isinstance(step, Wait):
            assert step.until <= clock[0] + 5.01
            clock[0] = step.until
            return Woke(clock[0])
        return Upstream(200, OK, clock[0])

    final, steps = drive(r, req("s"), script)
    waits = [s for s in steps if isinstance(s, Wait)]
    assert len(waits) == 3 and isinstance(final, Answer)
    assert clock[0] >= T0 + 12


def test_the_hold_budget_runs_out_into_a_throttle() -> None:
    r = pool("a")
    r.bench("a", T0 + DAY, "retry-after", T0)
    clock = [T0]

    def script(step):
        clock[0] = step.until
        return Woke(clock[0])

    final, _ = drive(r, req("s"), script, LifecycleSettings(hold_budget_s=20, hold_poll_s=5))
    assert isinstance(final, NoAccount) and final.throttled and final.held_s == 20


def test_nothing_to_wait_for_is_unavailable() -> None:
    r = pool("a")
    r.mark_needs_login("a", True)
    final, _ = drive(r, req("s"), lambda step: None)
    assert isinstance(final, NoAccount) and not final.throttled


def test_a_529_alone_is_passed_through_and_with_another_account_fails_over() -> None:
    alone = pool("a")
    final, _ = drive(alone, req("s"), answers({"a": [(529, [])]}))
    assert isinstance(final, Answer) and final.verdict.kind == "overloaded"
    two = pool("a", "b")
    final, _ = drive(two, req("s"), answers({"a": [(529, [])], "b": [(200, [])]}))
    assert final.decision.account == "b" and final.decision.reason == "detour"


def test_client_failover_turns_the_failure_into_a_retry() -> None:
    r = pool("a", "b")
    final, _ = drive(r, req("s"), answers({"a": [(429, [])]}), LifecycleSettings(failover="client"))
    assert isinstance(final, ClientRetry) and final.retry_after == 0 and final.status == 429
    # The client's retry, a new request, goes elsewhere for a moment; the binding stays on a.
    retry = r.select(req("s"), T0 + 1)
    assert retry.account == "b" and retry.reason == "detour"


def test_a_stream_already_on_its_way_is_never_replaced() -> None:
    r = pool("a", "b")

    def script(step):
        return Upstream(529, OK, T0, streaming=True)

    final, _ = drive(r, RequestInfo("/v1/messages", "claude-opus-4-5", True, "s"), script)
    assert isinstance(final, Answer) and final.decision.account == "a"
