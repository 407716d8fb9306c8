"""Carrying out the Deck's keyboard actions, off the render loop.

Switch and reload are POSTs to the running proxy's own endpoints (behaviour §9), authenticated
with the proxy key from its accounts file. Add and remove change the accounts file through
the same store and importer the CLI uses; the proxy notices the change by itself. Every
result becomes one line of the Deck's local activity log. Messages never include the key.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deck.controller import (
    AddApiKey,
    Effect,
    ImportAccount,
    Notice,
    Reload,
    Remove,
    SetPriority,
    Switch,
    ToggleDisabled,
)
from deck.locallog import LocalLog

HTTP_TIMEOUT_S = 10.0
KEY_HEADER = "x-teamclaude-key"


class ActionError(Exception):
    """An action could not be done; the message is one line for the activity log."""


@dataclass(frozen=True)
class Target:
    """Where actions go: the proxy's listen URL and its accounts file (from the state)."""

    base_url: str
    accounts_file: Path | None


def _accounts() -> Any:
    """The accounts-store module, imported late so a partial install still shows state."""
    try:
        from teamclaude import accounts_store
    except ImportError:
        raise ActionError("not available: this install has no accounts store (teamclaude.accounts_store)") from None
    return accounts_store


def _update(target: Target, mutate: Callable[[Any], Any]) -> Any:
    module = _accounts()
    if target.accounts_file is None:
        raise ActionError("no accounts file known: start the proxy, or set accounts_file in the settings")
    try:
        return module.AccountsStore(target.accounts_file).update(mutate)
    except module.AccountsError as exc:
        raise ActionError(str(exc)) from None


def proxy_key(target: Target) -> str:
    module = _accounts()
    if target.accounts_file is None:
        raise ActionError("no accounts file known: start the proxy, or set accounts_file in the settings")
    try:
        key = module.AccountsStore(target.accounts_file).read().proxy_key
    except module.AccountsError as exc:
        raise ActionError(str(exc)) from None
    if not key:
        raise ActionError(f"no proxy key in {target.accounts_file}: run 'teamclaude env' once to create it")
    return key


def post_json(url: str, body: dict[str, Any], key: str, timeout: float = HTTP_TIMEOUT_S) -> tuple[int, Any]:
    """POST JSON; (status, decoded answer or None). Network trouble raises ActionError."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        headers={"content-type": "application/json", KEY_HEADER: key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _decode(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _decode(error.read())
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ActionError(f"proxy unreachable at {url} ({reason})") from None


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _answer_message(status: int, answer: Any) -> str:
    if isinstance(answer, dict):
        if isinstance(answer.get("message"), str):
            return answer["message"]
        error = answer.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    if status in (401, 403):
        return "the proxy refused the key: is this the accounts file of the running proxy?"
    return f"HTTP {status}"


def call_proxy(target: Target, path: str, body: dict[str, Any]) -> str:
    if not target.base_url:
        raise ActionError("the state file names no proxy address; is the proxy running?")
    status, answer = post_json(target.base_url.rstrip("/") + path, body, proxy_key(target))
    message = _answer_message(status, answer)
    if not 200 <= status < 300:
        raise ActionError(f"HTTP {status}: {message}")
    return message


def switch(target: Target, account: str | None) -> str:
    return call_proxy(target, "/teamclaude/switch", {"account": account})


def reload(target: Target) -> str:
    return call_proxy(target, "/teamclaude/reload", {})


def remove(target: Target, name: str) -> str:
    if _update(target, lambda doc: doc.remove(name)) is None:
        raise ActionError(f"no account named {name} in {target.accounts_file}")
    return f"removed {name}; the proxy drops it when it sees the file change"


def control(target: Target, effect: ToggleDisabled | SetPriority) -> str:
    """Disable/enable or set a priority with the CLI's own code (teamclaude.account_controls)."""
    module = _accounts()
    try:
        from teamclaude import account_controls
        from teamclaude.credentials import UnknownAccount
    except ImportError:
        raise ActionError("not available: this install has no account controls") from None
    if target.accounts_file is None:
        raise ActionError("no accounts file known: start the proxy, or set accounts_file in the settings")
    store = module.AccountsStore(target.accounts_file)
    try:
        if isinstance(effect, ToggleDisabled):
            done = account_controls.set_disabled(store, effect.account, None)
        else:
            done = account_controls.set_priority(store, effect.account, account_controls.parse_priority(effect.priority))
    except (UnknownAccount, ValueError) as exc:  # AccountsError and BadPriority are ValueErrors
        raise ActionError(str(exc)) from None
    return done.message + ("; the proxy picks it up by itself" if done.changed else "")


def add_api_key(target: Target, name: str, api_key: str) -> str:
    """Store an API key account with the CLI's own `login --api` code (an empty name: automatic)."""
    module = _accounts()
    try:
        from teamclaude.login import LoginError, login_api_key
    except ImportError:
        raise ActionError("not available: this install has no login module (teamclaude.login)") from None
    if target.accounts_file is None:
        raise ActionError("no accounts file known: start the proxy, or set accounts_file in the settings")
    try:
        result = login_api_key(module.AccountsStore(target.accounts_file), key=api_key, name=name or None)
    except (LoginError, module.AccountsError) as exc:
        raise ActionError(str(exc)) from None
    verb = "added" if result.created else "updated"
    return f"{verb} API key account {result.account.name}; the proxy picks it up by itself"


def import_from_claude_code(target: Target) -> str:
    try:
        from teamclaude.importer import ImportFailed, import_account
        from teamclaude.settings import load_settings
    except ImportError:
        raise ActionError("not available: this install has no importer (teamclaude.importer)") from None
    if target.accounts_file is None:
        raise ActionError("no accounts file known: start the proxy, or set accounts_file in the settings")
    try:
        result = import_account(_accounts().AccountsStore(target.accounts_file), load_settings())
    except (ImportFailed, ValueError, OSError) as exc:
        raise ActionError(f"import failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    verb = "imported" if result.created else "updated"
    extra = "".join(f"; {message}" for message in result.messages)
    return f"{verb} {result.account.name} from Claude Code{extra}"


def describe(effect: Effect) -> str:
    if isinstance(effect, Switch):
        return f"switch to {effect.account or 'automatic'}"
    if isinstance(effect, Reload):
        return "reload"
    if isinstance(effect, Remove):
        return f"remove {effect.account}"
    if isinstance(effect, ToggleDisabled):
        return f"disable/enable {effect.account}"
    if isinstance(effect, SetPriority):
        return f"priority {effect.account}"
    if isinstance(effect, ImportAccount):
        return "import"
    if isinstance(effect, AddApiKey):
        return f"add {effect.name}"
    return "notice"


def perform(effect: Effect, target: Target) -> str:
    """Run one effect synchronously; returns the success message or raises ActionError."""
    if isinstance(effect, Switch):
        return switch(target, effect.account)
    if isinstance(effect, Reload):
        return reload(target)
    if isinstance(effect, Remove):
        return remove(target, effect.account)
    if isinstance(effect, (ToggleDisabled, SetPriority)):
        return control(target, effect)
    if isinstance(effect, ImportAccount):
        return import_from_claude_code(target)
    if isinstance(effect, AddApiKey):
        return add_api_key(target, effect.name, effect.api_key)
    return effect.text


class ActionRunner:
    """Runs effects on worker threads and logs their outcome; the UI never waits."""

    def __init__(self, log: LocalLog, perform: Callable[[Effect, Target], str] = perform) -> None:
        self.log = log
        self._perform = perform
        self._threads: list[threading.Thread] = []

    def submit(self, effect: Effect, target: Target) -> None:
        if isinstance(effect, Notice):
            self.log.add(effect.text)
            return
        self.log.add(f"{describe(effect)}…")
        thread = threading.Thread(target=self._run, args=(effect, target), daemon=True, name="deck-action")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _run(self, effect: Effect, target: Target) -> None:
        try:
            self.log.add(f"{describe(effect)}: {self._perform(effect, target)}")
        except ActionError as exc:
            self.log.add(f"{describe(effect)} failed: {exc}", "error")
        except Exception as exc:  # a worker must always report, never die silently
            self.log.add(f"{describe(effect)} failed: {type(exc).__name__}", "error")

    def wait(self, timeout: float) -> None:
        """Let running actions finish (used at exit and by tests)."""
        for thread in list(self._threads):
            thread.join(timeout)
