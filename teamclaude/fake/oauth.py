"""OAuth of the fake upstream: access tokens with expiry, single-use refresh tokens,
authorization codes bound to a PKCE S256 challenge (behaviour §7.3), and the bodies of the token,
profile and usage answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from teamclaude.fake.accounts import CLAIMS, FakeAccount, WindowState, rfc3339

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
SCOPE = "user:inference user:profile user:sessions:claude_code user:mcp_servers user:file_upload"
CODE_TTL_S = 600.0


def new_access_token() -> str:
    return "sk-ant-oat01-" + secrets.token_urlsafe(72) + "AA"


def new_refresh_token() -> str:
    return "sk-ant-ort01-" + secrets.token_urlsafe(72) + "AA"


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class AccessGrant:
    account: str
    expires_at: float | None  # None: never expires (tokens an account was created with)


@dataclass(frozen=True)
class PendingCode:
    account: str
    code_challenge: str
    redirect_uri: str
    state: str
    expires_at: float


@dataclass(frozen=True)
class Tokens:
    account: str
    access_token: str
    refresh_token: str | None  # None when the answer carries no new refresh token


class TokenStore:
    """Which token belongs to which account, and whether it is still good. Not thread-safe:
    the server calls it under its own lock."""

    def __init__(self) -> None:
        self._access: dict[str, AccessGrant] = {}
        self._refresh: dict[str, str] = {}
        self._codes: dict[str, PendingCode] = {}

    def register(self, account: str, access_token: str | None, refresh_token: str | None) -> None:
        if access_token is not None:
            self._access[access_token] = AccessGrant(account, None)
        if refresh_token is not None:
            self._refresh[refresh_token] = account

    def forget_account(self, account: str) -> None:
        self._access = {t: g for t, g in self._access.items() if g.account != account}
        self._refresh = {t: a for t, a in self._refresh.items() if a != account}

    def access(self, token: str, now: float) -> tuple[str | None, bool]:
        """(account, expired) for a bearer token; (None, False) when it is unknown."""
        grant = self._access.get(token)
        if grant is None:
            return None, False
        return grant.account, grant.expires_at is not None and grant.expires_at <= now

    def expire(self, token: str, now: float) -> None:
        grant = self._access.get(token)
        if grant is not None:
            grant.expires_at = now - 1

    def refresh_owner(self, refresh_token: str) -> str | None:
        return self._refresh.get(refresh_token)

    def rotate(self, refresh_token: str, now: float, ttl_s: float, rotate_refresh: bool) -> Tokens | None:
        """Trade a refresh token for a new access token (and a new refresh token, which makes
        the old one invalid). None when the refresh token is unknown or already used."""
        account = self._refresh.get(refresh_token)
        if account is None:
            return None
        access_token = new_access_token()
        self._access[access_token] = AccessGrant(account, now + ttl_s)
        if not rotate_refresh:
            return Tokens(account, access_token, None)
        del self._refresh[refresh_token]
        new_refresh = new_refresh_token()
        self._refresh[new_refresh] = account
        return Tokens(account, access_token, new_refresh)

    def issue_tokens(self, account: str, now: float, ttl_s: float) -> Tokens:
        access_token, refresh_token = new_access_token(), new_refresh_token()
        self._access[access_token] = AccessGrant(account, now + ttl_s)
        self._refresh[refresh_token] = account
        return Tokens(account, access_token, refresh_token)

    def issue_code(self, account: str, code_challenge: str, redirect_uri: str, state: str, now: float) -> str:
        code = secrets.token_urlsafe(32)
        self._codes[code] = PendingCode(account, code_challenge, redirect_uri, state, now + CODE_TTL_S)
        return code

    def redeem_code(self, code: str, verifier: str, redirect_uri: str, state: str, now: float) -> str | None:
        """The account a code was issued for, when the verifier, redirect URI and state match.
        A code is single use: any attempt, good or bad, consumes it."""
        pending = self._codes.pop(code, None)
        if pending is None or pending.expires_at <= now:
            return None
        if pending.redirect_uri != redirect_uri or pending.state != state:
            return None
        if not hmac.compare_digest(pkce_challenge(verifier), pending.code_challenge):
            return None
        return pending.account


# ---------------------------------------------------------------------- answer bodies

_RATE_LIMIT_TIERS = {"max": "default_claude_max_20x", "pro": "default_claude_pro", "team": "default_claude_team"}


def token_answer(acct: FakeAccount, tokens: Tokens, ttl_s: float) -> dict[str, Any]:
    """The token endpoint's success body (refresh and authorization-code grants alike)."""
    answer: dict[str, Any] = {
        "token_type": "Bearer",
        "access_token": tokens.access_token,
        "expires_in": int(ttl_s),
        "scope": SCOPE,
        "organization": {"uuid": acct.org_uuid, "name": acct.org},
        "account": {"uuid": acct.uuid, "email_address": acct.email},
    }
    if tokens.refresh_token is not None:
        answer["refresh_token"] = tokens.refresh_token
    return answer


def profile_answer(acct: FakeAccount) -> dict[str, Any]:
    """`GET /api/oauth/profile`, shaped like the real one."""
    local = (acct.email or acct.name).split("@")[0]
    return {
        "account": {
            "uuid": acct.uuid,
            "email": acct.email,
            "full_name": local.title(),
            "display_name": local,
            "has_claude_max": acct.plan == "max",
            "has_claude_pro": acct.plan == "pro",
        },
        "organization": {
            "uuid": acct.org_uuid,
            "name": acct.org,
            "organization_type": f"claude_{acct.plan}",
            "billing_type": "stripe_subscription",
            "rate_limit_tier": _RATE_LIMIT_TIERS.get(acct.plan, f"default_claude_{acct.plan}"),
        },
    }


def usage_answer(states: list[WindowState]) -> dict[str, Any]:
    """`GET /api/oauth/usage`: the same windows in percent (0..100) with ISO reset times."""
    usage: dict[str, Any] = {claim: None for claim in CLAIMS.values()}
    for state in states:
        usage[CLAIMS[state.name]] = {
            "utilization": round(state.utilization * 100, 2),
            "resets_at": rfc3339(state.reset),
        }
    usage["extra_usage"] = {"is_enabled": False, "monthly_limit": None, "used_credits": None, "utilization": None}
    return usage
