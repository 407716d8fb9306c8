"""SessionTable: bindings, warm counts, eviction."""

from __future__ import annotations

from routing.sessions import SessionTable
from tests.routing.helpers import T0

WARM = 300.0


def test_bind_touch_and_warm_count() -> None:
    t = SessionTable()
    t.bind("s1", "a", "new-session", T0)
    t.bind("s2", "a", "new-session", T0 + 100)
    t.bind("s3", "b", "new-session", T0 + 100)
    assert t.warm_count("a", T0 + 200, WARM) == 2
    assert t.warm_count("a", T0 + 350, WARM) == 1  # s1 went cold
    assert t.warm_count("a", T0 + 401, WARM) == 0
    assert t.warm_count("b", T0 + 401, WARM) == 0
    assert t.get("s1") is not None  # cold but still bound


def test_touch_keeps_a_session_warm() -> None:
    t = SessionTable()
    b = t.bind("s1", "a", "new-session", T0)
    t.touch(b, T0 + 250)
    assert t.warm_count("a", T0 + 500, WARM) == 1


def test_a_session_with_a_request_in_flight_stays_warm() -> None:
    t = SessionTable()
    b = t.bind("s1", "a", "new-session", T0)
    b.inflight = 1
    assert t.warm_count("a", T0 + 1000, WARM) == 1
    assert b.warm(T0 + 1000, WARM)
    b.inflight = 0
    assert t.warm_count("a", T0 + 1000 + WARM + 1, WARM) == 0


def test_rebind_moves_the_warm_count_and_counts_rebinds() -> None:
    t = SessionTable()
    t.bind("s1", "a", "new-session", T0)
    b = t.bind("s1", "b", "far-over-line", T0 + 10)
    assert (b.account, b.reason, b.rebinds) == ("b", "far-over-line", 1)
    assert t.warm_count("a", T0 + 10, WARM) == 0
    assert t.warm_count("b", T0 + 10, WARM) == 1


def test_evict_drops_idle_bindings_but_not_busy_ones() -> None:
    t = SessionTable()
    t.bind("old", "a", "new-session", T0)
    busy = t.bind("busy", "a", "new-session", T0)
    busy.inflight = 1
    t.bind("new", "a", "new-session", T0 + 1700)
    t.evict(T0 + 1801, 1800)
    assert t.get("old") is None
    assert t.get("busy") is not None and t.get("new") is not None
    assert len(t) == 2


def test_bindings_are_bounded_least_recently_used_idle_ones_go_first(monkeypatch) -> None:
    from routing import sessions

    monkeypatch.setattr(sessions, "MAX_BINDINGS", 3)
    t = SessionTable()
    busy = t.bind("busy", "a", "new-session", T0)
    busy.inflight = 1
    for i in range(10):  # a client inventing conversations
        t.bind(f"agent{i}", "a", "new-session", T0 + i)
    assert len(t) == 3
    assert t.get("busy") is busy and t.get("agent9") is not None and t.get("agent0") is None
    assert t.warm_count("a", T0 + 10, WARM) == 3
