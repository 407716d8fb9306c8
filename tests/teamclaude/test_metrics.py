"""teamclaude.metrics: the pure decisions, and the registry of a real Service."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from routing.lifecycle import Failed, Upstream
from routing.policy import API_KEY_LAST_RESORT, BLOCKED, BOUND, CLIENT_PIN, DETOUR, FAR_OVER_LINE, NEW_SESSION, WINDOW_LAPSED
from routing.ratelimits import parse_ratelimit_headers
from routing.types import Decision, RequestInfo
from routing.usage import Usage
from teamclaude.attempt import Attempt
from teamclaude.metrics import (
    MAX_LABEL_CHARS,
    RESET_CLOCK_SKEW_S,
    BoundedLabel,
    WeekReading,
    client_label,
    failover_reason,
    forfeited_at_reset,
    is_cache_breaking,
    shared_state_gauges,
    state_gauges,
    status_label,
    token_counts,
    weekly_reading,
)
from teamclaude.service import Service, load_config

NOW = 1_800_000_000.0
WEEK = 7 * 86400.0


def service_with(tmp_path: Path, names: list[str], clock=lambda: NOW) -> Service:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "config.yaml"
    config.write_text(f"state_file: {tmp_path / 'state.json'}\n")
    accounts = [{"name": n, "type": "oauth", "access_token": f"sk-ant-oat01-{n}-secret",
                 "refresh_token": f"sk-ant-ort01-{n}-secret", "expires_at": 4_102_444_800_000} for n in names]
    (tmp_path / "accounts.yaml").write_text(yaml.safe_dump({"proxy_key": "tc-metrics-unit-key-0123456789abcdef",
                                                            "accounts": accounts}))
    (tmp_path / "accounts.yaml").chmod(0o600)
    return Service(load_config(config), clock=clock)


def scrape(service: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, headers = service.metrics.exposition()
    assert headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def headers(util_7d: float, reset_7d: float, util_5h: float = 0.1, reset_5h: float = NOW + 3600) -> list[tuple[str, str]]:
    prefix = "anthropic-ratelimit-unified-"
    return [(prefix + "7d-utilization", str(util_7d)), (prefix + "7d-reset", str(int(reset_7d))),
            (prefix + "7d-status", "allowed"), (prefix + "5h-utilization", str(util_5h)),
            (prefix + "5h-reset", str(int(reset_5h))), (prefix + "5h-status", "allowed")]


def attempt_for(model: str | None = "claude-sonnet-4-5", client: str | None = None) -> Attempt:
    return Attempt(RequestInfo("/v1/messages", model=model, session_id="s"), started=NOW, client=client)


# ----- pure parts -------------------------------------------------------------------------


def test_forfeit_counts_the_unused_share_once_the_weekly_window_has_reset():
    before = WeekReading(utilization=0.3, reset=NOW)
    after = WeekReading(utilization=0.01, reset=NOW + WEEK)
    assert forfeited_at_reset(before, after, NOW + 5) == pytest.approx(0.7)


@pytest.mark.parametrize(("previous", "current", "now"), [
    (None, WeekReading(0.2, NOW + WEEK), NOW),  # a first reading: nothing to compare
    (WeekReading(0.2, NOW), WeekReading(0.3, NOW), NOW - 10),  # same week
    (WeekReading(0.2, NOW), WeekReading(0.3, NOW - 3600), NOW + 10),  # an older answer
    (WeekReading(0.2, NOW), WeekReading(0.3, NOW + WEEK), NOW - RESET_CLOCK_SKEW_S - 1),  # not passed yet
])
def test_no_forfeit_without_a_reset_in_between(previous, current, now):
    assert forfeited_at_reset(previous, current, now) is None


def test_forfeit_allows_for_clock_skew_and_stays_within_zero_and_one():
    assert forfeited_at_reset(WeekReading(0.25, NOW), WeekReading(0.0, NOW + WEEK), NOW - 60) == pytest.approx(0.75)
    assert forfeited_at_reset(WeekReading(1.4, NOW), WeekReading(0.0, NOW + WEEK), NOW) == 0.0
    assert forfeited_at_reset(WeekReading(0.0, NOW), WeekReading(0.0, NOW + 3 * WEEK), NOW + 2 * WEEK) == 1.0


def test_weekly_reading_needs_both_utilization_and_reset():
    assert weekly_reading(parse_ratelimit_headers(headers(0.42, NOW + 100))) == WeekReading(0.42, float(int(NOW + 100)))
    only_util = [("anthropic-ratelimit-unified-7d-utilization", "0.4")]
    assert weekly_reading(parse_ratelimit_headers(only_util)) is None
    assert weekly_reading(parse_ratelimit_headers([])) is None


def test_label_values():
    assert client_label(None) == "proxy-key" and client_label("ci") == "ci"
    assert status_label(429) == "429" and status_label(None) == "none"
    assert token_counts(Usage(10, 20, 3, 4, 5)) == {"input": 10, "output": 20, "cache_read": 5, "cache_creation": 7}


def test_cache_breaking_reasons_are_lasting_moves_only():
    assert is_cache_breaking(BLOCKED) and is_cache_breaking(FAR_OVER_LINE)
    for reason in (BOUND, NEW_SESSION, WINDOW_LAPSED, DETOUR, CLIENT_PIN, API_KEY_LAST_RESORT, None):
        assert not is_cache_breaking(reason)


def test_failover_reason_is_the_verdict_kind_or_no_token():
    verdict = SimpleNamespace(kind="window")
    assert failover_reason(Upstream(429, parse_ratelimit_headers([]), NOW), verdict) == "window"
    assert failover_reason(Failed("refused", NOW), verdict) == "no-token"
    assert failover_reason(Failed("reset", NOW, connection=True), SimpleNamespace(kind="connection")) == "connection"


def test_bounded_label_keeps_the_first_values_and_folds_the_rest():
    label = BoundedLabel(limit=2)
    assert [label("a"), label("b"), label("c"), label("a"), label(None), label("")] == ["a", "b", "other", "a", "none", "none"]
    assert len(BoundedLabel()("m" * 1000)) == MAX_LABEL_CHARS


def test_state_gauges_from_a_snapshot():
    accounts = [
        {"name": "a", "windows": {"5h": {"utilization": 0.5, "reset": NOW + 60}, "7d": {"utilization": None, "reset": None}},
         "bench_until": NOW + 30, "needs_login": False, "disabled": False, "inflight": 2, "warm_sessions": 3},
        {"name": "b", "windows": {}, "bench_until": None, "disabled": True, "inflight": 0, "warm_sessions": 0},
    ]
    gauges = {g.name: g for g in state_gauges(accounts, {"b"}, {"count": 1, "oldest_wait_s": 4.5}, NOW)}
    assert gauges["teamclaude_account_window_utilization_ratio"].samples == [(("a", "5h"), 0.5)]
    assert gauges["teamclaude_account_window_reset_timestamp_seconds"].samples == [(("a", "5h"), NOW + 60)]
    assert gauges["teamclaude_account_benched"].samples == [(("a",), 1.0), (("b",), 0.0)]
    assert gauges["teamclaude_account_bench_remaining_seconds"].samples == [(("a",), 30.0), (("b",), 0.0)]
    assert gauges["teamclaude_account_needs_login"].samples == [(("a",), 0.0), (("b",), 1.0)]
    assert gauges["teamclaude_account_disabled"].samples == [(("a",), 0.0), (("b",), 1.0)]
    assert gauges["teamclaude_account_inflight_requests"].samples == [(("a",), 2.0), (("b",), 0.0)]
    assert gauges["teamclaude_account_warm_conversations"].samples == [(("a",), 3.0), (("b",), 0.0)]
    assert gauges["teamclaude_held_requests"].samples == [((), 1.0)]
    assert gauges["teamclaude_oldest_hold_seconds"].samples == [((), 4.5)]


def test_shared_state_gauges_for_any_object_with_the_two_attributes():
    assert shared_state_gauges(None, NOW) == []
    healthy = {g.name: g.samples for g in shared_state_gauges(SimpleNamespace(healthy=True, degraded_since=None), NOW)}
    assert healthy == {"teamclaude_shared_state_up": [((), 1.0)], "teamclaude_shared_state_degraded_seconds": [((), 0.0)]}
    down = {g.name: g.samples for g in shared_state_gauges(SimpleNamespace(healthy=False, degraded_since=NOW - 12), NOW)}
    assert down == {"teamclaude_shared_state_up": [((), 0.0)], "teamclaude_shared_state_degraded_seconds": [((), 12.0)]}


# ----- the registry of a real Service -------------------------------------------------------


def test_each_service_has_its_own_registry(tmp_path):
    first, second = service_with(tmp_path / "one", ["a"]), service_with(tmp_path / "two", ["a"])
    first.metrics.finished(attempt_for(), "a", 200, None)
    assert value(scrape(first), "teamclaude_requests_total", account="a", model="claude-sonnet-4-5",
                 client="proxy-key", status="200") == 1.0
    assert not [k for k in scrape(second) if k[0] == "teamclaude_requests_total"]
    assert REGISTRY.get_sample_value("teamclaude_requests_total", {"account": "a", "model": "claude-sonnet-4-5",
                                                                   "client": "proxy-key", "status": "200"}) is None


def test_finished_counts_requests_tokens_and_cost_by_client(tmp_path):
    service = service_with(tmp_path, ["a"])
    usage = Usage(input_tokens=100, output_tokens=50, cache_write_5m=10, cache_write_1h=5, cache_read=1000,
                  model="claude-sonnet-4-5-20250929")
    service.metrics.finished(attempt_for(client="ci"), "a", 200, usage)
    service.metrics.finished(attempt_for(), None, 503, None)
    samples = scrape(service)
    labels = {"account": "a", "model": "claude-sonnet-4-5-20250929", "client": "ci"}
    assert value(samples, "teamclaude_requests_total", **labels, status="200") == 1.0
    assert value(samples, "teamclaude_requests_total", account="none", model="claude-sonnet-4-5",
                 client="proxy-key", status="503") == 1.0
    for kind, count in (("input", 100), ("output", 50), ("cache_creation", 15), ("cache_read", 1000)):
        assert value(samples, "teamclaude_tokens_total", **labels, type=kind) == count
    assert value(samples, "teamclaude_cost_usd_total", **labels) == pytest.approx(service.router.prices.cost(usage))


def test_failovers_are_counted_per_account_left(tmp_path):
    service = service_with(tmp_path, ["a", "b"])
    attempt = attempt_for()
    attempt.verdict = SimpleNamespace(kind="window")
    attempt.history.append({"account": "a", "status": 429, "reason": "7d window rejected"})
    service.metrics.advanced(attempt, "a", 0, Upstream(429, parse_ratelimit_headers([]), NOW))
    attempt.history.append({"account": "b", "status": None, "reason": "no usable token"})
    service.metrics.advanced(attempt, "b", 1, Failed("refused", NOW))
    service.metrics.advanced(attempt, "a", 2, Upstream(200, parse_ratelimit_headers([]), NOW))  # nothing new
    samples = scrape(service)
    assert value(samples, "teamclaude_failovers_total", account="a", status="429", reason="window") == 1.0
    assert value(samples, "teamclaude_failovers_total", account="b", status="none", reason="no-token") == 1.0


def test_cache_breaking_moves_count_a_new_account_once(tmp_path):
    service = service_with(tmp_path, ["a", "b"])
    attempt = attempt_for()
    moved = Decision("b", BLOCKED, "", "s", 1)
    service.metrics.sending(attempt, Decision("a", NEW_SESSION, "", "s", 0))
    service.metrics.sending(attempt, moved)
    attempt.rewritten_for = "b"
    service.metrics.sending(attempt, moved)  # re-sent after a token refresh
    samples = scrape(service)
    assert value(samples, "teamclaude_cache_breaking_moves_total", account="b", reason=BLOCKED) == 1.0
    assert not [k for k in samples if k[0] == "teamclaude_cache_breaking_moves_total" and ("reason", NEW_SESSION) in k[1]]


def test_weekly_resets_and_forfeits_from_consecutive_answers(tmp_path):
    now = [NOW]
    service = service_with(tmp_path, ["a"], clock=lambda: now[0])
    metrics = service.metrics
    metrics.observed("a", parse_ratelimit_headers(headers(0.2, NOW + 100)), NOW)
    metrics.observed("a", parse_ratelimit_headers(headers(0.35, NOW + 100)), NOW + 50)
    metrics.observed("a", parse_ratelimit_headers(headers(0.01, NOW + 100 + WEEK)), NOW + 200)
    metrics.observed("a", parse_ratelimit_headers(headers(0.02, NOW + 100 + WEEK)), NOW + 300)
    metrics.observed("a", parse_ratelimit_headers([]), NOW + 400)  # no headers: no reading
    samples = scrape(service)
    assert value(samples, "teamclaude_weekly_resets_total", account="a") == 1.0
    assert value(samples, "teamclaude_weekly_quota_forfeited_ratio_total", account="a") == pytest.approx(0.65)


def test_holds_and_refreshes(tmp_path):
    service = service_with(tmp_path, ["a"])
    service.metrics.held(3.0)
    service.metrics.held(0.2)
    service.credentials.on_refresh("a", "refreshed")  # wired by the service
    samples = scrape(service)
    assert value(samples, "teamclaude_hold_duration_seconds_count") == 2.0
    assert value(samples, "teamclaude_hold_duration_seconds_sum") == pytest.approx(3.2)
    assert value(samples, "teamclaude_hold_duration_seconds_bucket", le="0.5") == 1.0
    assert value(samples, "teamclaude_token_refreshes_total", account="a", outcome="refreshed") == 1.0


def test_gauges_follow_the_router(tmp_path):
    service = service_with(tmp_path, ["a", "b"])
    service.router.observe("a", 200, parse_ratelimit_headers(headers(0.42, NOW + 5000, 0.17, NOW + 600)), NOW)
    service.router.bench("b", NOW + 90, "retry-after 90s", NOW)
    service.credentials.needs_login.add("b")
    samples = scrape(service)
    assert value(samples, "teamclaude_account_window_utilization_ratio", account="a", window="7d") == 0.42
    assert value(samples, "teamclaude_account_window_utilization_ratio", account="a", window="5h") == 0.17
    assert value(samples, "teamclaude_account_window_reset_timestamp_seconds", account="a", window="7d") == int(NOW + 5000)
    assert value(samples, "teamclaude_account_benched", account="b") == 1.0
    assert value(samples, "teamclaude_account_bench_remaining_seconds", account="b") == 90.0
    assert value(samples, "teamclaude_account_needs_login", account="b") == 1.0
    assert value(samples, "teamclaude_account_needs_login", account="a") == 0.0
    assert value(samples, "teamclaude_held_requests") == 0.0
    assert value(samples, "teamclaude_shared_state_up") is None  # no shared state configured


def test_shared_state_health_is_read_from_service_shared(tmp_path):
    service = service_with(tmp_path, ["a"])
    service.shared = SimpleNamespace(healthy=False, degraded_since=NOW - 30)  # a stand-in
    samples = scrape(service)
    assert value(samples, "teamclaude_shared_state_up") == 0.0
    assert value(samples, "teamclaude_shared_state_degraded_seconds") == 30.0


def test_no_secret_in_the_exposition(tmp_path):
    service = service_with(tmp_path, ["a"])
    service.metrics.finished(attempt_for(), "a", 200, Usage(1, 1, model="claude-sonnet-4-5"))
    text = service.metrics.exposition()[0].decode()
    assert "secret" not in text and service.proxy_key not in text
