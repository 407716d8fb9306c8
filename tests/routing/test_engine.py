"""Router: the interface the addon calls, with an explicit clock."""

from __future__ import annotations

import json

import pytest

from routing.config import RoutingConfig
from routing.usage import Usage
from tests.routing.helpers import DAY, HOUR, T0, apikey, limits, oauth, prove, req, router


def test_no_accounts_gives_none() -> None:
    r = router()
    assert r.select(req("s"), T0) is None
    assert not r.can_serve(req("s"), T0)


def test_all_unknown_first_requests_spread_one_probe_each() -> None:
    r = router(oauth("a"), oauth("b"), oauth("c"))
    first = [r.select(req(f"s{i}"), T0) for i in range(3)]
    assert sorted(d.account for d in first if d) == ["a", "b", "c"]
    snap = {a["name"]: a for a in r.snapshot(T0)["accounts"]}
    assert all(snap[n]["inflight"] == 1 and snap[n]["inflight_cap"] == 1 for n in "abc")
    assert all(snap[n]["status"] == "unknown" for n in "abc")


def test_probe_gate_sends_new_work_to_proven_accounts_while_probe_is_out() -> None:
    r = router(oauth("a"), oauth("b"))
    prove(r, "a", T0, u7=0.5, reset7_in=3.5 * DAY)
    probe = r.select(req("s1"), T0)
    assert probe is not None and probe.account == "b"  # no data scores above all
    assert probe.reason == "new-session"
    later = [r.select(req(f"t{i}"), T0) for i in range(3)]
    assert [d.account for d in later if d] == ["a", "a", "a"]


def test_session_stays_on_its_account_while_warm() -> None:
    r = router(oauth("a"), oauth("b"))
    prove(r, "a", T0, u7=0.5)
    prove(r, "b", T0, u7=0.5)
    first = r.select(req("s"), T0)
    assert first is not None
    r.release(first.ticket, T0 + 10)
    prove(r, first.account, T0 + 10, u7=0.9)  # now far over its line
    r.configure(RoutingConfig(far_over_line=1.0))
    again = r.select(req("s"), T0 + 60)
    assert again is not None and again.account == first.account and again.reason == "bound"


def test_release_is_idempotent_and_books_usage() -> None:
    r = router(oauth("a"))
    d = r.select(req("s"), T0)
    assert d is not None
    usage = Usage(input_tokens=100, output_tokens=50, cache_read=1000, model="claude-opus-4-5")
    r.release(d.ticket, T0 + 1, usage, 200)
    r.release(d.ticket, T0 + 2, usage, 200)
    snap = r.snapshot(T0 + 2)
    account = snap["accounts"][0]
    assert account["inflight"] == 0
    assert account["usage"]["requests"] == 1
    assert account["burn5h"] == 150
    assert snap["totals"]["tokens"] == 1150
    assert snap["sessions"][0]["requests"] == 1


def test_exclude_bench_disabled_and_needs_login_are_respected() -> None:
    r = router(oauth("a"), oauth("b"), oauth("c"), oauth("d", disabled=True))
    r.bench("a", T0 + 60, "retry-after 60s", T0)
    r.mark_needs_login("b", True)
    d = r.select(req("s"), T0, exclude={"c"})
    assert d is None
    d = r.select(req("s"), T0)
    assert d is not None and d.account == "c"
    assert r.select(req("x"), T0 + 61, exclude={"c"}).account == "a"  # bench over


def test_snapshot_is_json_and_has_the_documented_keys() -> None:
    r = router(oauth("a"), apikey("k"))
    prove(r, "a", T0)
    r.select(req("s"), T0)
    snap = r.snapshot(T0)
    json.dumps(snap)
    assert set(snap) >= {"current", "pinned", "accounts", "sessions", "capacity", "totals"}
    assert snap["capacity"] == r.capacity(T0)
    assert set(snap["capacity"]) == {
        "verdict", "headroom", "liveAccounts", "benched", "total", "warmSessions",
        "soonestResetSec", "accounts", "at",
    }


def test_pin_unknown_account_raises_keyerror() -> None:
    r = router(oauth("a"))
    with pytest.raises(KeyError):
        r.pin("nope")


def test_removed_account_ticket_releases_without_error() -> None:
    r = router(oauth("a"), oauth("b"))
    d = r.select(req("s"), T0)
    assert d is not None
    r.set_accounts([oauth(n) for n in "ab" if n != d.account])
    r.release(d.ticket, T0 + 1, Usage(input_tokens=5), 200)
    assert all(a["name"] != d.account for a in r.snapshot(T0 + 1)["accounts"])


def test_window_reset_passing_makes_rejected_account_usable_again() -> None:
    r = router(oauth("a"))
    r.observe("a", 429, limits(T0, u5=1.0, s5="rejected", reset5_in=HOUR), T0)
    assert r.select(req("s"), T0 + 10) is None
    assert r.next_change_at(T0 + 10) == pytest.approx(T0 + HOUR, abs=1)
    assert r.select(req("s"), T0 + HOUR + 1) is not None


def test_set_accounts_hot_reload_keeps_state_by_name() -> None:
    r = router(oauth("a"), oauth("b"))
    prove(r, "a", T0, u7=0.3)
    d = r.select(req("s"), T0)
    assert d is not None
    r.release(d.ticket, T0 + 1, Usage(input_tokens=10), 200)
    r.set_accounts([oauth("a", priority=3), oauth("c")])
    snap = {a["name"]: a for a in r.snapshot(T0 + 2)["accounts"]}
    assert set(snap) == {"a", "c"}
    assert snap["a"]["priority"] == 3 and snap["a"]["proven"]
    assert snap["a"]["windows"]["7d"]["utilization"] == 0.3
    assert snap["c"]["status"] == "unknown"


def test_disabled_by_hot_reload_is_never_selected_and_session_moves() -> None:
    r = router(oauth("a"), oauth("b"))
    prove(r, "a", T0, u7=0.1)
    prove(r, "b", T0, u7=0.5)
    d = r.select(req("s"), T0)
    assert d is not None and d.account == "a"
    r.release(d.ticket, T0 + 1)
    r.set_accounts([oauth("a", disabled=True), oauth("b")])
    again = r.select(req("s"), T0 + 2)
    assert again is not None and again.account == "b" and again.reason == "blocked"
    assert {a["name"]: a["status"] for a in r.snapshot(T0 + 2)["accounts"]}["a"] == "disabled"


def test_sessionless_current_is_dropped_when_its_account_is_removed() -> None:
    r = router(oauth("a"), oauth("b"))
    d = r.select(req(None), T0)
    assert d is not None
    r.set_accounts([oauth(n) for n in "ab" if n != d.account])
    assert r.snapshot(T0)["current"] is None


def test_bindings_idle_past_binding_evict_s_are_dropped() -> None:
    r = router(oauth("a"))
    d = r.select(req("s"), T0)
    assert d is not None
    r.release(d.ticket, T0 + 1)
    assert len(r.snapshot(T0 + 1000)["sessions"]) == 1
    assert r.snapshot(T0 + 1 + 1801)["sessions"] == []
