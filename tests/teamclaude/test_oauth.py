from __future__ import annotations

import pytest

from teamclaude import oauth
from teamclaude.fakeupstream import FakeUpstream
from teamclaude.settings import Settings
from tests.e2e.scripted import ProgrammableUpstream

from .conftest import ALICE_ACCESS, ALICE_REFRESH


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oauth, "RETRY_DELAYS_S", (0.0, 0.0))


def test_refresh_rotates_the_pair(fake: FakeUpstream, settings: Settings) -> None:
    tokens = oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice", now=1000.0)
    assert tokens.access_token.startswith("sk-ant-oat01-") and tokens.access_token != ALICE_ACCESS
    assert tokens.refresh_token and tokens.refresh_token != ALICE_REFRESH
    assert tokens.expires_at == (1000 + 28800) * 1000
    assert tokens.email == "alice@example.com"
    assert "sk-ant" not in repr(tokens)
    assert [c.grant_type for c in fake.token_calls] == ["refresh_token"]


def test_used_refresh_token_needs_login_without_leaking(fake: FakeUpstream, settings: Settings) -> None:
    oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice")
    with pytest.raises(oauth.NeedsLogin) as info:
        oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice")
    message = str(info.value)
    assert message == (
        "account 'alice' needs a new login: run 'teamclaude login' "
        "(or 'teamclaude import' if it came from Claude Code)"
    )
    assert len(fake.token_calls) == 2  # invalid_grant is not retried


def test_5xx_is_retried_then_succeeds(fake: FakeUpstream, settings: Settings) -> None:
    fake.inject("alice", "503", count=2, path="/v1/oauth/token")
    tokens = oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice")
    assert tokens.refresh_token
    assert [c.status for c in fake.token_calls] == [503, 503, 200]


def test_5xx_gives_up_after_two_retries(fake: FakeUpstream, settings: Settings) -> None:
    fake.inject("alice", "500", count=5, path="/v1/oauth/token")
    with pytest.raises(oauth.OAuthError, match="HTTP 500.*tried 3 times") as info:
        oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice")
    assert not isinstance(info.value, oauth.NeedsLogin)
    assert len(fake.token_calls) == 3


def test_network_error_is_retried_and_reported(unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}/v1/oauth/token"
    with pytest.raises(oauth.OAuthError, match="cannot reach 127.0.0.1") as info:
        oauth.refresh(url, ALICE_REFRESH, account_name="alice")
    assert ALICE_REFRESH not in str(info.value)


def test_missing_refresh_token_in_answer_is_none(fake: FakeUpstream, settings: Settings) -> None:
    fake.omit_refresh_token_in_response = True
    tokens = oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice")
    assert tokens.refresh_token is None


def test_profile_lookup(fake: FakeUpstream, settings: Settings) -> None:
    profile = oauth.fetch_profile(settings.oauth_profile_url, ALICE_ACCESS)
    assert profile.email == "alice@example.com"
    assert profile.org == "Alice Org"
    assert profile.plan == "max"
    assert profile.id == fake.account("alice").uuid
    with pytest.raises(oauth.OAuthError, match="HTTP 401"):
        oauth.fetch_profile(settings.oauth_profile_url, "sk-ant-oat01-wrong")


def test_plan_falls_back_to_organization_type() -> None:
    assert oauth.plan_name({}, {"organization_type": "claude_team"}) == "team"
    assert oauth.plan_name({"has_claude_pro": True}, {}) == "pro"
    assert oauth.plan_name({}, {}) is None


@pytest.mark.parametrize("expires_in, lifetime_s", [
    (b"1" + b"0" * 400, 3600), (b"1e999", 3600), (b"-Infinity", 3600), (b"NaN", 3600), (b"-5", 3600),
    (b"0", 3600), (b'"7200"', 3600), (b"true", 3600), (b"1e12", 366 * 86400), (b"7200", 7200),
])
def test_any_lifetime_the_token_endpoint_gives_keeps_the_new_pair(expires_in: bytes, lifetime_s: float) -> None:
    """Issue 12: a lifetime too large for a float raised OverflowError after the old refresh
    token was spent, so the rotated pair was lost; NaN raised ValueError."""
    with ProgrammableUpstream([]) as upstream:
        upstream.expires_in.append(expires_in)
        tokens = oauth.refresh(upstream.url + upstream.TOKEN_PATH, ALICE_REFRESH, account_name="alice", now=1000.0)
    assert (tokens.access_token, tokens.refresh_token) == tuple(upstream.issued)
    assert tokens.expires_at == int((1000 + lifetime_s) * 1000)
