"""AccountState: windows from headers, pace, ramp, caps, benches."""

from __future__ import annotations

import pytest

from routing.account_state import AccountState
from routing.config import RoutingConfig
from routing.ratelimits import parse_ratelimit_headers
from tests.routing.helpers import DAY, HOUR, T0, limits, oauth

CONFIG = RoutingConfig()


def state() -> AccountState:
    return AccountState(oauth("a"))


def test_observe_stores_windows_scalars_raw_unknown_and_proves_on_2xx() -> None:
    s = state()
    lim = limits(T0, extra={
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
        "anthropic-ratelimit-unified-7d_sonnet-utilization": "0.3",
        "anthropic-ratelimit-unified-7d_sonnet-reset": str(int(T0 + DAY)),
        "anthropic-ratelimit-unified-brand-new-thing": "x",
    })
    s.observe(429, lim, T0)
    assert not s.proven
    s.observe(200, lim, T0)
    assert s.proven
    assert set(s.windows) == {"5h", "7d", "7d_sonnet"}
    assert s.unified["representative-claim"] == "five_hour"
    assert s.raw["anthropic-ratelimit-unified-7d_sonnet-utilization"] == "0.3"
    assert s.new_headers == ["anthropic-ratelimit-unified-brand-new-thing"]


def test_a_window_whose_reset_passed_is_cleared() -> None:
    s = state()
    s.observe(200, limits(T0, reset5_in=HOUR), T0)
    assert s.utilization("5h", T0 + HOUR - 1) == pytest.approx(0.1)
    assert s.utilization("5h", T0 + HOUR) is None
    assert "5h" not in s.windows


def test_observe_drops_windows_that_arrive_already_reset() -> None:
    s = state()
    s.observe(200, limits(T0, reset5_in=-10), T0)
    assert "5h" not in s.windows and "7d" in s.windows


def test_pace_line_gap_and_score() -> None:
    s = state()
    s.observe(200, limits(T0, u7=0.3, reset7_in=3.5 * DAY), T0)
    assert s.facts(CONFIG, T0).pace_line == pytest.approx(0.5, abs=1e-4)
    assert s.facts(CONFIG, T0).pace_gap == pytest.approx(0.2, abs=1e-4)
    assert s.facts(CONFIG, T0).score == pytest.approx(0.2, abs=1e-4)  # 84 h left: no ramp
    assert not s.facts(CONFIG, T0).far_over_line
    s.observe(200, limits(T0, u7=0.61, reset7_in=3.5 * DAY), T0)
    assert s.facts(CONFIG, T0).far_over_line


@pytest.mark.parametrize(
    ("hours_left", "weight"),
    [(6, 100), (8, 100), (12, 8), (20, 4), (30, 2), (60, 1), (80, 0)],
)
def test_ramp_uses_the_first_tier_covering_the_hours_left(hours_left: float, weight: float) -> None:
    s = state()
    s.observe(200, limits(T0, u7=0.6, reset7_in=hours_left * HOUR), T0)
    assert s.facts(CONFIG, T0).ramp_boost == pytest.approx(0.4 * weight, abs=1e-3)


def test_unknown_week_has_no_score() -> None:
    s = state()
    s.observe(200, limits(T0, u7=None), T0)
    assert s.facts(CONFIG, T0).score is None and s.facts(CONFIG, T0).pace_line is None


def test_inflight_cap_probe_gate_and_no_warn_band() -> None:
    s = state()
    assert s.facts(CONFIG, T0).inflight_cap == 1
    assert s.facts(RoutingConfig(probe_gate=False), T0).inflight_cap == 5
    s.observe(200, limits(T0, u5=0.5), T0)
    assert s.facts(CONFIG, T0).inflight_cap == 5
    # The 5h warn band no longer caps in-flight requests at 1 (issue 13: it only made
    # overlapping requests of warm conversations move).
    s.observe(200, limits(T0, u5=0.85), T0)
    assert s.facts(CONFIG, T0).inflight_cap == 5


def test_blocking_window_threshold_and_model_scope() -> None:
    s = state()
    s.observe(200, limits(T0, u7=0.97), T0)
    assert s.blocking_window("claude-opus-4-5", T0, 0.98) is None
    s.observe(200, limits(T0, u7=0.98), T0)
    assert s.blocking_window("claude-opus-4-5", T0, 0.98) == "7d"
    t = state()
    t.observe(200, parse_ratelimit_headers([
        ("anthropic-ratelimit-unified-7d_sonnet-status", "rejected"),
        ("anthropic-ratelimit-unified-7d_sonnet-reset", str(int(T0 + DAY))),
    ]), T0)
    assert t.blocking_window("claude-sonnet-4-5", T0, 0.98) == "7d_sonnet"
    assert t.blocking_window("claude-opus-4-5", T0, 0.98) is None
    assert t.blocking_window("claude-sonnet-4-5", T0 + DAY, 0.98) is None


def test_bench_never_ends_before_the_reset_of_the_window_named_in_reason() -> None:
    s = state()
    s.observe(429, limits(T0, u5=1.0, s5="rejected", reset5_in=2 * HOUR), T0)
    s.set_bench(T0 + 60, "5h window rejected", None, T0)
    assert s.bench is not None and s.bench.until == pytest.approx(T0 + 2 * HOUR, abs=1)
    assert s.bench_for(None, T0 + HOUR) is not None
    assert s.bench_for(None, T0 + 2 * HOUR + 1) is None


def test_a_shorter_bench_does_not_cut_a_longer_one() -> None:
    s = state()
    s.set_bench(T0 + 600, "retry-after 600s", None, T0)
    s.set_bench(T0 + 60, "retry-after 60s", None, T0)
    assert s.bench is not None and s.bench.until == T0 + 600


def test_later_headers_extend_a_bench_to_the_window_reset() -> None:
    s = state()
    s.observe(429, limits(T0, u5=1.0, s5="rejected", reset5_in=HOUR), T0)
    s.set_bench(T0 + HOUR, "5h rejected", None, T0)
    s.observe(429, limits(T0 + 10, u5=1.0, s5="rejected", reset5_in=3 * HOUR), T0 + 10)
    assert s.bench is not None and s.bench.until == pytest.approx(T0 + 10 + 3 * HOUR, abs=1)


def test_family_bench() -> None:
    s = state()
    s.set_bench(T0 + 60, "7d_oi rejected", "opus", T0)
    assert s.bench_for("opus", T0) is not None
    assert s.bench_for("sonnet", T0) is None
    assert s.bench_for(None, T0) is None
    assert s.bench_for("opus", T0 + 61) is None


def test_status() -> None:
    s = state()
    assert s.status(T0) == "unknown"
    s.observe(200, limits(T0), T0)
    assert s.status(T0) == "ok"
    s.set_bench(T0 + 5, "retry-after 5s", None, T0)
    assert s.status(T0) == "benched"
    s.needs_login = True
    assert s.status(T0) == "needs-login"


def test_last_ramp_tier_drains_the_account() -> None:
    s = state()
    s.observe(200, limits(T0, u5=0.95, u7=0.985, reset7_in=7 * HOUR), T0)
    facts = s.facts(CONFIG, T0)
    assert facts.draining and facts.under_rail and facts.inflight_cap == 5
    assert s.blocking_window("claude-opus-4-5", T0, None) is None
    assert s.blocking_window("claude-opus-4-5", T0, CONFIG.switch_threshold) == "7d"
    s.observe(200, limits(T0, u5=0.95, u7=0.985, reset7_in=9 * HOUR), T0)
    facts = s.facts(CONFIG, T0)
    assert not facts.draining and not facts.under_rail and facts.inflight_cap == 5


def test_bench_naming_several_windows_lasts_until_the_latest_reset() -> None:
    s = state()
    s.observe(429, limits(T0, u5=1.0, s5="rejected", reset5_in=HOUR,
                          u7=1.0, s7="rejected", reset7_in=2 * DAY), T0)
    s.set_bench(T0 + 60, "5h/7d window rejected", None, T0)
    assert s.bench is not None and s.bench.until == pytest.approx(T0 + 2 * DAY, abs=1)
    assert s.bench.window == "7d"


def test_a_reset_beyond_the_window_length_is_not_believed() -> None:
    s = state()
    s.observe(429, limits(T0, u5=1.0, s5="rejected", reset5_in=400 * DAY), T0)
    s.set_bench(T0 + 60, "5h window rejected", None, T0)
    assert s.bench is not None and s.bench.until == pytest.approx(T0 + 5 * HOUR)


def test_a_far_future_reset_is_clamped_so_a_rejection_cannot_stick_forever() -> None:
    s = state()
    s.observe(429, limits(T0, u5=1.0, s5="rejected", reset5_in=900 * DAY), T0)
    assert s.windows["5h"].reset == pytest.approx(T0 + 5 * HOUR)
    assert s.blocking_window("claude-opus-4-5", T0 + 5 * HOUR + 1, 0.98) is None
