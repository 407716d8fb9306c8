"""Selection rules of behaviour §5: the pure chooser, and each rail through the Router."""

from __future__ import annotations

from dataclasses import replace

import pytest

from routing.config import RoutingConfig
from routing.policy import Candidate, choose, keep_failure
from tests.routing.helpers import DAY, HOUR, T0, apikey, limits, oauth, prove, req, router

CONFIG = RoutingConfig()


def cand(name: str, score: float | None = 0.0, **kw: object) -> Candidate:
    base = Candidate(
        name=name, api_key=False, priority=0, score=score, gap=score, boost=0.0,
        util_5h=0.1, util_7d=0.5, hours_to_weekly_reset=80.0, under_rail=True,
        inflight=0, inflight_cap=5, warm_sessions=0, far_over_line=False,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


# -- the pure chooser ------------------------------------------------------------------


def test_best_score_wins() -> None:
    assert choose([cand("a", 0.0), cand("b", 0.3)], CONFIG).candidate.name == "b"


def test_unknown_scores_above_everything_even_a_ramp() -> None:
    assert choose([cand("a", 40.0), cand("b", None)], CONFIG).candidate.name == "b"


def test_tie_band_breaks_by_warm_sessions_then_inflight_then_name() -> None:
    a, b, c = cand("a", 0.30, warm_sessions=3), cand("b", 0.25, warm_sessions=1), cand("c", 0.0)
    assert choose([a, b, c], CONFIG).candidate.name == "b"
    b2 = replace(b, warm_sessions=3, inflight=2)
    a2 = replace(a, inflight=1)
    assert choose([a2, b2, c], CONFIG).candidate.name == "a"
    assert choose([replace(a2, inflight=2), b2], CONFIG).candidate.name == "a"  # name


def test_priority_comes_first_among_ties() -> None:
    a, b = cand("a", 0.3), cand("b", 0.25, priority=-1, warm_sessions=4)
    assert choose([a, b], CONFIG).candidate.name == "b"


def test_rail_then_inflight_cap_then_session_cap_narrow_but_never_to_nothing() -> None:
    over_rail = cand("a", 0.9, under_rail=False)
    full = cand("b", 0.8, inflight=5)
    crowded = cand("c", 0.7, warm_sessions=7)
    fine = cand("d", -0.5)
    assert choose([over_rail, full, crowded, fine], CONFIG).candidate.name == "d"
    assert choose([over_rail, full, crowded], CONFIG).candidate.name == "c"
    assert choose([over_rail, full], CONFIG).candidate.name == "b"
    assert choose([over_rail], CONFIG).candidate.name == "a"


def test_keep_failure_reasons() -> None:
    assert keep_failure(cand("a")) is None
    assert keep_failure(cand("a", under_rail=False)) == "rail"
    assert keep_failure(cand("a", inflight=5)) == "blocked"
    assert keep_failure(cand("a", far_over_line=True)) == "far-over-line"


def test_bound_account_stays_when_every_other_shares_its_problem() -> None:
    bound = cand("a", 0.0, inflight=5)
    other = cand("b", 0.5, inflight=5)
    choice = choose([bound, other], CONFIG, bound)
    assert choice.kept and choice.candidate.name == "a"
    assert choose([bound, replace(other, inflight=1)], CONFIG, bound).candidate.name == "b"


def test_far_over_line_bound_moves_unless_all_are_far_over() -> None:
    bound = cand("a", -0.3, far_over_line=True)
    assert choose([bound, cand("b", 0.1)], CONFIG, bound).candidate.name == "b"
    both = choose([bound, cand("b", -0.2, far_over_line=True)], CONFIG, bound)
    assert both.kept and both.candidate.name == "a"


def test_bound_session_cap_counts_the_session_itself_once() -> None:
    bound = cand("a", 0.0, warm_sessions=7, under_rail=False)
    other = cand("b", 0.0, warm_sessions=7, under_rail=False)
    choice = choose([bound, other], CONFIG, bound)
    assert choice.kept and choice.candidate.name == "a"


# -- rules through the Router -----------------------------------------------------------


def three_proven(**config: object):
    r = router(oauth("a"), oauth("b"), oauth("c"), **config)
    prove(r, "a", T0, u7=0.20, reset7_in=3.5 * DAY)  # gap +0.30
    prove(r, "b", T0, u7=0.35, reset7_in=3.5 * DAY)  # gap +0.15
    prove(r, "c", T0, u7=0.50, reset7_in=3.5 * DAY)  # gap  0.00
    return r


def test_new_session_goes_to_furthest_behind_its_line() -> None:
    r = three_proven()
    d = r.select(req("s"), T0)
    assert d is not None and d.account == "a" and d.reason == "new-session"
    assert "gap +0.30" in d.detail


def test_burst_of_twenty_new_sessions_respects_caps_while_another_has_room() -> None:
    r = three_proven()
    counts = {"a": 0, "b": 0, "c": 0}
    for i in range(20):
        d = r.select(req(f"s{i}"), T0)
        assert d is not None
        others_have_room = any(counts[n] < 5 for n in counts if n != d.account)
        if others_have_room:
            assert counts[d.account] < 5, (i, counts)
        counts[d.account] += 1
    assert max(counts.values()) <= 7  # the session cap holds too
    assert sum(counts.values()) == 20


def test_crossing_the_5h_warn_band_mid_burst_keeps_the_full_cap() -> None:
    # Issue 13: the warn band's cap of 1 only made overlapping requests of warm
    # conversations move; it is gone, the 5h soft ceiling still steers new work.
    r = three_proven()
    first = [r.select(req(f"s{i}"), T0) for i in range(2)]
    assert [d.account for d in first if d] == ["a", "a"]
    r.observe("a", 200, limits(T0 + 1, u5=0.80, u7=0.20, reset7_in=3.5 * DAY), T0 + 1)
    snap = {a["name"]: a for a in r.snapshot(T0 + 1)["accounts"]}
    assert snap["a"]["inflight_cap"] == 5
    assert r.select(req("s0"), T0 + 2).account == "a"  # a warm conversation overlapping stays


def test_warm_session_whose_account_goes_far_over_its_line_rebinds() -> None:
    r = three_proven()
    d = r.select(req("s"), T0)
    assert d is not None and d.account == "a"
    r.release(d.ticket, T0 + 5)
    r.observe("a", 200, limits(T0 + 5, u7=0.70, reset7_in=3.5 * DAY), T0 + 5)  # 0.2 over
    again = r.select(req("s"), T0 + 10)
    assert again is not None and again.account == "b" and again.reason == "far-over-line"
    snap = r.snapshot(T0 + 10)
    assert snap["sessions"][0]["account"] == "b"
    assert snap["sessions"][0]["reason"] == "far-over-line"


def test_warm_session_over_the_5h_rail_stays_until_rejected_while_new_work_avoids_it() -> None:
    # Issue 13: the 5h soft ceiling no longer moves a warm conversation (moving it early
    # breaks its cache and leaves the rest of the window unused); it steers new work.
    r = three_proven()
    d = r.select(req("s"), T0)
    assert d is not None and d.account == "a"
    r.release(d.ticket, T0 + 5)
    r.observe("a", 200, limits(T0 + 5, u5=0.92, u7=0.20, reset7_in=3.5 * DAY), T0 + 5)
    again = r.select(req("s"), T0 + 10)
    assert again is not None and again.account == "a" and again.reason == "bound"
    assert r.select(req("new"), T0 + 10).account != "a"
    r.observe("a", 429, limits(T0 + 11, u5=1.0, s5="rejected", u7=0.20, reset5_in=HOUR), T0 + 11)
    r.bench("a", T0 + 11 + HOUR, "5h window rejected", T0 + 11)
    r.release(again.ticket, T0 + 11, status=429)
    moved = r.select(req("s"), T0 + 12)
    assert moved is not None and moved.account != "a" and moved.reason == "blocked"


def test_lapsed_session_is_chosen_again_with_window_lapsed() -> None:
    r = three_proven()
    d = r.select(req("s"), T0)
    assert d is not None
    r.release(d.ticket, T0 + 5)
    r.observe("a", 200, limits(T0 + 5, u7=0.52, reset7_in=3.5 * DAY), T0 + 5)  # now b leads
    later = r.select(req("s"), T0 + 5 + 301)
    assert later is not None and later.account == "b" and later.reason == "window-lapsed"


def test_end_of_week_ramp_drains_an_account_about_to_reset() -> None:
    r = router(oauth("fresh"), oauth("expiring"))
    prove(r, "fresh", T0, u7=0.0, reset7_in=7 * DAY)
    prove(r, "expiring", T0, u7=0.60, reset7_in=6 * HOUR)  # ahead of nothing: line 0.96
    d = r.select(req("s"), T0)
    assert d is not None and d.account == "expiring"
    assert "weekly reset in 6.0h" in d.detail


def test_model_scoped_rejection_avoids_the_account_only_for_that_model() -> None:
    r = router(oauth("a"), oauth("b"))
    prove(r, "b", T0, u7=0.5)
    r.observe(
        "a", 200,
        limits(T0, u7=0.1, extra={
            "anthropic-ratelimit-unified-7d_oi-utilization": "1.0",
            "anthropic-ratelimit-unified-7d_oi-reset": str(int(T0 + DAY)),
            "anthropic-ratelimit-unified-7d_oi-status": "rejected",
        }),
        T0,
    )
    opus = r.select(req("s1", model="claude-opus-4-5"), T0)
    sonnet = r.select(req("s2", model="claude-sonnet-4-5"), T0)
    assert opus is not None and opus.account == "b"
    assert sonnet is not None and sonnet.account == "a"


def test_family_bench_benches_only_that_family() -> None:
    r = router(oauth("a"), oauth("b"))
    prove(r, "a", T0, u7=0.1)
    prove(r, "b", T0, u7=0.5)
    r.bench("a", T0 + HOUR, "7d_sonnet rejected", T0, model_family="sonnet")
    assert r.select(req("x", model="claude-sonnet-4-5"), T0).account == "b"
    assert r.select(req("y", model="claude-opus-4-5"), T0).account == "a"


def test_api_keys_only_as_last_resort() -> None:
    r = router(oauth("sub"), apikey("key"))
    prove(r, "sub", T0, u7=0.9, reset7_in=6 * DAY)  # far ahead of its line
    prove(r, "key", T0, u5=None, u7=None)
    d = r.select(req("s"), T0)
    assert d is not None and d.account == "sub"
    r.bench("sub", T0 + HOUR, "retry-after 3600s", T0)
    d2 = r.select(req("t"), T0)
    assert d2 is not None and d2.account == "key" and d2.reason == "api-key-last-resort"
    back = r.select(req("t"), T0 + HOUR + 1)
    assert back is not None and back.account == "sub" and back.reason == "blocked"


def test_api_keys_compete_when_last_resort_is_off() -> None:
    r = router(oauth("sub"), apikey("key"), api_keys_last_resort=False)
    prove(r, "sub", T0, u7=0.9, reset7_in=6 * DAY)
    prove(r, "key", T0, u5=None, u7=None)
    d = r.select(req("s"), T0)
    assert d is not None and d.account == "key"


def test_sessionless_requests_use_a_sticky_current_account() -> None:
    r = three_proven()
    first = r.select(req(None), T0)
    assert first is not None and first.account == "a" and first.reason == "current"
    r.observe("a", 200, limits(T0 + 1, u7=0.25, reset7_in=3.5 * DAY), T0 + 1)
    second = r.select(req(None), T0 + 2)
    assert second is not None and second.account == "a" and second.reason == "current"
    assert r.snapshot(T0 + 2)["current"] == "a"


def test_pin_serves_sessionless_requests_while_usable() -> None:
    r = three_proven()
    r.pin("c")
    d = r.select(req(None), T0)
    assert d is not None and d.account == "c" and d.reason == "pinned"
    r.bench("c", T0 + 60, "retry-after 60s", T0)
    d2 = r.select(req(None), T0 + 1)
    assert d2 is not None and d2.account == "a" and d2.reason == "current"
    assert r.snapshot(T0 + 1)["pinned"] == "c"
    r.pin(None)
    assert r.snapshot(T0 + 1)["pinned"] is None


def test_needs_login_account_is_never_selected() -> None:
    r = three_proven()
    r.mark_needs_login("a", True)
    assert all(r.select(req(f"s{i}"), T0).account != "a" for i in range(10))
    r.mark_needs_login("a", False)
    assert r.select(req("z"), T0).account == "a"


@pytest.mark.parametrize("util", [0.98, 1.2])
def test_switch_threshold_makes_an_account_unusable(util: float) -> None:
    r = router(oauth("a"), oauth("b"))
    prove(r, "a", T0, u5=util, u7=0.1)
    prove(r, "b", T0, u7=0.9, reset7_in=6 * DAY)
    assert r.select(req("s"), T0).account == "b"


# -- additions beyond the letter of §5 (see routing/policy.py) ---------------------------


def test_blocked_session_moves_only_to_a_steady_free_slot() -> None:
    bound = cand("a", 0.0, inflight=5, warm_sessions=6)
    momentary = cand("b", 0.5, inflight=4, warm_sessions=5)  # its own sessions claim it
    steady = cand("c", -0.04, inflight=1, warm_sessions=2)
    assert choose([bound, momentary], CONFIG, bound).kept
    assert choose([bound, momentary, steady], CONFIG, bound).candidate.name == "c"


def test_new_work_avoids_accounts_far_over_their_line() -> None:
    ramped = cand("a", 0.3, gap=-0.2, far_over_line=True)  # boosted but far ahead
    plain = cand("b", 0.0)
    assert choose([ramped, plain], CONFIG).candidate.name == "b"
    assert choose([ramped], CONFIG).candidate.name == "a"


def test_far_over_line_does_not_ping_pong_between_two_far_accounts() -> None:
    a = cand("a", 0.2, gap=-0.11, far_over_line=True)
    b = cand("b", 0.3, gap=-0.12, far_over_line=True)
    choice = choose([a, b], CONFIG, a)
    assert choice.kept and choice.candidate.name == "a"


def test_draining_account_ignores_the_5h_warn_band_ceiling_and_threshold() -> None:
    r = router(oauth("exp"), oauth("other"))
    prove(r, "other", T0, u7=0.30, reset7_in=3.5 * DAY)
    prove(r, "exp", T0, u5=0.95, u7=0.985, reset7_in=6 * HOUR)
    snap = {a["name"]: a for a in r.snapshot(T0)["accounts"]}
    assert snap["exp"]["inflight_cap"] == 5
    d = r.select(req("s"), T0)
    assert d is not None and d.account == "exp"
    r.observe("exp", 429, limits(T0 + 1, u5=0.95, u7=1.0, s7="rejected", reset7_in=6 * HOUR), T0 + 1)
    assert r.select(req("t"), T0 + 2).account == "other"  # rejected stops it all the same


def test_account_outside_the_last_ramp_tier_keeps_the_rails_of_section_5() -> None:
    r = router(oauth("exp"), oauth("other"))
    prove(r, "other", T0, u7=0.30, reset7_in=3.5 * DAY)
    prove(r, "exp", T0, u5=0.80, u7=0.90, reset7_in=9 * HOUR)  # second tier: no drain
    assert r.select(req("s"), T0).account == "exp"  # ramp boost 0.8 wins the score
    prove(r, "exp", T0, u5=0.80, u7=0.985, reset7_in=9 * HOUR)
    assert r.select(req("t"), T0).account == "other"  # threshold applies


def test_expiring_quota_draws_new_conversations_but_never_moves_a_warm_one() -> None:
    # Issue 13: moving warm conversations to an account whose quota is about to expire
    # bought ~3 points of quota for +0.6 cache breaks per conversation per 5 h in
    # bench/simulate.py; the ramp boost now steers new conversations only.
    r = router(oauth("a"), oauth("exp"))
    prove(r, "a", T0, u7=0.50, reset7_in=3.5 * DAY)
    prove(r, "exp", T0, u7=0.55, reset7_in=8 * HOUR + 60)  # drains from T0 + 60
    r.bench("exp", T0 + 120, "retry-after 120s", T0)
    d = r.select(req("s"), T0)
    assert d is not None and d.account == "a"
    r.release(d.ticket, T0 + 10)
    stays = r.select(req("s"), T0 + 130)
    assert stays is not None and stays.account == "a" and stays.reason == "bound"
    new = r.select(req("t"), T0 + 130)
    assert new is not None and new.account == "exp"


def test_a_moved_session_goes_only_where_it_can_stay() -> None:
    bound = cand("a", -0.3, gap=-0.3, far_over_line=True)
    near_limit = cand("b", -0.07, gap=-0.07)  # would be far over after a little drift
    over_rail = cand("c", 0.2, under_rail=False)
    crowded = cand("d", 0.2, warm_sessions=7)
    assert choose([bound, near_limit, over_rail, crowded], CONFIG, bound).kept
    clear = cand("e", -0.04, gap=-0.04)
    assert choose([bound, near_limit, over_rail, crowded, clear], CONFIG, bound).candidate.name == "e"
