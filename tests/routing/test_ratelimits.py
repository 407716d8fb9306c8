from hypothesis import given, strategies as st

from routing.ratelimits import (
    parse_epoch,
    parse_ratelimit_headers,
    window_applies_to_model,
)

# A header set as a Max subscription returns it (names lower-cased by HTTP/2).
MAX_HEADERS = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("anthropic-ratelimit-unified-status", "allowed_warning"),
    ("anthropic-ratelimit-unified-5h-status", "allowed"),
    ("anthropic-ratelimit-unified-5h-reset", "1795003600"),
    ("anthropic-ratelimit-unified-5h-utilization", "0.31"),
    ("anthropic-ratelimit-unified-7d-status", "allowed_warning"),
    ("anthropic-ratelimit-unified-7d-reset", "1795300000"),
    ("anthropic-ratelimit-unified-7d-utilization", "0.82"),
    ("anthropic-ratelimit-unified-7d_sonnet-status", "rejected"),
    ("anthropic-ratelimit-unified-7d_sonnet-utilization", "1.02"),
    ("anthropic-ratelimit-unified-7d_sonnet-reset", "1795300000"),
    ("anthropic-ratelimit-unified-7d_oi-status", "allowed"),
    ("anthropic-ratelimit-unified-7d_oi-utilization", "0.4"),
    ("anthropic-ratelimit-unified-7d_oi-reset", "1795300000"),
    ("anthropic-ratelimit-unified-representative-claim", "seven_day"),
    ("anthropic-ratelimit-unified-reset", "1795300000"),
    ("anthropic-ratelimit-unified-fallback-percentage", "0.5"),
    ("anthropic-ratelimit-unified-overage-status", "rejected"),
    ("anthropic-ratelimit-unified-overage-disabled-reason", "org_level_disabled"),
    ("Anthropic-Ratelimit-Unified-Brand-New-Thing", "x"),
]

API_KEY_HEADERS = [
    ("anthropic-ratelimit-requests-limit", "4000"),
    ("anthropic-ratelimit-requests-remaining", "3999"),
    ("anthropic-ratelimit-requests-reset", "2026-11-25T21:00:00Z"),
    ("anthropic-ratelimit-tokens-limit", "400000"),
    ("anthropic-ratelimit-tokens-remaining", "398000"),
    ("anthropic-ratelimit-tokens-reset", "2026-11-25T21:00:01Z"),
    ("anthropic-ratelimit-input-tokens-limit", "200000"),
    ("retry-after", "17"),
]


def test_unified_windows_including_model_scoped():
    limits = parse_ratelimit_headers(MAX_HEADERS)
    assert limits.windows["5h"].utilization == 0.31
    assert limits.windows["5h"].reset == 1795003600
    assert limits.windows["7d"].status == "allowed_warning"
    assert limits.windows["7d_sonnet"].rejected and limits.windows["7d_sonnet"].utilization == 1.02
    assert limits.windows["7d_oi"].status == "allowed"
    assert limits.unified_status == "allowed_warning"
    assert limits.representative_claim == "seven_day"
    assert limits.unified["overage-disabled-reason"] == "org_level_disabled"
    assert limits.rejected_windows() == ("7d_sonnet",)
    assert limits.unknown == ("anthropic-ratelimit-unified-brand-new-thing",)
    assert "content-type" not in limits.raw and len(limits.raw) == 19


def test_api_key_buckets_and_retry_after():
    limits = parse_ratelimit_headers(API_KEY_HEADERS)
    assert limits.windows == {}
    assert limits.api["requests"].remaining == 3999
    assert limits.api["tokens"].reset == parse_epoch("2026-11-25T21:00:01+00:00")
    assert limits.api["input-tokens"].limit == 200000
    assert limits.retry_after == 17
    assert limits.unknown == ()


def test_bare_response_is_empty():
    limits = parse_ratelimit_headers([("content-type", "application/json")])
    assert limits.empty and limits.retry_after is None


def test_malformed_values_are_unknown_not_errors():
    limits = parse_ratelimit_headers([
        ("anthropic-ratelimit-unified-5h-utilization", "nan"),
        ("anthropic-ratelimit-unified-5h-reset", "soon"),
        ("anthropic-ratelimit-unified-5h-status", "weird"),
        ("anthropic-ratelimit-unified-7d-utilization", "-1"),
        ("anthropic-ratelimit-unified-7d-reset", "1e300"),
        ("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT"),
    ])
    five = limits.windows["5h"]
    assert (five.utilization, five.reset, five.status) == (None, None, None)
    assert limits.windows["7d"].utilization is None and limits.windows["7d"].reset is None
    assert limits.retry_after is None


def test_new_window_name_is_kept_and_reported():
    limits = parse_ratelimit_headers([("anthropic-ratelimit-unified-7d_haiku-status", "rejected")])
    assert limits.windows["7d_haiku"].rejected
    assert limits.unknown == ("anthropic-ratelimit-unified-7d_haiku-status",)


def test_which_windows_bind_which_models():
    assert window_applies_to_model("5h", "claude-haiku-4-5")
    assert window_applies_to_model("7d_sonnet", "claude-sonnet-4-5")
    assert not window_applies_to_model("7d_sonnet", "claude-opus-4-5")
    assert window_applies_to_model("7d_oi", "claude-opus-4-5-20251101")
    assert not window_applies_to_model("7d_oi", "claude-sonnet-4-5")
    assert window_applies_to_model("7d_future", None)


@given(st.lists(st.tuples(
    st.one_of(st.sampled_from([n for n, _ in MAX_HEADERS + API_KEY_HEADERS]), st.text(max_size=60)),
    st.text(max_size=40),
), max_size=30))
def test_never_raises_on_hostile_headers(pairs):
    limits = parse_ratelimit_headers(pairs)
    for window in limits.windows.values():
        assert window.utilization is None or window.utilization >= 0
        assert window.reset is None or 0 <= window.reset < 1e11


def test_repeated_names_parse_the_same_and_hostile_names_do_not_grow_the_name_cache():
    from routing import ratelimits

    first = parse_ratelimit_headers(MAX_HEADERS + API_KEY_HEADERS)
    assert parse_ratelimit_headers(MAX_HEADERS + API_KEY_HEADERS) == first
    parse_ratelimit_headers([(f"anthropic-ratelimit-unified-x{i}-status", "allowed") for i in range(3000)])
    assert len(ratelimits._roles) <= ratelimits._ROLE_CACHE_MAX
    assert parse_ratelimit_headers(MAX_HEADERS + API_KEY_HEADERS) == first


def test_numbers_are_finite_and_clamped() -> None:
    from routing.ratelimits import MAX_RETRY_AFTER_S, MAX_UTILIZATION, parse_ratelimit_headers

    p = "anthropic-ratelimit-unified-"
    parsed = parse_ratelimit_headers([
        (p + "5h-utilization", "1" + "0" * 400), (p + "7d-utilization", "1e300"),
        (p + "5h-reset", "1e308"), (p + "7d-reset", "nan"), ("retry-after", "1e300"),
        ("anthropic-ratelimit-tokens-remaining", "9" * 5000), ("anthropic-ratelimit-tokens-limit", "-3"),
        ("anthropic-ratelimit-requests-reset", "0001-01-01T00:00:00Z"),
    ])
    assert parsed.windows["5h"].utilization is None  # "1000…0" overflows float → inf → dropped
    assert parsed.windows["7d"].utilization == MAX_UTILIZATION
    assert parsed.windows["5h"].reset is None and parsed.windows["7d"].reset is None
    assert parsed.retry_after == MAX_RETRY_AFTER_S
    assert parsed.api["tokens"].remaining is None and parsed.api["tokens"].limit is None
    assert parsed.api["requests"].reset is None
