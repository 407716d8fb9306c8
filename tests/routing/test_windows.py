"""Model-scoped benches and windows without a usable reset, through the Router as the
addon drives it: observe the headers, classify the answer, bench what the verdict says."""

from __future__ import annotations

import pytest

from routing import persistence
from routing.account_state import FAMILY_RECHECK_S
from routing.engine import Router
from routing.failures import Streaks, classify
from routing.ratelimits import parse_ratelimit_headers
from tests.routing.helpers import DAY, HOUR, T0, limits, oauth, prove, req, router

OPUS, SONNET = "claude-opus-4-5", "claude-sonnet-4-5"
P = "anthropic-ratelimit-unified-"


def answer(r: Router, account: str, status: int, headers: list[tuple[str, str]], model: str, now: float) -> None:
    """What the addon does with one upstream answer (observe, classify, apply the verdict)."""
    parsed = parse_ratelimit_headers(headers)
    r.observe(account, status, parsed, now)
    verdict = classify(status, parsed, account=account, oauth=True, model=model, now=now,
                       ladder=r.config.backoff_ladder_s, streaks=Streaks())
    if verdict.bench_until is not None:
        r.bench(account, verdict.bench_until, verdict.reason, now, verdict.bench_family)


def two_accounts() -> Router:
    r = router(oauth("a"), oauth("b"))
    prove(r, "a", T0, u7=0.10)
    prove(r, "b", T0, u7=0.50)  # a is preferred (further behind its line)
    return r


def test_5h_and_7d_oi_rejected_benches_opus_for_days_but_sonnet_only_until_the_5h_reset() -> None:
    r = two_accounts()
    answer(r, "a", 429, [
        (P + "5h-status", "rejected"), (P + "5h-reset", str(int(T0 + HOUR))), (P + "5h-utilization", "1.0"),
        (P + "7d_oi-status", "rejected"), (P + "7d_oi-reset", str(int(T0 + 3 * DAY))),
        (P + "status", "rejected"), ("retry-after", str(int(3 * DAY))),
    ], OPUS, T0)
    assert r.select(req("x", SONNET), T0 + 60).account == "b"
    assert r.select(req("y", OPUS), T0 + 60).account == "b"
    later = T0 + HOUR + 1  # the 5h window reset: Sonnet may use a again, Opus may not
    assert r.select(req("s", SONNET), later).account == "a"
    assert r.select(req("o", OPUS), later).account == "b"
    snapshot = {a["name"]: a for a in r.snapshot(later)["accounts"]}
    assert snapshot["a"]["status"] == "ok" and snapshot["a"]["family_benches"]["opus"]["until"] == T0 + 3 * DAY


def test_7d_sonnet_rejection_benches_only_sonnet() -> None:
    r = two_accounts()
    answer(r, "a", 429, [(P + "7d_sonnet-status", "rejected"), (P + "7d_sonnet-reset", str(int(T0 + 2 * DAY))),
                         (P + "status", "rejected")], SONNET, T0)
    assert r.select(req("s", SONNET), T0 + 1).account == "b"
    assert r.select(req("o", OPUS), T0 + 1).account == "a"


def test_a_stale_family_reading_is_rechecked_on_a_bounded_schedule() -> None:
    r = two_accounts()
    # An Opus answer on a says 7d_oi is at 99 %: Opus stays off a ...
    r.observe("a", 200, limits(T0, u7=0.10, extra={P + "7d_oi-utilization": "0.99",
                                                     P + "7d_oi-reset": str(int(T0 + 5 * DAY))}), T0)
    assert r.select(req("o1", OPUS), T0 + 1).account == "b"
    # ... Sonnet answers keep refreshing 5h/7d but never that reading ...
    prove(r, "a", T0 + FAMILY_RECHECK_S / 2, u7=0.10)
    assert r.select(req("o2", OPUS), T0 + FAMILY_RECHECK_S / 2).account == "b"
    assert r.next_change_at(T0 + FAMILY_RECHECK_S / 2) == pytest.approx(T0 + FAMILY_RECHECK_S)
    # ... and once it is an hour old one Opus request re-checks it.
    assert r.select(req("o3", OPUS), T0 + FAMILY_RECHECK_S).account == "a"


@pytest.mark.parametrize("reset", [None, "1e308", "soon", "-5", "nan", "inf"])
def test_a_rejected_window_with_no_usable_reset_ends_one_window_length_after_it_was_seen(reset) -> None:
    r = two_accounts()
    headers = [(P + "5h-status", "rejected"), (P + "5h-utilization", "1.0"), (P + "status", "rejected")]
    if reset is not None:
        headers.append((P + "5h-reset", reset))
    answer(r, "a", 429, headers, OPUS, T0)
    for now in (T0 + 60, T0 + 4 * HOUR):
        assert r.select(req(f"n{now}", OPUS), now).account == "b"
        line = {a["name"]: a for a in r.capacity(now)["accounts"]}["a"]
        # /capacity agrees with routing: locked, with the time until it ends.
        assert line["status"] == "benched" and line["benchSec"] == pytest.approx(T0 + 5 * HOUR - now, abs=2)
    # It survives a restart, and still ends on time.
    saved = r.export_persistent(T0 + 4 * HOUR)
    restored = two_accounts()
    restored.restore_persistent(saved, T0 + 4 * HOUR)
    assert restored.select(req("r", OPUS), T0 + 4 * HOUR).account == "b"
    for each in (r, restored):
        assert each.select(req("late", OPUS), T0 + 5 * HOUR + 1).account == "a"
        assert {a["name"]: a for a in each.capacity(T0 + 5 * HOUR + 1)["accounts"]}["a"]["status"] == "ok"


def test_a_weekly_rejection_with_no_reset_ends_a_week_after_it_was_seen() -> None:
    r = two_accounts()
    answer(r, "a", 429, [(P + "7d-status", "rejected"), (P + "status", "rejected")], OPUS, T0)
    assert r.select(req("x", OPUS), T0 + 6 * DAY).account == "b"
    assert r.select(req("y", OPUS), T0 + 7 * DAY + 1).account == "a"


def test_saved_windows_without_seen_count_from_the_restart() -> None:
    r = two_accounts()
    r.restore_persistent({"version": persistence.FORMAT_VERSION, "accounts": {
        "a": {"windows": {"5h": {"status": "rejected", "utilization": 1.0, "reset": None}}}}}, T0)
    assert r.select(req("x", OPUS), T0 + 1).account == "b"
    assert r.select(req("y", OPUS), T0 + 5 * HOUR + 1).account == "a"


def test_capacity_calls_an_account_at_the_switch_threshold_benched_until_its_reset() -> None:
    r = two_accounts()
    r.observe("a", 200, limits(T0, u5=0.99, reset5_in=2 * HOUR, u7=0.10), T0)
    assert r.select(req("x", OPUS), T0 + 1).account == "b"
    line = {a["name"]: a for a in r.capacity(T0 + 1)["accounts"]}["a"]
    assert line["status"] == "benched" and line["benchSec"] == pytest.approx(2 * HOUR - 1, abs=2)
