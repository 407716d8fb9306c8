"""Pool headers (teamclaude.pool_headers): the unified headers rebuilt from the pool's view."""

from __future__ import annotations

from teamclaude.pool_headers import apply_pool_headers, pool_header_values
from teamclaude.quota import PoolWindow

NOW = 1_795_000_000.0
U = "anthropic-ratelimit-unified-"

POOL = {
    "5h": PoolWindow("5h", 0.5667, NOW + 1800, 2, 2, 2),
    "7d": PoolWindow("7d", 0.1, NOW + 7200, 2, 2, 2),
    "7d_sonnet": PoolWindow("7d_sonnet", 1.0, NOW + 600, 0, 2, 2),
    "7d_oi": PoolWindow("7d_oi", None, None, 2, 2, 0),
}


def account_headers() -> dict[str, str]:
    return {
        "content-type": "application/json",
        U + "5h-utilization": "0.9", U + "5h-reset": str(int(NOW + 1800)), U + "5h-status": "allowed_warning",
        U + "7d-utilization": "0.1", U + "7d-reset": str(int(NOW + 7200)), U + "7d-status": "allowed",
        U + "status": "allowed_warning", U + "representative-claim": "five_hour", U + "reset": str(int(NOW + 1800)),
        U + "fallback-percentage": "0.5", U + "overage-status": "rejected",
    }


def test_headers_describe_the_pool_for_the_requests_model() -> None:
    values = dict(pool_header_values(POOL, "claude-opus-4-5"))
    assert values[U + "5h-utilization"] == "0.5667" and values[U + "5h-status"] == "allowed"
    assert values[U + "5h-reset"] == str(int(NOW + 1800))
    assert values[U + "7d_sonnet-status"] == "rejected"
    assert U + "7d_oi-utilization" not in values  # no account reported it
    # Opus is not bound by the Sonnet window: the fullest binding window is the claim.
    assert values[U + "status"] == "allowed" and values[U + "representative-claim"] == "five_hour"
    sonnet = dict(pool_header_values(POOL, "claude-sonnet-4-5"))
    assert sonnet[U + "status"] == "rejected" and sonnet[U + "representative-claim"] == "seven_day_sonnet"
    assert sonnet[U + "reset"] == str(int(NOW + 600))


def test_apply_replaces_quota_headers_keeps_the_rest_and_returns_the_accounts() -> None:
    headers = account_headers()
    own = apply_pool_headers(headers, POOL, "claude-opus-4-5")
    assert own[U + "5h-utilization"] == "0.9" and own[U + "status"] == "allowed_warning"
    assert U + "content-type" not in own and "content-type" not in own
    assert headers[U + "5h-utilization"] == "0.5667" and headers[U + "status"] == "allowed"
    assert headers[U + "fallback-percentage"] == "0.5" and headers[U + "overage-status"] == "rejected"
    assert headers["content-type"] == "application/json"


def test_answers_without_unified_headers_or_a_pool_without_readings_stay_as_they_are() -> None:
    plain = {"content-type": "application/json", "anthropic-ratelimit-requests-limit": "4000"}
    assert apply_pool_headers(plain, POOL, None) == {} and plain["anthropic-ratelimit-requests-limit"] == "4000"
    headers = account_headers()
    empty = {"5h": PoolWindow("5h", None, None, 1, 1, 0)}
    assert apply_pool_headers(headers, empty, None) == {} and headers == account_headers()
