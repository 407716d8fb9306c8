"""Burn meter, learned 5h cap, pool verdict (behaviour §8.2)."""

from __future__ import annotations

import pytest

from routing.capacity import AccountCapacity, BurnMeter, LearnedCap, pool_capacity
from routing.usage import Usage
from tests.routing.helpers import DAY, HOUR, T0, limits, oauth, prove, req, router


def test_burn_counts_the_last_five_hours_only() -> None:
    m = BurnMeter()
    m.add(100, T0)
    m.add(50, T0 + HOUR)
    assert m.total(T0 + HOUR) == 150
    assert m.total(T0 + 5 * HOUR + 301) == 50
    assert m.total(T0 + 6 * HOUR + 301) == 0


def test_burn_round_trip() -> None:
    m = BurnMeter()
    m.add(100, T0)
    m.add(7, T0 + 600)
    again = BurnMeter.restore(m.export(T0 + 600), T0 + 600)
    assert again.total(T0 + 600) == 107
    assert BurnMeter.restore([["x", 1], [T0, -5], "junk", [T0, float("nan")]], T0).total(T0) == 0


def test_cap_seeded_from_utilization_then_raised_and_decayed() -> None:
    cap = LearnedCap()
    cap.on_success(1000, None, T0)
    assert cap.current(T0) is None
    cap.on_success(1000, 0.25, T0)
    assert cap.current(T0) == pytest.approx(4000)
    cap.on_success(3500, 0.9, T0 + 10)  # 3500 > 0.75 * 4000
    assert cap.current(T0 + 10) == pytest.approx(3500 / 0.75)
    # decays toward the highest successful burn (3500) with a 24 h half-life
    assert cap.current(T0 + 10 + DAY) == pytest.approx(3500 + (3500 / 0.75 - 3500) / 2)


def test_cap_set_from_burn_at_a_5h_rejection() -> None:
    cap = LearnedCap()
    cap.on_success(5000, 0.5, T0)
    cap.on_rejection(8000, T0 + 10)
    assert cap.current(T0 + 10) == 8000
    assert cap.current(T0 + 10 + 3 * DAY) == 8000  # nothing to decay toward yet


def test_router_learns_cap_at_a_5h_rejection() -> None:
    r = router(oauth("a"))
    d = r.select(req("s"), T0)
    assert d is not None
    r.observe("a", 200, limits(T0, u5=0.5), T0)
    r.release(d.ticket, T0 + 30, Usage(input_tokens=60_000, output_tokens=10_000), 200)
    r.observe("a", 429, limits(T0 + 60, u5=1.0, s5="rejected"), T0 + 60)
    line = r.capacity(T0 + 60)["accounts"][0]
    assert line["burn5h"] == 70_000 and line["capEst5h"] == 70_000 and line["headroomTok"] == 0


def line(name: str, **kw: object) -> AccountCapacity:
    base = dict(name=name, status="ok", benched=False, bench_sec=0, inflight=0, burn5h=0,
                cap_est_5h=None, headroom_tok=None, live=True, unconstrained=True, warm_sessions=0)
    base.update(kw)
    return AccountCapacity(**base)  # type: ignore[arg-type]


def test_verdicts() -> None:
    assert pool_capacity([line("a"), line("b")], None, T0)["verdict"] == "green"
    assert pool_capacity([line("a"), line("b", warm_sessions=5)], None, T0)["verdict"] == "yellow"
    benched = line("b", live=False, benched=True, status="benched")
    doc = pool_capacity([line("a"), benched], T0 + 90.2, T0)
    assert doc["verdict"] == "yellow" and doc["soonestResetSec"] == 91
    assert doc["headroom"] == 3 and doc["liveAccounts"] == 1 and doc["benched"] == 1
    assert pool_capacity([benched], None, T0)["verdict"] == "red"
    assert pool_capacity([], None, T0)["verdict"] == "red"


def test_headroom_counts_only_unconstrained_live_accounts() -> None:
    r = router(oauth("a"), oauth("b"), oauth("c"))
    prove(r, "a", T0, u5=0.8)  # in the warn band: constrained
    prove(r, "b", T0)
    r.bench("c", T0 + 60, "retry-after 60s", T0)
    r.select(req("s1"), T0)
    cap = r.capacity(T0)
    assert cap["liveAccounts"] == 2 and cap["benched"] == 1
    assert cap["headroom"] == 1 * 3 - 1
    assert cap["verdict"] == "yellow"
    assert cap["soonestResetSec"] == 60
