"""Fresh credentials for the proxy (behaviour §7.3), on mitmproxy's asyncio loop.

Refresh tokens are single use and shared with other processes (the CLI, Claude Code for
imported accounts), so a refresh happens inside the accounts-file lock: the file is re-read,
and if someone else already rotated the pair it is adopted instead of refreshed; otherwise
the token endpoint is called and the rotated pair is written before the lock is released
and before anyone uses the new access token. Within this process a refresh is single-flight
per account: concurrent callers await the same task, which a cancelled caller cannot stop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

from teamclaude import oauth
from teamclaude.accounts_store import Account, AccountsDoc, AccountsStore
from teamclaude.importer import ImportFailed, read_claude_credentials
from teamclaude.oauth import NeedsLogin, OAuthError, TokenSet
from teamclaude.settings import Settings

__all__ = ["CredentialManager", "NeedsLogin", "OAuthError", "UnknownAccount"]

logger = logging.getLogger(__name__)

# A forced refresh (after a 401) is skipped when the account was refreshed this recently.
FORCE_MIN_INTERVAL_S = 10.0
BACKGROUND_INTERVAL_S = 60.0


class UnknownAccount(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no account named '{name}' (see 'teamclaude accounts')")
        self.name = name


class CredentialManager:
    """Hands out accounts with usable access tokens, refreshing them when needed."""

    def __init__(self, store: AccountsStore, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self.needs_login: set[str] = set()
        self._clock = clock
        self._accounts: dict[str, Account] = {}
        self._refreshing: dict[str, asyncio.Task[Account]] = {}
        self._refreshed_at: dict[str, float] = {}

    def configure(self, store: AccountsStore, settings: Settings) -> None:
        """New settings (and possibly a new accounts file); accounts come with `reload`."""
        self.store = store
        self.settings = settings

    def reload(self, doc: AccountsDoc) -> None:
        """Take the accounts of a freshly read file.

        An in-memory account that is newer than the file's copy (our own refresh, written
        after the file was read) is kept. New credentials for an account clear its
        needs-login mark. Refreshes in flight finish and persist through the locked file.
        """
        accounts: dict[str, Account] = {}
        for incoming in doc.accounts:
            mine = self._accounts.get(incoming.name)
            if mine is not None and mine.key == incoming.key and _newer(mine, incoming):
                accounts[incoming.name] = mine
                continue
            if mine is None or (mine.refresh_token, mine.access_token) != (incoming.refresh_token, incoming.access_token):
                self.needs_login.discard(incoming.name)
            accounts[incoming.name] = incoming
        self._accounts = accounts
        self.needs_login &= set(accounts)
        self._refreshed_at = {n: t for n, t in self._refreshed_at.items() if n in accounts}

    def get(self, name: str) -> Account:
        account = self._accounts.get(name)
        if account is None:
            raise UnknownAccount(name)
        return account

    async def fresh(self, name: str, *, force: bool = False) -> Account:
        """The account with an access token that is good for at least `refresh_skew_s`.

        `force` refreshes even an unexpired token (after a 401), unless the account was
        refreshed less than 10 s ago. Raises `NeedsLogin` when only a new login helps, and
        `OAuthError` when the token endpoint fails and the current token has expired.
        """
        return await self._fresh(name, force, self._clock())

    async def _fresh(self, name: str, force: bool, now: float) -> Account:
        account = self.get(name)
        if account.type != "oauth":
            return account
        if name in self.needs_login:
            raise NeedsLogin(name)
        if force:
            if now - self._refreshed_at.get(name, float("-inf")) < FORCE_MIN_INTERVAL_S:
                return account
        elif not self._expiring(account, now):
            return account
        task = self._refreshing.get(name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._refresh(name, account, force, now))
            self._refreshing[name] = task
            task.add_done_callback(lambda done: self._refresh_finished(name, done))
        return await asyncio.shield(task)

    async def refresh_idle(self, now: float | None = None) -> dict[str, str | None]:
        """Refresh enabled OAuth accounts that expire within the skew, so none dies unused.

        Accounts a request is refreshing already are joined, not refreshed twice. Returns
        each attempted account's outcome: None on success, else the error message.
        """
        now = self._clock() if now is None else now
        due = [
            name for name, account in self._accounts.items()
            if account.type == "oauth" and not account.disabled and account.refresh_token
            and name not in self.needs_login and self._expiring(account, now)
        ]
        results = await asyncio.gather(*(self._fresh(name, False, now) for name in due), return_exceptions=True)
        outcome: dict[str, str | None] = {}
        for name, result in zip(due, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
            outcome[name] = str(result) if isinstance(result, Exception) else None
        return outcome

    async def run_background(self, interval_s: float = BACKGROUND_INTERVAL_S) -> None:
        """Refresh idle accounts every `interval_s` until cancelled (started by the addon)."""
        while True:
            await asyncio.sleep(interval_s)
            for name, error in (await self.refresh_idle()).items():
                if error is not None:
                    logger.warning("teamclaude: background refresh of '%s' failed: %s", name, error)

    # ---- internals ----

    def _expiring(self, account: Account, now: float) -> bool:
        if not account.access_token:
            return True
        if account.expires_at is None:
            return False  # unknown expiry: use it; a 401 forces a refresh
        return account.expires_at / 1000.0 - now <= self.settings.refresh_skew_s

    def _refresh_finished(self, name: str, task: asyncio.Task[Account]) -> None:
        if self._refreshing.get(name) is task:
            del self._refreshing[name]
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not reported twice

    async def _refresh(self, name: str, seen: Account, force: bool, now: float) -> Account:
        try:
            updated = await asyncio.to_thread(self._refresh_locked, name, seen, force, now)
        except NeedsLogin:
            self.needs_login.add(name)
            raise
        except OAuthError as exc:
            current = self._accounts.get(name, seen)
            if current.access_token and (current.expires_at is None or current.expires_at / 1000.0 > self._clock()):
                logger.warning("teamclaude: %s; using the current token until it expires", exc)
                return current
            raise
        if name in self._accounts:
            self._accounts[name] = updated
        self._refreshed_at[name] = self._clock()
        self.needs_login.discard(name)
        return updated

    def _refresh_locked(self, name: str, seen: Account, force: bool, now: float) -> Account:
        """In a worker thread: refresh under the file lock, persisting before returning."""

        def mutate(doc: AccountsDoc) -> Account:
            current = doc.find(seen.key) or doc.get(name)
            if current is None or current.type != "oauth":
                raise UnknownAccount(name)
            rotated_elsewhere = current.access_token != seen.access_token
            if not self._expiring(current, now) and (rotated_elsewhere or not force):
                return _copy(current)
            tokens = self._obtain(current, now)
            current.access_token = tokens.access_token
            current.refresh_token = tokens.refresh_token or current.refresh_token
            current.expires_at = tokens.expires_at
            return _copy(current)

        return self.store.update(mutate)

    def _obtain(self, account: Account, now: float) -> TokenSet:
        """New tokens for `account`; for an imported one, its source file is the fallback."""
        if not account.refresh_token:
            raise NeedsLogin(account.name)
        try:
            return oauth.refresh(self.settings.oauth_token_url, account.refresh_token,
                                 account_name=account.name, now=now)
        except NeedsLogin:
            if not account.source:
                raise
            return self._from_source(account, now)

    def _from_source(self, account: Account, now: float) -> TokenSet:
        """Claude Code may have rotated the shared refresh token: take its newer copy."""
        try:
            theirs = read_claude_credentials(Path(account.source or ""))
        except ImportFailed as exc:
            logger.warning("teamclaude: account '%s': %s", account.name, exc)
            raise NeedsLogin(account.name) from None
        if not theirs.refresh_token or theirs.refresh_token == account.refresh_token:
            raise NeedsLogin(account.name)
        adopted = Account(name=account.name, type="oauth", access_token=theirs.access_token,
                          refresh_token=theirs.refresh_token, expires_at=theirs.expires_at)
        if theirs.access_token and theirs.expires_at is not None and not self._expiring(adopted, now):
            logger.info("teamclaude: account '%s' took the newer tokens of %s", account.name, account.source)
            return TokenSet(theirs.access_token, theirs.refresh_token, theirs.expires_at)
        return oauth.refresh(self.settings.oauth_token_url, theirs.refresh_token, account_name=account.name, now=now)


def _copy(account: Account) -> Account:
    return dataclasses.replace(account, extra=dict(account.extra))


def _newer(mine: Account, incoming: Account) -> bool:
    return (mine.expires_at or 0) > (incoming.expires_at or 0) and mine.refresh_token != incoming.refresh_token
