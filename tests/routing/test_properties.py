"""Invariants of the Router under arbitrary sequences of calls (hypothesis)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.account_state import FAMILY_RECHECK_S
from routing.config import RoutingConfig
from routing.engine import Router
from routing.ratelimits import model_family, window_applies_to_model
from routing.types import RequestInfo
from routing.usage import Usage
from tests.routing.helpers import DAY, HOUR, T0, apikey, limits, oauth

NAMES = ("a", "b", "c", "k")
SPECS = (oauth("a"), oauth("b", priority=1), oauth("c"), apikey("k"))
MODELS = ("claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5", None)
CONFIG = RoutingConfig()


def usable_in_snapshot(account: dict[str, Any], request: RequestInfo, exclude: set[str], now: float) -> bool:
    """Independent reading of 'usable' from the public snapshot."""
    if account["name"] in exclude or account["disabled"] or account["needs_login"]:
        return False
    if account["status"] not in ("ok", "unknown"):
        return False
    family = model_family(request.model)
    if family is not None and family in account["family_benches"]:
        return False
    week = account["windows"].get("7d")
    draining = (  # last ramp tier: used up to its rejection, not to the threshold
        week is not None and week["utilization"] is not None and week["reset"] is not None
        and week["reset"] - now <= CONFIG.ramp_tiers[0][0] * HOUR
    )
    for name, window in account["windows"].items():
        if not window_applies_to_model(name, request.model):
            continue
        if name in ("7d_oi", "7d_sonnet") and now - window["seen"] >= FAMILY_RECHECK_S:
            continue  # a stale family reading is re-checked by one request
        if window["status"] == "rejected":
            return False
        if (not draining and window["utilization"] is not None
                and window["utilization"] >= CONFIG.switch_threshold):
            return False
    return True


def any_usable(r: Router, request: RequestInfo, exclude: set[str], now: float) -> list[str]:
    accounts = r.snapshot(now)["accounts"]
    return [a["name"] for a in accounts if usable_in_snapshot(a, request, exclude, now)]


windows = st.fixed_dictionaries({
    "u5": st.one_of(st.none(), st.floats(0, 1.2), st.sampled_from([0.75, 0.9, 0.98, 1.0])),
    "u7": st.one_of(st.none(), st.floats(0, 1.2), st.sampled_from([0.5, 0.97, 0.98, 1.0])),
    "reset5_in": st.floats(-HOUR, 5 * HOUR),
    "reset7_in": st.one_of(st.floats(-HOUR, 10 * HOUR), st.floats(-HOUR, 7 * DAY)),
    "s5": st.sampled_from(["allowed", "allowed_warning", "rejected"]),
    "s7": st.sampled_from(["allowed", "allowed_warning", "rejected"]),
})

operation = st.one_of(
    st.tuples(st.just("select"), st.sampled_from([None, "s0", "s1", "s2", "s3"]),
              st.sampled_from(MODELS), st.sets(st.sampled_from(NAMES), max_size=3)),
    st.tuples(st.just("release"), st.integers(0, 20), st.integers(0, 50_000),
              st.sampled_from([200, 429, 500, None])),
    st.tuples(st.just("observe"), st.sampled_from(NAMES), st.sampled_from([200, 429, 529]), windows,
              st.booleans()),
    st.tuples(st.just("bench"), st.sampled_from(NAMES), st.floats(0, 2 * HOUR),
              st.sampled_from(["5h window rejected", "retry-after 30s", "7d rejected"]),
              st.sampled_from([None, "opus", "sonnet"])),
    st.tuples(st.just("advance"), st.floats(0, 3 * HOUR)),
    st.tuples(st.just("login"), st.sampled_from(NAMES), st.booleans()),
    st.tuples(st.just("accounts"), st.sets(st.sampled_from(NAMES), min_size=1)),
)


def benched_by_record(benches: dict[tuple[str, str | None], float], name: str,
                      request: RequestInfo, now: float) -> bool:
    """The test's own record of benches asked for (a lower bound of the engine's)."""
    family = model_family(request.model)
    return benches.get((name, None), 0.0) > now or (
        family is not None and benches.get((name, family), 0.0) > now
    )


def run(r: Router, ops: list[tuple], check) -> tuple[float, list[int]]:
    now = T0
    tickets: list[int] = []
    benches: dict[tuple[str, str | None], float] = {}
    configured = set(NAMES)
    for op in ops:
        kind = op[0]
        if kind == "select":
            _, session, model, exclude = op
            request = RequestInfo(path="/v1/messages", model=model, session_id=session)
            check(r, request, set(exclude), now, benches)
            decision = r.select(request, now, exclude)
            if decision is not None:
                tickets.append(decision.ticket)
        elif kind == "release" and tickets:
            _, index, tokens, status = op
            ticket = tickets.pop(index % len(tickets))
            r.release(ticket, now, Usage(input_tokens=tokens), status)
        elif kind == "observe":
            _, name, status, w, oi_rejected = op
            extra = {}
            if oi_rejected:
                extra = {"anthropic-ratelimit-unified-7d_oi-status": "rejected",
                         "anthropic-ratelimit-unified-7d_oi-reset": str(int(now + DAY))}
            r.observe(name, status, limits(now, extra=extra, **w), now)
        elif kind == "bench":
            _, name, offset, reason, family = op
            r.bench(name, now + offset, reason, now, model_family=family)
            if name in configured:
                key = (name, family)
                benches[key] = max(benches.get(key, 0.0), now + offset)
        elif kind == "advance":
            now += op[1]
        elif kind == "login":
            if op[1] in configured:
                r.mark_needs_login(op[1], op[2])
        elif kind == "accounts":
            r.set_accounts([s for s in SPECS if s.name in op[1]])
            configured = set(op[1])
            benches = {k: v for k, v in benches.items() if k[0] in op[1]}
    return now, tickets


@settings(max_examples=150)
@given(st.lists(operation, max_size=40))
def test_never_selects_an_unusable_account_while_a_usable_one_exists(ops: list[tuple]) -> None:
    def check(r: Router, request: RequestInfo, exclude: set[str], now: float, benches) -> None:
        usable = any_usable(r, request, exclude, now)
        decision = copy.deepcopy(r).select(request, now, exclude)
        if decision is None:
            assert usable == [], (usable, request)
        else:
            assert decision.account in usable, (decision, usable)
            assert not benched_by_record(benches, decision.account, request, now)

    run(Router(CONFIG, SPECS), ops, check)


@settings(max_examples=150)
@given(st.lists(operation, max_size=40))
def test_inflight_returns_to_zero_after_releasing_everything(ops: list[tuple]) -> None:
    r = Router(CONFIG, SPECS)
    now, tickets = run(r, ops, lambda *args: None)
    for ticket in tickets:
        r.release(ticket, now)
    snap = r.snapshot(now)
    assert all(a["inflight"] == 0 for a in snap["accounts"])
    assert all(s["inflight"] == 0 for s in snap["sessions"])
    assert all(line["inflight"] == 0 for line in snap["capacity"]["accounts"])


@settings(max_examples=100)
@given(st.lists(operation, max_size=40), st.sampled_from([None, "s0", "s9"]), st.sampled_from(MODELS))
def test_same_state_and_clock_give_the_same_decision(ops: list[tuple], session, model) -> None:
    r = Router(CONFIG, SPECS)
    now, _ = run(r, ops, lambda *args: None)
    request = RequestInfo(path="/v1/messages", model=model, session_id=session)
    twin = copy.deepcopy(r)
    first, second = r.select(request, now), twin.select(request, now)
    assert first == second


@settings(max_examples=150)
@given(
    reset_in=st.floats(60, 5 * HOUR),
    bench_for=st.floats(0, 5 * HOUR),
    probes=st.lists(st.floats(0, 1), min_size=1, max_size=10),
    window=st.sampled_from(["5h", "7d"]),
)
def test_a_bench_never_ends_before_the_reset_of_its_window(reset_in, bench_for, probes, window) -> None:
    r = Router(CONFIG, (oauth("a"),))
    rejected = {"s5": "rejected"} if window == "5h" else {"s7": "rejected"}
    resets = {"reset5_in": reset_in} if window == "5h" else {"reset7_in": reset_in}
    r.observe("a", 429, limits(T0, **rejected, **resets), T0)
    r.bench("a", T0 + bench_for, f"{window} window rejected", T0)
    reset_at = float(int(T0 + reset_in))
    for fraction in probes:
        moment = T0 + fraction * (reset_at - T0 - 1e-3)
        assert r.snapshot(moment)["accounts"][0]["status"] == "benched"
        assert r.select(RequestInfo(path="/v1/messages", session_id="s"), moment) is None
    bench_until = r.snapshot(T0)["accounts"][0]["bench_until"]
    assert bench_until >= reset_at
    assert r.next_change_at(T0) is not None and r.next_change_at(T0) <= max(bench_until, reset_at)
