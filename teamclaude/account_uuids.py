"""Each OAuth account's UUID, for `metadata.user_id` (issue 14), on the proxy's event loop.

`teamclaude login` and `teamclaude import` record it (`id` in accounts.yaml). An account
without one (written by hand, or imported while the profile endpoint was unreachable) is
looked up once at the profile endpoint with the account's own access token, and the UUID is
written to the accounts file. Lookups are single-flight per account and run in a worker
thread; a failed one is not repeated for `RETRY_AFTER_S`, so a token without the profile
scope (`claude setup-token`) costs one call, not one per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from teamclaude import oauth
from teamclaude.accounts_store import Account, AccountsDoc, AccountsError, AccountsStore
from teamclaude.settings import Settings
from teamclaude.user_id import UUID

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 600.0
LOOKUP_TIMEOUT_S = 10.0


class AccountUuids:
    """Answers "which UUID does this account have?", looking it up when nobody recorded it."""

    def __init__(self, store: AccountsStore, settings: Settings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.settings = settings
        self._clock = clock
        self._found: dict[str, str] = {}
        self._failed: dict[str, tuple[float, str]] = {}  # name -> (retry after, why)
        self._lookups: dict[str, asyncio.Task[str]] = {}

    def configure(self, store: AccountsStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def uuid(self, account: Account) -> tuple[str | None, str | None]:
        """(the account's UUID, None), or (None, why it is unknown) — also for API-key accounts."""
        if account.type != "oauth":
            return None, f"'{account.name}' is an API-key account"
        if account.id:
            if UUID.fullmatch(account.id):
                return account.id, None
            return None, f"the id of '{account.name}' in the accounts file is not a UUID"
        found = self._found.get(account.name)
        if found is not None:
            return found, None
        failed = self._failed.get(account.name)
        if failed is not None and self._clock() < failed[0]:
            return None, failed[1]
        if not account.access_token:
            return None, f"'{account.name}' has no access token to ask the profile endpoint with"
        task = self._lookups.get(account.name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._look_up(account.name, account.access_token))
            self._lookups[account.name] = task
            task.add_done_callback(lambda done: self._lookup_finished(account.name, done))
        try:
            return await asyncio.shield(task), None
        except oauth.OAuthError as exc:
            return None, _unknown(account.name, exc)

    def _lookup_finished(self, name: str, task: asyncio.Task[str]) -> None:
        if self._lookups.get(name) is task:
            del self._lookups[name]
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, oauth.OAuthError):
            why = _unknown(name, error)
            self._failed[name] = (self._clock() + RETRY_AFTER_S, why)
            logger.warning("teamclaude: %s", why)
        elif error is None:
            self._found[name] = task.result()
            self._failed.pop(name, None)

    async def _look_up(self, name: str, access_token: str) -> str:
        return await asyncio.to_thread(self._look_up_blocking, name, access_token)

    def _look_up_blocking(self, name: str, access_token: str) -> str:
        """In a worker thread: ask the profile endpoint, then record the UUID in the file."""
        profile = oauth.fetch_profile(self.settings.oauth_profile_url, access_token, timeout=LOOKUP_TIMEOUT_S)
        if not profile.id or not UUID.fullmatch(profile.id):
            raise oauth.OAuthError("the profile endpoint named no account UUID")

        def record(doc: AccountsDoc) -> None:
            current = doc.get(name)
            if current is not None and current.type == "oauth" and not current.id:
                current.id = profile.id
                current.email = current.email or profile.email
                current.org = current.org or profile.org
                current.plan = current.plan or profile.plan

        try:
            self.store.update(record)
        except (AccountsError, OSError) as exc:
            logger.warning("teamclaude: could not record the UUID of '%s': %s", name, exc)
        logger.info("teamclaude: looked up the UUID of '%s'", name)
        return profile.id


def _unknown(name: str, error: Exception) -> str:
    return f"the UUID of '{name}' is unknown ({error}; asked again after {RETRY_AFTER_S:g} s)"
