"""Fresh credentials for the proxy (behaviour §7.3), on mitmproxy's asyncio loop.

Refresh tokens are single use and shared with other processes (the CLI, Claude Code for
imported accounts), so a refresh happens inside the accounts-file lock: the file is re-read,
and if someone else already rotated the pair it is adopted instead of refreshed; otherwise
the token endpoint is called and the rotated pair is written before the lock is released
and before anyone uses the new access token. Within this process a refresh is single-flight
per account: concurrent callers await the same task, which a cancelled caller cannot stop.

A rotated pair is never dropped: it goes to the token journal the moment it arrives, then
into the accounts file. When the file cannot be written (disk full, read-only) the pair
serves from memory, is shown as "new token not saved", and is written again with backoff
(`run_background`) until it lands. A broken accounts file stops refreshes (nothing could be
saved) but not serving: the current token is used while it is valid, else the request fails
over; the error names the file and line.

With `shared_state` set, the pool's proxies share each account's pair through Redis
(`teamclaude.shared.tokens`, behaviour §7.3 "Several proxies"): a proxy refreshes only while
it holds the account's lease, re-reads the pair from Redis inside it (a newer one is adopted
instead of refreshed), journals the received pair, writes it to Redis (compare-and-set on the
rotation), then to the accounts file. Another proxy's refresh is waited for and adopted;
a Redis that does not answer means no refresh at all (it would log the other proxies out):
the current token serves until it expires, then the account fails over. The request path
never waits on Redis; other proxies' pairs come in when a refresh is due, after a 401, from
the periodic check (`check_shared`) and from the pool's events (`adopt_shared`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teamclaude import oauth
from teamclaude.aio import raise_if_cancelled
from teamclaude.accounts_store import (
    Account,
    AccountsDoc,
    AccountsError,
    AccountsStore,
    adopt_newer,
    is_newer,
    received_pair,
)
from teamclaude.importer import ImportFailed, read_claude_credentials
from teamclaude.oauth import NeedsLogin, OAuthError, TokenSet
from teamclaude.settings import Settings
from teamclaude.shared import tokens as shared_tokens
from teamclaude.shared.connection import new_instance_id
from teamclaude.shared.tokens import SharedPair, SharedTokens, SharedUnavailable

__all__ = ["CredentialManager", "NeedsLogin", "OAuthError", "RefreshFailed", "UnknownAccount"]

logger = logging.getLogger(__name__)

# A forced refresh (after a 401) is skipped when the account was refreshed this recently, or
# took a pair from the pool this recently (the 401 is then for the token it replaced).
FORCE_MIN_INTERVAL_S = 10.0
BACKGROUND_INTERVAL_S = 60.0
# Waits between attempts to write a pair the accounts file refused; the last one repeats.
SAVE_RETRY_DELAYS_S: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)


class RefreshFailed(OAuthError):
    """The token expired and no new one could be had for now — not a login problem: the token
    endpoint failed or the accounts file is unusable. Other accounts serve meanwhile."""


@dataclass
class Unsaved:
    """A received pair the accounts file did not take yet (it serves from memory)."""

    account: Account
    error: str
    since: float
    attempts: int = 0
    next_try: float = 0.0

    def status(self) -> dict[str, Any]:
        return {"since": self.since, "error": self.error, "attempts": self.attempts, "next_try": self.next_try}


class UnknownAccount(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no account named '{name}' (see 'teamclaude accounts')")
        self.name = name


class CredentialManager:
    """Hands out accounts with usable access tokens, refreshing them when needed."""

    def __init__(self, store: AccountsStore, settings: Settings, *, clock: Callable[[], float] = time.time,
                 instance_id: str | None = None) -> None:
        self.store = store
        self.settings = settings
        self.instance_id = instance_id or new_instance_id()
        # The pool's Redis (`shared_state`, read once: changing it takes a restart).
        self.shared = SharedTokens(settings.shared_state, self.instance_id) if settings.shared_state else None
        # Per account key: (rotation, access token) of the Redis pair this proxy holds.
        self._known: dict[str, tuple[int, str]] = {}
        # Per account: `token_shared` of the state file; entries are replaced whole (threads).
        self.shared_status: dict[str, dict[str, Any]] = {}
        self._unpushed: set[str] = set()  # received pairs Redis did not take yet
        self.needs_login: set[str] = set()
        self._clock = clock
        self._accounts: dict[str, Account] = {}
        self._refreshing: dict[str, asyncio.Task[Account]] = {}
        self._refreshed_at: dict[str, float] = {}
        self.unsaved: dict[str, Unsaved] = {}
        # Why the last refresh of an account failed (not needs-login), until one succeeds.
        self.refresh_errors: dict[str, str] = {}
        self._file_error: str | None = None
        self._retry_due = asyncio.Event()  # set when a pair could not be saved
        # Told (account, outcome) of each refresh: refreshed, adopted (another process had
        # rotated the pair), needs_login, failed (teamclaude.metrics).
        self.on_refresh: Callable[[str, str], None] | None = None
        self._obtained: set[str] = set()  # accounts whose refresh in progress got new tokens

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
            if mine is not None and mine.key == incoming.key and mine.type == "oauth" and is_newer(mine, incoming):
                accounts[incoming.name] = mine
                continue
            self.unsaved.pop(incoming.name, None)  # the file holds this pair or a newer one
            if mine is None or (mine.refresh_token, mine.access_token) != (incoming.refresh_token, incoming.access_token):
                self.needs_login.discard(incoming.name)
            accounts[incoming.name] = incoming
        self._accounts = accounts
        self.needs_login &= set(accounts)
        self._refreshed_at = {n: t for n, t in self._refreshed_at.items() if n in accounts}
        self.unsaved = {n: u for n, u in self.unsaved.items() if n in accounts}
        self.refresh_errors = {n: e for n, e in self.refresh_errors.items() if n in accounts}

    def accounts(self) -> list[Account]:
        """The accounts as in use now (newer than the file's while a pair is unsaved)."""
        return list(self._accounts.values())

    def get(self, name: str) -> Account:
        account = self._accounts.get(name)
        if account is None:
            raise UnknownAccount(name)
        return account

    async def fresh(self, name: str, *, force: bool = False) -> Account:
        """The account with an access token that is good for at least `refresh_skew_s`.

        `force` refreshes even an unexpired token (after a 401), unless the account was
        refreshed, or took the pool's pair, less than 10 s ago. Raises `NeedsLogin` when
        only a new login helps, and `OAuthError` when the token endpoint fails and the
        current token has expired.
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
        """Until cancelled (started by the addon): refresh idle accounts every `interval_s`,
        and write unsaved pairs when their retry is due. In shared mode, also compare the
        pairs with Redis's at start and every `interval_s` (`check_shared`)."""
        await self.check_shared()
        next_idle = self._clock() + interval_s
        while True:
            raise_if_cancelled()
            now = self._clock()
            wake = min([next_idle, *(u.next_try for u in self.unsaved.values())])
            self._retry_due.clear()
            try:
                async with asyncio.timeout(max(0.0, wake - now)):
                    await self._retry_due.wait()
                continue  # a new unsaved pair: sleep until its retry instead
            except TimeoutError:
                pass
            if self.unsaved:
                await self.save_unsaved()
            if self._clock() >= next_idle:
                next_idle = self._clock() + interval_s
                await self.check_shared()
                for name, error in (await self.refresh_idle()).items():
                    if error is not None:
                        logger.warning("teamclaude: background refresh of '%s' failed: %s", name, error)

    async def save_unsaved(self, *, force: bool = False) -> bool:
        """Write the pairs the accounts file refused, when their retry is due (or `force`).
        True when none is left unsaved."""
        now = self._clock()
        if not self.unsaved or not (force or any(u.next_try <= now for u in self.unsaved.values())):
            return not self.unsaved
        waiting = dict(self.unsaved)
        try:
            await asyncio.to_thread(self.save_sync, [u.account for u in waiting.values()])
        except (OSError, AccountsError) as exc:
            for entry in self.unsaved.values():
                entry.error = _save_error(self.store, exc)
                entry.attempts += 1
                delay = SAVE_RETRY_DELAYS_S[min(entry.attempts, len(SAVE_RETRY_DELAYS_S)) - 1]
                entry.next_try = self._clock() + delay
            return False
        for name, entry in waiting.items():
            if self.unsaved.get(name) is entry:
                del self.unsaved[name]
                logger.warning("teamclaude: account '%s': the new token is saved now (%s)", name,
                               self.store.path)
        return not self.unsaved

    def save_sync(self, accounts: list[Account] | None = None) -> None:
        """Write unsaved pairs now (blocking; also for a last try at shutdown). Raises
        OSError / AccountsError when the file still cannot take them."""
        pairs = [p for p in map(received_pair, accounts if accounts is not None else
                                [u.account for u in self.unsaved.values()]) if p is not None]
        if pairs:
            self.store.update(lambda doc: adopt_newer(doc, pairs))

    def account_state(self, name: str) -> dict[str, Any]:
        """What the state file shows about an account's tokens (never a token)."""
        unsaved = self.unsaved.get(name)
        state = {
            "token_unsaved": unsaved.status() if unsaved is not None else None,
            "token_refresh_error": self.refresh_errors.get(name),
        }
        if self.shared is not None:
            state["token_shared"] = self.shared_status.get(name)
        return state

    # ---- shared mode (teamclaude.shared.tokens) ----

    async def adopt_shared(self, account_key: str) -> bool:
        """Take the account's pair from Redis when it is newer than ours (into memory, the
        journal and the accounts file). For the pool's event listener: call it when another
        proxy announces a new pair (`{"type": "token", "account": KEY, ...}` on
        `names.EVENTS`). Redis is read in a worker thread. True when a newer pair was taken;
        an account refreshing here right now is left to that refresh (it reads Redis itself).
        """
        name = next((a.name for a in self._accounts.values() if a.type == "oauth" and a.key == account_key), None)
        if self.shared is None or name is None or name in self._refreshing:
            return False
        pending = [u.account for u in self.unsaved.values()]
        try:
            adopted, _, save_error = await asyncio.to_thread(self._adopt_from_shared, name, account_key, pending)
        except SharedUnavailable as exc:
            self._shared_lost(name, exc)
            return False
        return self._took(name, adopted, save_error)

    async def check_shared(self) -> None:
        """The periodic comparison with Redis (`run_background`): one pipelined read of every
        account's rotation; an account out of step adopts the newer pair from Redis, or pushes
        its own newer one (a pair received while Redis was away, or Redis restarted empty)."""
        if self.shared is None:
            return
        keys = {a.name: a.key for a in self._accounts.values() if a.type == "oauth"}
        if not keys:
            return
        try:
            rotations = await asyncio.to_thread(self.shared.rotations, keys.values())
        except SharedUnavailable as exc:
            for name in keys:
                self._shared_lost(name, exc)
            return
        for name, key in keys.items():
            known = self._known.get(key)
            mine = self._accounts.get(name)
            in_step = (known is not None and mine is not None and known == (rotations[key], mine.access_token))
            if name in self._refreshing or (in_step and name not in self._unpushed):
                continue
            pending = [u.account for u in self.unsaved.values()]
            try:
                adopted, save_error = await asyncio.to_thread(self._sync_shared, name, key, pending)
            except SharedUnavailable as exc:
                self._shared_lost(name, exc)
                return
            except (OAuthError, AccountsError, OSError) as exc:
                logger.warning("teamclaude: account '%s': comparing its pair with the shared state failed: %s",
                               name, _save_error(self.store, exc) if not isinstance(exc, OAuthError) else exc)
                continue
            self._took(name, adopted, save_error)

    def _took(self, name: str, adopted: Account | None, save_error: OSError | AccountsError | None) -> bool:
        """On the loop: use a pair adopted from Redis in a worker thread."""
        mine = self._accounts.get(name)
        if adopted is None or mine is None or mine.key != adopted.key:
            return False
        if (mine.access_token, mine.refresh_token) == (adopted.access_token, adopted.refresh_token):
            return False
        self._accounts[name] = adopted
        # As new as a pair refreshed here: a 401 now is for a request that left with the old
        # token, and a forced refresh would spend the pool's fresh refresh token for nothing.
        self._refreshed_at[name] = self._clock()
        self.needs_login.discard(name)
        self.refresh_errors.pop(name, None)
        if save_error is not None:
            self._keep_unsaved(adopted, save_error)
        logger.info("teamclaude: account '%s': took the newer token pair another proxy of the pool received", name)
        return True

    def _shared_lost(self, name: str, exc: SharedUnavailable) -> None:
        status = {"error": str(exc)}
        if self.shared_status.get(name) != status:
            logger.warning("teamclaude: account '%s': %s", name, exc)
        self.shared_status[name] = status

    # ---- internals ----

    def _outcome(self, name: str, outcome: str) -> None:
        if self.on_refresh is not None:
            self.on_refresh(name, outcome)

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
        self._obtained.discard(name)
        pending = [u.account for u in self.unsaved.values()]
        worker = self._refresh_locked if self.shared is None else self._refresh_shared
        try:
            updated, save_error = await asyncio.to_thread(worker, name, seen, force, now, pending)
        except NeedsLogin:
            self.needs_login.add(name)
            self._outcome(name, "needs_login")
            raise
        except (OAuthError, AccountsError, OSError, SharedUnavailable) as exc:
            return self._without_refresh(name, seen, force, exc)
        self._file_error = None
        self.refresh_errors.pop(name, None)
        if name in self._accounts:
            self._accounts[name] = updated
        self._refreshed_at[name] = self._clock()
        self._outcome(name, "refreshed" if name in self._obtained else "adopted")
        self.needs_login.discard(name)
        if save_error is None:
            for other in pending:
                if self.unsaved.get(other.name) is not None and self.unsaved[other.name].account is other:
                    del self.unsaved[other.name]  # written with this refresh
        else:
            self._keep_unsaved(updated, save_error)
        return updated

    def _without_refresh(self, name: str, seen: Account, force: bool, exc: Exception) -> Account:
        """No new pair: serve with the current token while it is valid, else fail over (as
        after a 401 with `force`: upstream refused the current token already)."""
        if isinstance(exc, SharedUnavailable):
            why = f"{exc}; not refreshed without the pool's lease (that would log the other proxies out)"
        elif isinstance(exc, OAuthError):
            why = str(exc)
        else:
            why = f"cannot refresh: {_save_error(self.store, exc)}"
            if why != self._file_error:
                logger.error("teamclaude: account '%s': %s", name, why)
            self._file_error = why
        self._outcome(name, "failed")
        self.refresh_errors[name] = why
        current = self._accounts.get(name, seen)
        valid = current.expires_at is None or current.expires_at / 1000.0 > self._clock()
        if current.access_token and valid and not force:
            if isinstance(exc, SharedUnavailable):
                logger.warning("teamclaude: account '%s': %s; using the current token until it expires", name, why)
            elif isinstance(exc, OAuthError):
                logger.warning("teamclaude: %s; using the current token until it expires", exc)
            return current
        state = "was refused upstream" if force and valid else "expired"
        raise RefreshFailed(
            f"account '{name}': its token {state} and no new one could be had ({why}); "
            "other accounts serve meanwhile and the refresh is tried again on the next request"
        ) from None

    def _keep_unsaved(self, account: Account, error: OSError | AccountsError) -> None:
        message = _save_error(self.store, error)
        previous = self.unsaved.get(account.name)
        if previous is None:
            logger.error("teamclaude: account '%s': new token not saved: %s; it serves from memory and "
                         "saving is retried", account.name, message)
        since = previous.since if previous is not None else self._clock()
        self.unsaved[account.name] = Unsaved(account, message, since, 0, self._clock() + SAVE_RETRY_DELAYS_S[0])
        self._retry_due.set()

    def _refresh_locked(self, name: str, seen: Account, force: bool, now: float,
                        pending: list[Account]) -> tuple[Account, OSError | AccountsError | None]:
        """In a worker thread: refresh under the file lock, persisting before returning.

        Returns the account and, when the file could not be written, why: a pair that was
        received is returned all the same (it is in the journal if that could be written).
        """
        received: list[Account] = []

        def mutate(doc: AccountsDoc) -> Account:
            adopt_newer(doc, [p for p in map(received_pair, pending) if p is not None])
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
            current.obtained_at = int(self._clock() * 1000)
            self._journal(current)
            received.append(_copy(current))
            return received[-1]

        try:
            return self.store.update(mutate), None
        except (OSError, AccountsError) as exc:
            # A received pair is kept whatever happens to the file: the old refresh token is dead.
            if received:
                return received[-1], exc
            raise

    def _refresh_shared(self, name: str, seen: Account, force: bool, now: float,
                        pending: list[Account]) -> tuple[Account, OSError | AccountsError | None]:
        """`_refresh_locked` for a pool sharing its pairs through Redis, in a worker thread.

        Takes the account's lease, or waits for its holder: the holder's new pair is adopted;
        a holder gone without one (its lease lapsed) lets us take the lease. Waiting is
        bounded; then the caller serves without a refresh. Raises SharedUnavailable when
        Redis does not answer: no refresh without the lease.
        """
        shared = self._shared()
        refused = seen.access_token if force else None
        limit = shared_tokens.wait_limit_s()
        deadline = time.monotonic() + limit
        known = self._known.get(seen.key)
        baseline = known[0] if known is not None else None
        while True:
            lease = shared.take_lease(seen.key)
            if lease is not None:
                break
            outcome = shared.wait_for_holder(seen.key, baseline, deadline)
            if outcome == "rotated":
                adopted, baseline, save_error = self._adopt_from_shared(name, seen.key, pending)
                if adopted is not None and self._usable(adopted, self._clock(), refused):
                    return adopted, save_error
            elif outcome == "timeout":
                raise OAuthError(f"account '{name}': another proxy of the pool is refreshing it and did not "
                                 f"finish within {limit:g} s")
        try:
            with shared.renewing(lease):
                return self._refresh_leased(name, seen, force, self._clock(), pending, refused)
        finally:
            shared.release(lease)

    def _refresh_leased(self, name: str, seen: Account, force: bool, now: float, pending: list[Account],
                        refused: str | None) -> tuple[Account, OSError | AccountsError | None]:
        """Holding the lease: adopt Redis's pair when it is newer and usable, else refresh
        from the newest pair (Redis's, or ours when Redis has none or an older one). A pair
        received is journaled, then written to Redis (CAS), then to the accounts file; a pair
        of ours newer than Redis's is pushed there."""
        shared = self._shared()
        remote = shared.read(seen.key)
        changed: list[Account] = []

        def mutate(doc: AccountsDoc) -> Account:
            adopt_newer(doc, [p for p in map(received_pair, pending) if p is not None])
            current = doc.find(seen.key) or doc.get(name)
            if current is None or current.type != "oauth":
                raise UnknownAccount(name)
            if remote is not None and self._remote_newer(remote, current):
                self._take_pair(current, remote)
                changed.append(_copy(current))
                if self._usable(current, now, refused):
                    return changed[-1]
            else:
                rotated_elsewhere = current.access_token != seen.access_token
                if not self._expiring(current, now) and (rotated_elsewhere or not force):
                    if remote is None or _pair_of(remote) != _pair_of(current):
                        self._push(current, remote)
                    else:
                        self._note_shared(current, remote)
                    return _copy(current)
            base = remote
            try:
                tokens = self._obtain(current, now)
            except NeedsLogin:
                # Refused: our refresh token is dead. In a pool that often means another proxy
                # rotated it (our copy was older than it looked): take the pool's pair instead.
                again = shared.read(seen.key)
                if again is None or again.refresh_token in (None, current.refresh_token):
                    raise
                self._take_pair(current, again)
                changed.append(_copy(current))
                if self._usable(current, now, refused):
                    return changed[-1]
                tokens = self._obtain(current, now)
                base = again
            current.access_token = tokens.access_token
            current.refresh_token = tokens.refresh_token or current.refresh_token
            current.expires_at = tokens.expires_at
            current.obtained_at = int(self._clock() * 1000)
            self._journal(current)
            self._push(current, base)
            changed.append(_copy(current))
            return changed[-1]

        try:
            return self.store.update(mutate), None
        except (OSError, AccountsError) as exc:
            if changed:  # received or adopted: it is in the journal and in Redis
                return changed[-1], exc
            raise

    def _adopt_from_shared(self, name: str, key: str, pending: list[Account]
                           ) -> tuple[Account | None, int | None, OSError | AccountsError | None]:
        """Without the lease: take Redis's pair into the journal and the accounts file when it
        is newer than ours. Returns the account when it now holds Redis's pair (None when
        Redis has none or an older one), the rotation read, and a file error if any."""
        remote = self._shared().read(key)
        if remote is None:
            return None, None, None
        held: list[Account] = []

        def mutate(doc: AccountsDoc) -> None:
            adopt_newer(doc, [p for p in map(received_pair, pending) if p is not None])
            current = doc.find(key) or doc.get(name)
            if current is None or current.type != "oauth":
                return
            if self._remote_newer(remote, current):
                self._take_pair(current, remote)
            if _pair_of(current) == _pair_of(remote):
                self._note_shared(current, remote)
                held.append(_copy(current))

        try:
            self.store.update(mutate)
        except (OSError, AccountsError) as exc:
            return (held[-1] if held else None), remote.rotation, exc
        return (held[-1] if held else None), remote.rotation, None

    def _sync_shared(self, name: str, key: str, pending: list[Account]
                     ) -> tuple[Account | None, OSError | AccountsError | None]:
        """In a worker thread, for `check_shared`: adopt Redis's newer pair, else push ours
        (under the lease; not waited for: the holder writes a pair itself)."""
        adopted, _, save_error = self._adopt_from_shared(name, key, pending)
        if adopted is not None or name in self.needs_login:
            return adopted, save_error
        shared = self._shared()
        lease = shared.take_lease(key)
        if lease is None:
            return None, None
        try:
            with shared.renewing(lease):
                return self._refresh_leased(name, self.get(name), False, self._clock(), pending, None)
        finally:
            shared.release(lease)

    def _push(self, account: Account, remote: SharedPair | None) -> None:
        """Holding the lease, with the pair journaled (`account` is the file's entry being
        written): write it to Redis as the next rotation after the one read, and announce it.
        A Redis gone meanwhile leaves it for later (`check_shared`). When another proxy wrote
        a pair meanwhile (our lease lapsed during a stall), the newer of the two by
        `obtained_at` wins: theirs is taken into the file, or ours written over it."""
        shared = self._shared()
        known = self._known.get(account.key)
        expected = remote.rotation if remote is not None else 0
        rotation = max(expected, known[0] if known is not None else 0) + 1
        try:
            written = shared.write(account.key, expected=expected, rotation=rotation,
                                   access_token=account.access_token or "", refresh_token=account.refresh_token,
                                   expires_at=account.expires_at, obtained_at=account.obtained_at or 0)
            if written is None:
                theirs = shared.read(account.key)
                logger.error("teamclaude: account '%s': another proxy wrote a token pair while this one refreshed "
                             "(its lease lapsed); keeping the newer of the two", account.name)
                if theirs is not None and theirs.obtained_at > (account.obtained_at or 0):
                    self._take_pair(account, theirs)
                    return
                self._push(account, theirs)
                return
        except SharedUnavailable as exc:
            self._unpushed.add(account.name)
            self.shared_status[account.name] = {"error": f"{exc}; this proxy's new pair is pushed when it answers"}
            logger.error("teamclaude: account '%s': %s; the new token pair is saved here and pushed to the "
                         "shared state when it answers", account.name, exc)
            return
        self._unpushed.discard(account.name)
        self._known[account.key] = (rotation, account.access_token or "")
        self.shared_status[account.name] = {"rotation": rotation, "by": shared.instance_id}
        try:
            shared.announce(account.key, rotation)
        except SharedUnavailable as exc:
            logger.warning("teamclaude: account '%s': %s", account.name, exc)

    def _note_shared(self, account: Account, remote: SharedPair) -> None:
        """`account` holds `remote`'s pair now."""
        self._known[account.key] = (remote.rotation, remote.access_token)
        self._unpushed.discard(account.name)
        self.shared_status[account.name] = remote.status()

    def _take_pair(self, account: Account, remote: SharedPair) -> None:
        """Give `account` (in the file being written) Redis's pair, journaled first. Its
        `obtained_at` stays ahead of the pair it replaces, whatever the other machine's clock
        said: the journal and the file order pairs by it."""
        account.access_token = remote.access_token
        account.refresh_token = remote.refresh_token or account.refresh_token
        account.expires_at = remote.expires_at
        account.obtained_at = max(remote.obtained_at, (account.obtained_at or 0) + 1)
        self._journal(account)
        self._note_shared(account, remote)

    def _remote_newer(self, remote: SharedPair, current: Account) -> bool:
        """Is Redis's pair newer than `current`'s? By rotation when `current` holds a pair
        read from Redis; else (ours never went through Redis) by `obtained_at`."""
        if _pair_of(remote) == _pair_of(current):
            return False
        known = self._known.get(current.key)
        if known is not None and known[1] == current.access_token:
            return remote.rotation > known[0]
        return remote.obtained_at > (current.obtained_at or 0)

    def _usable(self, account: Account, now: float, refused: str | None) -> bool:
        """Good to serve with: not expiring, and not the token upstream just refused."""
        return not self._expiring(account, now) and account.access_token != refused

    def _shared(self) -> SharedTokens:
        assert self.shared is not None
        return self.shared

    def _journal(self, account: Account) -> None:
        pair = received_pair(account)
        if pair is None:
            return
        try:
            self.store.journal.append(pair)
        except OSError as exc:
            logger.warning("teamclaude: account '%s': cannot write the token journal %s: %s", account.name,
                           self.store.journal.path, exc.strerror or exc)

    def _obtain(self, account: Account, now: float) -> TokenSet:
        """New tokens for `account`; for an imported one, its source file is the fallback."""
        if not account.refresh_token:
            raise NeedsLogin(account.name)
        try:
            tokens = oauth.refresh(self.settings.oauth_token_url, account.refresh_token,
                                   account_name=account.name, now=now)
        except NeedsLogin:
            if not account.source:
                raise
            tokens = self._from_source(account, now)
        self._obtained.add(account.name)
        return tokens

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


def _pair_of(account: Account | SharedPair) -> tuple[str | None, str | None]:
    return account.access_token, account.refresh_token


def _copy(account: Account) -> Account:
    return dataclasses.replace(account, extra=dict(account.extra))


def _save_error(store: AccountsStore, exc: BaseException) -> str:
    """One line naming the file and the reason (an AccountsError names file and line itself)."""
    if isinstance(exc, OSError):
        return f"cannot write {store.path}: {exc.strerror or exc.__class__.__name__}"
    return str(exc)
