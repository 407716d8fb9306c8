"""The proxy's state and operations, apart from mitmproxy: settings, accounts, router, state file.

`teamclaude_addon.py` turns flows into calls on this object. Everything here runs on the
proxy's event loop; file reads and writes go through worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routing.engine import Router
from routing.failures import Streaks
from routing.rules import PIN_HEADER, Refusal, admit
from routing.types import RequestInfo
from routing.usage import default_prices
from teamclaude import __version__, account_controls
from teamclaude.account_uuids import AccountUuids
from teamclaude.accounts_store import AccountsDoc, AccountsError, AccountsStore
from teamclaude.activity import ActivityLog
from teamclaude.aio import raise_if_cancelled
from teamclaude.client_keys import ClientKey, Keyring
from teamclaude.client_usage import ClientUsage
from teamclaude.credentials import CredentialManager
from teamclaude.hold import Holds, Waker
from teamclaude.metrics import Metrics
from teamclaude.paths import display_path, fingerprint
from teamclaude.quota import PoolWindow, pool_windows, quota_document
from teamclaude.settings import Settings, SettingsError, load_settings
from teamclaude.shared.connection import new_instance_id
from teamclaude.shared.state import SharedState
from teamclaude.statefile import StateWriter, bound_conversations, read_state

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0


class ConfigError(Exception):
    """Settings or accounts could not be loaded; `str()` is the one-line reason."""


def _one_line(text: str) -> str:
    """Control characters from a hostile file shown escaped: one line, no terminal escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(frozen=True)
class Loaded:
    settings: Settings
    accounts: AccountsDoc
    settings_fingerprint: tuple[int, int, int] | None
    accounts_fingerprint: tuple[int, int, int] | None


def load_config(config_path: Path | None, *, first_run: bool = True) -> Loaded:
    """Read settings and accounts (generating the proxy key on the first run). Blocking.

    Every failure becomes a one-line `ConfigError` naming the file: a hostile file must
    not show a traceback (whose frames could hold secrets) nor stop the running proxy.
    On a reload an accounts file without a proxy key is refused rather than given a new
    key: it was truncated or replaced, and a new key would lock every client out.
    """
    reading = Path(config_path) if config_path is not None else None
    try:
        settings = load_settings(config_path)
        reading = settings.accounts_file
        settings_fingerprint = fingerprint(settings.path)
        store = AccountsStore(settings.accounts_file)
        if first_run:
            store.ensure_proxy_key()
            _recover_tokens(store)
        accounts_fingerprint = fingerprint(settings.accounts_file)
        accounts = store.read()
        if not accounts.proxy_key:
            raise ConfigError(
                f"{display_path(settings.accounts_file)}: no 'proxy_key' (was the file truncated or replaced?); "
                "restore it, or restart the proxy to generate a new key"
            )
    except (SettingsError, AccountsError) as exc:
        raise ConfigError(_one_line(str(exc))) from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration: {exc.strerror or exc} ({exc.filename})") from None
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 (a parser bug on hostile input: report it in one line)
        where = display_path(reading) if reading is not None else "the settings file"
        raise ConfigError(f"{where}: cannot be read ({exc.__class__.__name__}); fix or replace the file") from None
    return Loaded(settings, accounts, settings_fingerprint, accounts_fingerprint)


def keyring_of(accounts: AccountsDoc, shared: Sequence[ClientKey] = ()) -> Keyring:
    """The keys the proxy accepts: the proxy key, the file's client keys and the pool's
    (shared state; a name in the file wins)."""
    return Keyring(accounts.proxy_key or "", [*accounts.client_keys, *shared])


def _recover_tokens(store: AccountsStore) -> None:
    """At start: adopt token pairs a killed or failed write left behind (journal, temp files).
    A file that cannot be written now keeps them where they are for the next write."""
    try:
        recovered = store.recover()
    except OSError as exc:
        logger.warning("teamclaude: cannot write %s at start (%s); token pairs left by an interrupted "
                       "write are adopted by the next write", display_path(store.path), exc.strerror or exc)
        return
    for name in recovered:
        logger.warning("teamclaude: account '%s': recovered the newest token pair left by an interrupted write", name)


class Service:
    def __init__(self, loaded: Loaded, *, mode: str = "reverse", clock=time.time) -> None:
        self.clock = clock
        self.settings = loaded.settings
        self.accounts = loaded.accounts
        self.shared_client_keys: list[ClientKey] = []
        self._adopting: set[asyncio.Task[bool]] = set()
        self.keys = keyring_of(self.accounts)
        self.clients = ClientUsage()
        self._fingerprints = (loaded.settings_fingerprint, loaded.accounts_fingerprint)
        self.store = AccountsStore(self.settings.accounts_file)
        self.router = Router(
            self.settings.routing_config(),
            [a.to_spec() for a in self.accounts.accounts],
            default_prices(),
        )
        self.instance_id = new_instance_id()  # this proxy among the pool's (shared state)
        self.credentials = CredentialManager(self.store, self.settings, instance_id=self.instance_id)
        self.credentials.reload(self.accounts)
        self.account_uuids = AccountUuids(self.store, self.settings)
        self.activity = ActivityLog()
        self.mode = mode
        self.listen: str = self.settings.listen_url
        self.started_at = clock()
        self.config_error: str | None = None
        self.writer = StateWriter(self.settings.state_file, self.snapshot)
        self.waker = Waker()
        self.holds = Holds()
        self.streaks = Streaks()
        self.metrics = Metrics(self)
        self.credentials.on_refresh = self.metrics.token_refresh
        self._restore_persistent()
        # The pool's other proxies (the `shared_state` setting); None: this proxy alone.
        self.shared: SharedState | None = None
        if self.settings.shared_state:
            self.shared = SharedState(self.settings.shared_state, self.router, clock, self.changed,
                                      describe=self.describe_instance, on_clients=self._take_shared_client_keys,
                                      on_token=self._adopt_shared_token, instance_id=self.instance_id)

    def _adopt_shared_token(self, account_key: str) -> None:
        """Another proxy announced a new pair for an account: take it now (not at expiry)."""
        task = asyncio.get_running_loop().create_task(self.credentials.adopt_shared(account_key))
        self._adopting.add(task)  # held until done, so it is not collected mid-run
        task.add_done_callback(self._adopting.discard)

    def _take_shared_client_keys(self, records: list[ClientKey]) -> None:
        """The pool's client keys as Redis has them now (kept while Redis is away)."""
        if records != self.shared_client_keys:
            self.shared_client_keys = records
            self.keys = keyring_of(self.accounts, records)
            self.changed()

    def describe_instance(self) -> dict[str, Any]:
        """This proxy as the others see it (shared state): where it listens, what it serves."""
        now = self.clock()
        conversations = self.router.warm_conversations(now, limit=50)
        return {
            "host": os.uname().nodename, "pid": os.getpid(), "version": __version__, "listen": self.listen,
            "started_at": self.started_at, "held": self.holds.summary(now)["count"],
            "inflight": self.router.local_inflight(),
            "conversations": conversations,
        }

    # ----- identity -----
    @property
    def proxy_key(self) -> str:
        return self.accounts.proxy_key or ""

    def secrets(self) -> list[str]:
        """Every secret the proxy holds now (for scrubbing logs and exports; never shown)."""
        found = [self.proxy_key]
        for listed in self.accounts.accounts:
            try:
                live = self.credentials.get(listed.name)  # holds tokens refreshed since the file was read
            except LookupError:
                live = listed
            for account in (listed, live):
                found += [account.access_token or "", account.refresh_token or "", account.api_key or ""]
        return [secret for secret in found if secret]

    def account(self, name: str):
        for account in self.accounts.accounts:
            if account.name == name:
                return account
        return None

    # ----- state file -----
    def _restore_persistent(self) -> None:
        previous = read_state(self.settings.state_file)
        if previous and isinstance(previous.get("persist"), dict):
            self.router.restore_persistent(previous["persist"], self.clock())

    def changed(self) -> None:
        """Something a reader or a held request may care about changed."""
        self.writer.mark_dirty()
        self.waker.notify()

    # ----- failures and holds -----
    def no_account_message(self) -> str:
        """The 503 text when no account can serve and waiting cannot help: a login only where
        one is needed; an account whose refresh fails for another reason (token endpoint
        down, accounts file unusable) is an outage that a later request retries."""
        failing = {name: error for name, error in self.credentials.refresh_errors.items()
                   if name not in self.credentials.needs_login}
        needs_login = sorted(self.credentials.needs_login | {
            line["name"] for line in self.router.capacity(self.clock()).get("accounts", [])
            if line.get("status") == "needs-login"
        })
        parts = ["teamclaude: no account can serve this request and none will free up by waiting"]
        for name in sorted(failing):
            parts.append(f"'{name}' cannot refresh its token: {failing[name]}; a later request tries again")
        if needs_login:
            parts.append(f"{', '.join(repr(n) for n in needs_login)} need a new login: run `teamclaude login`")
        if len(parts) == 1:
            parts.append("see `teamclaude accounts`")
        return ". ".join(parts) + "."

    def admit(self, info: RequestInfo, headers) -> RequestInfo | Refusal:
        """`info` restricted by the client's pin and the model rules (`routing.rules`), or the
        refusal to answer; the pin header is taken out of `headers` (it never goes upstream)."""
        pins = headers.get_all(PIN_HEADER)
        if pins:
            del headers[PIN_HEADER]
        if len(set(pins)) > 1:
            return Refusal(400, "invalid_request_error", f"teamclaude: {PIN_HEADER} is sent with different names")
        pin = pins[0].strip() if pins else None
        specs = [account.to_spec() for account in self.accounts.accounts]
        return admit(info, pin or None, self.settings.model_rules(), specs)

    def serving_count(self, request: RequestInfo) -> int:
        """How many configured accounts may serve `request`."""
        return sum(1 for account in self.accounts.accounts if request.allows(account.name))

    def soonest_free(self, now: float, request: RequestInfo | None = None) -> tuple[str, float] | None:
        """(account, when) of the account that frees up first (of those that may serve
        `request`), from the engine's snapshot."""
        best: tuple[str, float] | None = None
        threshold = self.settings.switch_threshold
        for account in self.router.snapshot(now).get("accounts", []):
            if account.get("disabled") or account.get("needs_login"):
                continue
            if request is not None and not request.allows(account["name"]):
                continue
            moments = [account.get("bench_until") or 0.0]
            for window in (account.get("windows") or {}).values():
                blocked = window.get("status") == "rejected" or (window.get("utilization") or 0) >= threshold
                if blocked and window.get("reset"):
                    moments.append(window["reset"])
            free_at = max(moments)
            if free_at > now and (best is None or free_at < best[1]):
                best = (account["name"], free_at)
        return best

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        engine = self.router.snapshot(now)
        tokens = {a.name: a.expires_at for a in self.credentials.accounts() if a.type == "oauth"}
        engine["capacity"] = self._with_holds(engine.get("capacity") or {}, now)
        bound_conversations(engine.get("sessions") or [])
        for account in engine.get("accounts", []):
            account["token_expires_at_ms"] = tokens.get(account.get("name"))  # of the pair in use
            account.update(self.credentials.account_state(account.get("name", "")))
            if account.get("name") in self.credentials.needs_login:
                account["needs_login"] = True
                account["status"] = "needs-login"
        return {
            "proxy": self.proxy_info(),
            **engine,
            "shared": self.shared.status() if self.shared is not None else None,
            "activity": self.activity.lines(),
            "clients": self.clients.snapshot(self.keys.clients),
            "persist": self.router.export_persistent(now),
        }

    def proxy_info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started_at,
            "listen": self.listen,
            "upstream": self.settings.upstream,
            "mode": self.mode,
            "failover": self.settings.failover,
            "config_file": str(self.settings.path),
            "accounts_file": str(self.settings.accounts_file),
            "config_error": self.config_error,
            "state_error": self.writer.last_error,
        }

    # ----- endpoint operations -----
    def status(self) -> dict[str, Any]:
        snapshot = self.snapshot()
        snapshot.pop("persist", None)
        return snapshot

    def capacity(self) -> dict[str, Any]:
        now = self.clock()
        return self._with_holds(self.router.capacity(now), now)

    def quota(self) -> dict[str, Any]:
        """The pool's quota per window (`GET /teamclaude/quota`, teamclaude.quota)."""
        now = self.clock()
        return quota_document(self._quota_accounts(now), now)

    def pool_windows(self) -> dict[str, PoolWindow]:
        now = self.clock()
        return pool_windows(self._quota_accounts(now), now)

    def _quota_accounts(self, now: float) -> list[dict[str, Any]]:
        accounts = self.router.quota_accounts(now)
        for account in accounts:
            if account["name"] in self.credentials.needs_login:
                account["needs_login"] = True
        return accounts

    def _with_holds(self, capacity: dict[str, Any], now: float) -> dict[str, Any]:
        """The engine's capacity with the requests held now; never green while any is."""
        holds = self.holds.summary(now)
        next_wake = holds["next_wake_at"]
        capacity.update({
            "held": holds["count"], "heldOldestSec": holds["oldest_wait_s"],
            "heldNextWakeSec": round(max(0.0, next_wake - now), 1) if next_wake is not None else None,
        })
        if holds["count"] and capacity.get("verdict") == "green":
            capacity["verdict"] = "yellow"
        return capacity

    def switch(self, name: str | None) -> str:
        """Pin the current account for session-less requests (None = automatic)."""
        if name is not None and self.account(name) is None:
            known = ", ".join(a.name for a in self.accounts.accounts) or "none"
            raise KeyError(f"no account named {name!r} (accounts: {known})")
        self.router.pin(name)
        self.changed()
        return f"current account pinned to {name}" if name else "current account chosen automatically"

    # ----- operator controls (teamclaude.account_controls) -----
    async def set_disabled(self, name: str, disabled: bool, config_path: Path | None) -> str:
        change = await asyncio.to_thread(account_controls.set_disabled, self.store, name, disabled)
        return await self._applied(change, config_path)

    async def set_priority(self, name: str, priority: int, config_path: Path | None) -> str:
        change = await asyncio.to_thread(account_controls.set_priority, self.store, name, priority)
        return await self._applied(change, config_path)

    async def _applied(self, change: account_controls.Change, config_path: Path | None) -> str:
        """The file is written: apply it now rather than at the watcher's next look."""
        if not change.changed:
            return change.message
        try:
            await self.reload(config_path)
        except ConfigError as exc:
            return f"{change.message} in the accounts file, not applied yet: {exc}"
        return change.message

    # ----- hot reload -----
    async def reload(self, config_path: Path | None) -> str:
        """Re-read both files now; a bad file keeps the last good configuration."""
        try:
            loaded = await asyncio.to_thread(load_config, config_path, first_run=False)
        except ConfigError as exc:
            self._report_config_error(str(exc))
            raise
        self.apply(loaded)
        return f"reloaded: {len(self.accounts.accounts)} accounts"

    def apply(self, loaded: Loaded) -> None:
        old = self.settings
        new = loaded.settings
        restart = [key for key in ("listen_host", "port", "upstream", "shared_state") if getattr(old, key) != getattr(new, key)]
        if restart:
            logger.warning("teamclaude: %s changed; restart the proxy to apply it", ", ".join(restart))
        self.settings = new
        self.router.configure(new.routing_config())
        if new.accounts_file != old.accounts_file:
            self.store = AccountsStore(new.accounts_file)
        self.credentials.configure(self.store, new)
        self.account_uuids.configure(self.store, new)
        self.writer.path = new.state_file
        self.accounts = loaded.accounts
        self.keys = keyring_of(self.accounts, self.shared_client_keys)
        self.router.set_accounts([a.to_spec() for a in self.accounts.accounts])
        self.credentials.reload(self.accounts)
        for account in self.accounts.accounts:
            self.router.mark_needs_login(account.name, account.name in self.credentials.needs_login)
        self._fingerprints = (loaded.settings_fingerprint, loaded.accounts_fingerprint)
        if self.config_error:
            logger.info("teamclaude: configuration is valid again")
        self.config_error = None
        self.changed()

    def _report_config_error(self, message: str) -> None:
        if message != self.config_error:
            logger.error("teamclaude: %s (keeping the last good configuration)", message)
        self.config_error = message
        self.activity.add(t=self.clock(), level="error", note=message, method="", path="", account=None, status=None)
        self.changed()

    def files_changed(self) -> bool:
        current = (fingerprint(self.settings.path), fingerprint(self.settings.accounts_file))
        return current != self._fingerprints

    async def watch(self, config_path: Path | None) -> None:
        """Poll both files and apply edits while running."""
        while True:
            raise_if_cancelled()
            await asyncio.sleep(WATCH_INTERVAL_S)
            if not await asyncio.to_thread(self.files_changed):
                continue
            try:
                await self.reload(config_path)
            except ConfigError:
                self._fingerprints = (
                    fingerprint(self.settings.path),
                    fingerprint(self.settings.accounts_file),
                )
