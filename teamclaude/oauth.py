"""Claude OAuth over HTTP (behaviour §7.3): token refresh, code exchange, profile lookup.

Blocking stdlib `urllib` calls; async callers run them with `asyncio.to_thread`. Nothing
here puts a token into an exception, a log line or a repr.
"""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from teamclaude import __version__

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
SCOPES = "org:create_api_key user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload"
OAUTH_BETA = "oauth-2025-04-20"
TIMEOUT_S = 30.0
# Waits before the retries of a token call that failed with a 5xx or a network error.
RETRY_DELAYS_S: tuple[float, ...] = (0.5, 2.0)
USER_AGENT = f"teamclaude/{__version__}"


class OAuthError(Exception):
    """A token or profile call failed. The message names the account, never a token."""


class NeedsLogin(OAuthError):
    """The refresh token was refused (`invalid_grant`): only a new login fixes it."""

    def __init__(self, account_name: str) -> None:
        super().__init__(
            f"account '{account_name}' needs a new login: run 'teamclaude login' "
            "(or 'teamclaude import' if it came from Claude Code)"
        )
        self.account_name = account_name


@dataclass(frozen=True, repr=False)
class TokenSet:
    """A token endpoint answer. `refresh_token` is None when none came back."""

    access_token: str
    refresh_token: str | None
    expires_at: int  # epoch milliseconds
    account_id: str | None = None
    email: str | None = None
    org: str | None = None

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token=<set>, refresh_token={'<set>' if self.refresh_token else None}, "
            f"expires_at={self.expires_at}, account_id={self.account_id!r}, email={self.email!r})"
        )


@dataclass(frozen=True)
class Profile:
    """Who an access token belongs to (from the profile endpoint)."""

    id: str | None
    email: str | None
    org: str | None
    plan: str | None


def refresh(token_url: str, refresh_token: str, *, account_name: str, timeout: float = TIMEOUT_S,
            now: float | None = None) -> TokenSet:
    """Trade a refresh token for a new pair. `invalid_grant` raises `NeedsLogin`."""
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
    answer = _token_call(token_url, body, what=f"refreshing account '{account_name}'", timeout=timeout,
                         account_name=account_name)
    return _token_set(answer, what=f"refreshing account '{account_name}'", now=now)


def exchange_code(token_url: str, *, code: str, verifier: str, redirect_uri: str, state: str,
                  timeout: float = TIMEOUT_S, now: float | None = None) -> TokenSet:
    """Trade an authorization code (PKCE) for tokens."""
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
        "state": state,
    }
    answer = _token_call(token_url, body, what="exchanging the login code", timeout=timeout, account_name=None)
    return _token_set(answer, what="exchanging the login code", now=now)


def fetch_profile(profile_url: str, access_token: str, *, timeout: float = TIMEOUT_S) -> Profile:
    """The account behind an access token: id, email, organization and plan."""
    request = urllib.request.Request(
        profile_url,
        headers={
            "Authorization": f"Bearer {access_token}",
            "anthropic-beta": OAUTH_BETA,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        },
    )
    status, answer = _send(request, timeout)
    if status != 200 or not isinstance(answer, dict):
        raise OAuthError(f"profile lookup failed: HTTP {status}")
    return profile_from_json(answer)


def profile_from_json(answer: dict[str, Any]) -> Profile:
    account = answer.get("account") if isinstance(answer.get("account"), dict) else {}
    org = answer.get("organization") if isinstance(answer.get("organization"), dict) else {}
    return Profile(
        id=_text(account.get("uuid")),
        email=_text(account.get("email")) or _text(account.get("email_address")),
        org=_text(org.get("name")),
        plan=plan_name(account, org),
    )


def plan_name(account: dict[str, Any], org: dict[str, Any]) -> str | None:
    """A short plan label: max, pro, team, enterprise, … as far as the profile tells."""
    if account.get("has_claude_max"):
        return "max"
    if account.get("has_claude_pro"):
        return "pro"
    for key in ("organization_type", "subscription_type", "plan"):
        value = _text(org.get(key))
        if value:
            return value.removeprefix("claude_")
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# What a token endpoint says about a token's lifetime is believed within these bounds.
DEFAULT_LIFETIME_S = 3600.0
MAX_LIFETIME_S = 366 * 86400.0


def _lifetime_s(expires_in: Any) -> float:
    """`expires_in` as seconds, at most `MAX_LIFETIME_S`. Anything but a positive finite
    number (absent, text, NaN, negative, 1e999, an integer too large for a float) is unknown:
    an hour. Never raises: the new pair it comes with must not be lost to it."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
        return DEFAULT_LIFETIME_S
    try:
        seconds = float(expires_in)
    except OverflowError:
        return DEFAULT_LIFETIME_S
    if not math.isfinite(seconds) or seconds <= 0:
        return DEFAULT_LIFETIME_S
    return min(seconds, MAX_LIFETIME_S)


def _token_set(answer: dict[str, Any], *, what: str, now: float | None) -> TokenSet:
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise OAuthError(f"{what}: the token endpoint answered without an access token")
    refresh_token = answer.get("refresh_token")
    lifetime_s = _lifetime_s(answer.get("expires_in"))
    account = answer.get("account") if isinstance(answer.get("account"), dict) else {}
    org = answer.get("organization") if isinstance(answer.get("organization"), dict) else {}
    return TokenSet(
        access_token=access,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        expires_at=int(((time.time() if now is None else now) + lifetime_s) * 1000),
        account_id=_text(account.get("uuid")),
        email=_text(account.get("email_address")) or _text(account.get("email")),
        org=_text(org.get("name")),
    )


def _token_call(url: str, body: dict[str, str], *, what: str, timeout: float,
                account_name: str | None) -> dict[str, Any]:
    """POST JSON to the token endpoint, retrying 5xx and network errors only."""
    data = json.dumps(body).encode()
    attempts = len(RETRY_DELAYS_S) + 1
    for attempt in range(attempts):
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT},
        )
        try:
            status, answer = _send(request, timeout)
        except OAuthError as exc:
            failure = f"{what}: {exc}"
        else:
            if status == 200 and isinstance(answer, dict):
                return answer
            error = answer.get("error") if isinstance(answer, dict) else None
            if isinstance(error, dict):  # Anthropic-shaped {"error": {"type": ...}}
                error = error.get("type")
            if error == "invalid_grant" and account_name is not None:
                raise NeedsLogin(account_name)
            failure = f"{what}: the token endpoint answered HTTP {status}" + (f" ({error})" if isinstance(error, str) else "")
            if status < 500:
                raise OAuthError(failure)
        if attempt < attempts - 1:
            time.sleep(RETRY_DELAYS_S[attempt])
    raise OAuthError(failure + f" (tried {attempts} times)")


def _send(request: urllib.request.Request, timeout: float) -> tuple[int, Any]:
    """(status, parsed JSON or None). Network failures raise OAuthError without details of the body."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, _json(exc.read())
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise OAuthError(f"cannot reach {request.host}: {reason}") from None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
