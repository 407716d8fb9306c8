"""Everything the fake upstream remembers: accounts and their quota, tokens, pending faults,
prompt caches, the request log. No I/O; one re-entrant lock guards it all, so the public
methods are safe to call from any thread while the server's loop thread answers requests.
Methods whose names start with `_` expect the caller to hold `_lock`."""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from teamclaude.fake.accounts import (
    MODEL_WINDOW_FAMILY,
    ApiKeyMeter,
    FakeAccount,
    WindowState,
    add_burn,
    force_rejected,
    roll_windows,
    unified_headers,
    windows_of,
)
from teamclaude.fake.faults import FaultQueue, make_fault
from teamclaude.fake.http11 import Request
from teamclaude.fake.messages import CACHE_TTL_S, CachePlan
from teamclaude.fake.oauth import CLIENT_ID, TokenStore

OAUTH_BETA = "oauth-2025-04-20"
EXPIRED_TOKEN_MESSAGE = "OAuth token has expired. Please obtain a new token or refresh your existing token."

# Model-window aliases accepted by set_usage / set_reset besides the header names.
_WINDOW_ALIASES = {"seven_day_sonnet": "7d_sonnet", "seven_day_opus": "7d_oi"}


@dataclass
class Recorded:
    """One request the fake received (control-plane requests excluded)."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    account: str | None = None
    status: int = 0  # 0: no response was sent (reset, hang)
    at: float = 0.0


@dataclass(frozen=True)
class TokenCall:
    """One call of `POST /v1/oauth/token`."""

    grant_type: str
    account: str | None
    status: int


def _beta_values(req: Request) -> set[str]:
    return {part.strip() for part in (req.header("anthropic-beta") or "").split(",")}


class UpstreamState:
    def __init__(
        self,
        accounts: Iterable[FakeAccount] = (),
        *,
        token_ttl_s: float = 28800,
        record: bool = True,
        clock: Callable[[], float] = time.time,
        client_id: str = CLIENT_ID,
    ) -> None:
        self.token_ttl_s = token_ttl_s
        self.record = record
        self.client_id = client_id
        self.login_as: str | None = None
        self.omit_refresh_token_in_response = False
        self._clock = clock
        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)
        self._accounts: dict[str, FakeAccount] = {}
        self._api_keys: dict[str, str] = {}
        self._meters: dict[str, ApiKeyMeter] = {}
        self._tokens = TokenStore()
        self._faults = FaultQueue()
        self._prompt_cache: dict[tuple[str, str], float] = {}
        self._requests: list[Recorded] = []
        self._arrivals = 0
        self._token_calls: list[TokenCall] = []
        for acct in accounts:
            self.add_account(acct)

    # ----------------------------------------------------------------- accounts

    def add_account(self, acct: FakeAccount) -> None:
        """Add (or replace, by name) an account. The fake keeps its own copy."""
        acct = copy.deepcopy(acct)
        with self._lock:
            old = self._accounts.get(acct.name)
            if old is not None:
                self._tokens.forget_account(old.name)
                if old.api_key is not None:
                    self._api_keys.pop(old.api_key, None)
            self._accounts[acct.name] = acct
            self._tokens.register(acct.name, acct.access_token, acct.refresh_token)
            if acct.api_key is not None:
                self._api_keys[acct.api_key] = acct.name
                self._meters[acct.name] = ApiKeyMeter()

    def account(self, name: str) -> FakeAccount:
        """A snapshot copy of an account's current state (tokens, usage, resets)."""
        with self._lock:
            return copy.deepcopy(self._get(name))

    def accounts(self) -> list[FakeAccount]:
        with self._lock:
            return [copy.deepcopy(acct) for acct in self._accounts.values()]

    def _get(self, name: str) -> FakeAccount:
        try:
            return self._accounts[name]
        except KeyError:
            known = ", ".join(self._accounts) or "none"
            raise KeyError(f"fake upstream has no account {name!r} (known: {known})") from None

    def set_usage(
        self, name: str, five_hour: float | None = None, seven_day: float | None = None, **model_windows: float
    ) -> None:
        """Set used = fraction × budget per window (model windows by `**{"7d_sonnet": f}` /
        `**{"7d_oi": f}`, or `seven_day_sonnet=` / `seven_day_opus=`)."""
        with self._lock:
            acct = self._get(name)
            roll_windows(acct, self._clock())
            if five_hour is not None:
                acct.five_hour_used = round(five_hour * acct.five_hour_budget)
            if seven_day is not None:
                acct.seven_day_used = round(seven_day * acct.seven_day_budget)
            for key, fraction in model_windows.items():
                window = self._model_window(acct, key)
                acct.model_windows_used[window] = round(fraction * acct.model_windows[window])

    def set_reset(
        self, name: str, five_hour: float | None = None, seven_day: float | None = None, **model_windows: float
    ) -> None:
        """Set window resets (epoch seconds). A reset in the past clears that window at the
        next request."""
        with self._lock:
            acct = self._get(name)
            if five_hour is not None:
                acct.five_hour_reset = five_hour
            if seven_day is not None:
                acct.seven_day_reset = seven_day
            for key, epoch in model_windows.items():
                acct.model_windows_reset[self._model_window(acct, key)] = epoch

    @staticmethod
    def _model_window(acct: FakeAccount, key: str) -> str:
        window = _WINDOW_ALIASES.get(key, key)
        if window not in MODEL_WINDOW_FAMILY:
            raise ValueError(f"unknown window {key!r} (use 7d_sonnet, 7d_oi, seven_day_sonnet or seven_day_opus)")
        if window not in acct.model_windows:
            raise ValueError(f"account {acct.name!r} has no {window} window (set model_windows={{{window!r}: budget}})")
        return window

    def expire_access_token(self, name: str) -> None:
        """Make the account's current access token answer 401 'OAuth token has expired'."""
        with self._lock:
            acct = self._get(name)
            if acct.access_token is None:
                raise ValueError(f"account {name!r} has no access token")
            self._tokens.expire(acct.access_token, self._clock())

    def issue_code(self, state: str, code_challenge: str, redirect_uri: str, account: str | None = None) -> str:
        """An authorization code as the authorize page would issue it (for paste-flow tests),
        for `account` or else `login_as` or else the first OAuth account."""
        with self._lock:
            name = account or self._login_account()
            self._get(name)
            return self._tokens.issue_code(name, code_challenge, redirect_uri, state, self._clock())

    def _login_account(self) -> str:
        if self.login_as is not None:
            return self.login_as
        for acct in self._accounts.values():
            if acct.is_oauth:
                return acct.name
        raise ValueError("fake upstream has no OAuth account to log in as")

    # ----------------------------------------------------------------- faults

    def inject(self, account: str | None, kind: str, count: int = 1, **params: Any) -> None:
        """Give the next `count` matching requests (of `account`, or any when None) a fault.

        Faults apply to `/v1/messages*` unless `path=` names another path prefix (e.g.
        `/v1/oauth/token`, matched by the refresh token's owner)."""
        fault = make_fault(account, kind, count, params)
        with self._lock:
            if account is not None:
                self._get(account)
            self._faults.add(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ----------------------------------------------------------------- recording

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return [dataclasses.replace(r, headers=list(r.headers)) for r in self._requests]

    @property
    def request_count(self) -> int:
        """Requests received since the last clear_requests (counted even with record=False)."""
        with self._lock:
            return self._arrivals

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._arrivals = 0

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Recorded]:
        """Block until at least `n` requests arrived; TimeoutError otherwise."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self._arrivals >= n, timeout):
                raise TimeoutError(f"fake upstream saw {self._arrivals} requests, expected {n} within {timeout}s")
        return self.requests

    @property
    def token_calls(self) -> list[TokenCall]:
        with self._lock:
            return list(self._token_calls)

    def token_counts(self) -> dict[str, dict[str, int]]:
        """Refresh calls per account: `calls` received (an unknown token counts under ""),
        `rotated` answered with a new pair (a pair rotated for a client that hung up counts:
        its old refresh token is dead all the same)."""
        counts: dict[str, dict[str, int]] = {}
        with self._lock:
            for call in self._token_calls:
                if call.grant_type != "refresh_token":
                    continue
                entry = counts.setdefault(call.account or "", {"calls": 0, "rotated": 0})
                entry["calls"] += 1
                entry["rotated"] += call.status == 200
        return counts

    def _arrive(self, req: Request) -> Recorded | None:
        """Count (and with `record`, log) a request as it arrives."""
        with self._arrived:
            self._arrivals += 1
            record = None
            if self.record:
                record = Recorded(req.method, req.path, req.query, req.headers, req.body, at=time.time())
                self._requests.append(record)
            self._arrived.notify_all()
            return record

    # ----------------------------------------------------------------- per-request rules

    def _authenticate(self, req: Request, now: float) -> tuple[FakeAccount | None, str, str | None]:
        """(account, "", name) for a good credential, else (None, why not, the name of the
        account a refused but known token belongs to)."""
        authorization = req.header("authorization")
        if authorization is not None and authorization[:7].lower() == "bearer ":
            name, expired = self._tokens.access(authorization[7:].strip(), now)
            acct = self._accounts.get(name) if name is not None else None
            if acct is None:
                return None, "Invalid bearer token", None
            if expired:
                return None, EXPIRED_TOKEN_MESSAGE, acct.name
            if OAUTH_BETA not in _beta_values(req):
                return None, "OAuth authentication is currently not supported.", acct.name
            return acct, "", acct.name
        api_key = req.header("x-api-key")
        if api_key is None:
            return None, "x-api-key header is required", None
        name = self._api_keys.get(api_key)
        if name is None or name not in self._accounts:
            return None, "invalid x-api-key", None
        return self._accounts[name], "", name

    def _rate_headers(
        self, name: str, now: float, model: str | None, forced_window: str | None = None
    ) -> tuple[list[tuple[str, str]], list[WindowState]]:
        """Rate-limit headers from the account's state before this request (none when the
        account was removed meanwhile)."""
        acct = self._accounts.get(name)
        if acct is None:
            return [], []
        if not acct.is_oauth:
            return self._meters[acct.name].headers(now), []
        states = windows_of(acct, now)
        if forced_window is not None:
            states = force_rejected(states, forced_window)
        return unified_headers(states, model, representative=forced_window), states

    def _cache_hit(self, name: str, plan: CachePlan | None, now: float) -> bool:
        """Was this prefix cached for the account (and still warm)? Marks it warm."""
        if plan is None:
            return False
        key = (name, plan.key)
        expires = self._prompt_cache.get(key)
        self._prompt_cache[key] = now + CACHE_TTL_S[plan.ttl]
        return expires is not None and expires > now

    def _record_burn(self, name: str, model: str | None, input_tokens: int, output_tokens: int, burn: int) -> None:
        """Count a finished answer against the account's quota (takes the lock itself)."""
        with self._lock:
            acct = self._accounts.get(name)
            if acct is None:
                return
            now = self._clock()
            if acct.is_oauth:
                add_burn(acct, model, burn, now)
            else:
                self._meters[acct.name].add(now, input_tokens, output_tokens)
