from hypothesis import given, strategies as st

from routing.failures import Streaks, classify
from routing.ratelimits import parse_ratelimit_headers

NOW = 1_800_000_000.0
LADDER = (60.0, 240.0, 900.0)


def run(status, headers=(), account="a", oauth=True, model="claude-opus-4-5", streaks=None, refreshed=False):
    return classify(status, parse_ratelimit_headers(headers), account=account, oauth=oauth, model=model,
                    now=NOW, ladder=LADDER, streaks=streaks or Streaks(), refreshed_this_request=refreshed)


def rejected(window, reset, retry_after=None):
    headers = [
        (f"anthropic-ratelimit-unified-{window}-status", "rejected"),
        (f"anthropic-ratelimit-unified-{window}-reset", str(int(reset))),
        ("anthropic-ratelimit-unified-status", "rejected"),
    ]
    if retry_after is not None:
        headers.append(("retry-after", str(retry_after)))
    return headers


def test_window_rejected_benches_until_its_reset():
    verdict = run(429, rejected("5h", NOW + 3600))
    assert verdict.failover and verdict.bench_until == NOW + 3600 and verdict.bench_family is None
    assert "5h" in verdict.reason


def test_bench_never_ends_before_the_reset_even_with_a_short_retry_after():
    verdict = run(429, rejected("7d", NOW + 86400, retry_after=5))
    assert verdict.bench_until == NOW + 86400


def test_model_scoped_window_benches_only_that_family():
    verdict = run(429, rejected("7d_sonnet", NOW + 7200), model="claude-sonnet-4-5")
    assert verdict.bench_family == "sonnet" and verdict.bench_until == NOW + 7200


def test_retry_after_with_windows_allowed():
    headers = [("anthropic-ratelimit-unified-5h-status", "allowed"), ("retry-after", "30")]
    verdict = run(429, headers)
    assert verdict.kind == "retry-after" and verdict.bench_until == NOW + 30


def test_bare_429_escalates_along_the_ladder_and_success_resets():
    streaks = Streaks()
    first = run(429, streaks=streaks)
    assert first.failover and first.bench_until is None
    assert run(429, streaks=streaks).bench_until == NOW + 60
    assert run(429, streaks=streaks).bench_until == NOW + 240
    assert run(429, streaks=streaks).bench_until == NOW + 900
    assert run(429, streaks=streaks).bench_until == NOW + 900
    assert run(200, streaks=streaks).ok
    assert run(429, streaks=streaks).bench_until is None


def test_401_refreshes_once_then_needs_login():
    assert run(401).refresh_and_retry
    second = run(401, refreshed=True)
    assert second.needs_login and second.failover
    assert run(401, oauth=False).needs_login


def test_a_second_401_from_the_clients_own_retry_needs_login_too():
    streaks = Streaks()
    assert run(401, streaks=streaks).refresh_and_retry
    assert run(401, streaks=streaks).needs_login
    assert run(200, streaks=streaks).ok
    assert run(401, streaks=streaks).refresh_and_retry


def test_retry_after_429_does_not_count_as_bare():
    streaks = Streaks()
    run(429, [("retry-after", "5")], streaks=streaks)
    assert run(429, streaks=streaks).bench_until is None


def test_403_excluded_then_needs_login_when_repeated():
    streaks = Streaks()
    first = run(403, streaks=streaks)
    assert first.failover and not first.needs_login and first.bench_until is None
    assert run(403, streaks=streaks).needs_login


def test_overloaded_cools_down_30s_and_server_errors_briefly():
    verdict = run(529)
    assert verdict.bench_until == NOW + 30 and verdict.pass_through_if_alone
    assert run(503).bench_until == NOW + 10
    assert not run(400).failover


@given(st.lists(st.tuples(st.text(max_size=60), st.text(max_size=30)), max_size=10),
       st.sampled_from([429, 401, 403, 500, 529, 200]))
def test_never_raises_and_never_benches_into_the_past_or_past_a_week(headers, status):
    verdict = run(status, [("anthropic-ratelimit-unified-5h-status", "rejected"), *headers])
    assert verdict.bench_until is None or NOW <= verdict.bench_until <= NOW + 7 * 86400


def test_hostile_reset_is_capped_to_the_window_length():
    assert run(429, rejected("5h", NOW + 10 ** 9)).bench_until == NOW + 5 * 3600


def test_a_status_that_is_not_a_final_answer_fails_over():
    """Issue 12 (wire fuzz): an interim 1xx taken for the answer, or no three-digit status."""
    for status in (100, 101, 103, 199, 10**19):
        verdict = run(status)
        assert verdict.failover and not verdict.ok and verdict.bench_until is None, status
    assert run(200).ok and run(999).kind == "client-error"
