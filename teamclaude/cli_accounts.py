"""CLI commands that manage the accounts file: login, import, accounts, remove."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from teamclaude.account_controls import BadPriority, Change, parse_priority, set_disabled, set_priority
from teamclaude.accounts_store import Account, AccountsStore, merge_duplicates
from teamclaude.cli_common import CommandError, proxy_status_cell, relative
from teamclaude.credentials import UnknownAccount
from teamclaude.importer import import_account
from teamclaude.login import login_api_key, login_oauth
from teamclaude.paths import display_path
from teamclaude.settings import Settings, load_settings
from teamclaude.statefile import read_state

NO_ACCOUNTS = (
    "No accounts yet. Add one with 'teamclaude login' (browser sign-in), "
    "'teamclaude import' (the account Claude Code uses) or 'teamclaude login --api' (an API key)."
)
PICKED_UP = "A running proxy picks the change up within seconds."


def _store(settings: Settings) -> AccountsStore:
    return AccountsStore(settings.accounts_file)


def _read_api_key() -> str:
    """The key typed at a hidden prompt, or the first line of piped standard input."""
    try:
        key = getpass.getpass("Anthropic API key (input hidden): ") if sys.stdin.isatty() else sys.stdin.readline()
    except EOFError:
        key = ""
    if not key:
        raise CommandError("no API key given: standard input ended before a line was read")
    return key.strip()


def cmd_login(args: argparse.Namespace, out: Console) -> int:
    settings = load_settings(create=True)
    store = _store(settings)
    if args.api:
        key = _read_api_key()
        result = login_api_key(store, key=key, name=args.name)
        verb = "Added" if result.created else "Updated"
        out.print(f"{verb} API-key account '{result.account.name}'. {PICKED_UP}")
        return 0
    read_line = (lambda: input("code> ")) if sys.stdin.isatty() else None
    # soft_wrap: a link must stay one line whatever the terminal width, or copying it breaks.
    result = login_oauth(store, settings, name=args.name, read_line=read_line,
                         out=lambda line: out.print(line, highlight=False, soft_wrap=True))
    account = result.account
    who = account.email or "the account"
    plan = f" ({account.plan})" if account.plan else ""
    verb = "added as" if result.created else "updated:"
    out.print(f"Signed in as {who}{plan}; {verb} '{account.name}'. {PICKED_UP}")
    for message in result.messages:
        out.print(message)
    return 0


def cmd_import(args: argparse.Namespace, out: Console) -> int:
    settings = load_settings(create=True)
    source = Path(args.source).expanduser() if args.source else None
    result = import_account(_store(settings), settings, source=source, name=args.name)
    account = result.account
    plan = f" ({account.plan})" if account.plan else ""
    verb = "Imported" if result.created else "Updated"
    out.print(f"{verb} '{account.name}'{plan} from {display_path(Path(account.source or ''))}. {PICKED_UP}")
    if not result.identified and not args.name:
        out.print("Could not look up which account this is (no profile answer); "
                  "give it a clear name with 'teamclaude import --name NAME'.")
    for message in result.messages:
        out.print(message)
    return 0


def cmd_remove(args: argparse.Namespace, out: Console) -> int:
    settings = load_settings()
    store = _store(settings)
    removed = store.update(lambda doc: doc.remove(args.name))
    if removed is None:
        raise UnknownAccount(args.name)
    out.print(f"Removed '{removed.name}'. {PICKED_UP}")
    return 0


def cmd_disable(args: argparse.Namespace, out: Console) -> int:
    return _control(out, lambda store: set_disabled(store, args.name, True))


def cmd_enable(args: argparse.Namespace, out: Console) -> int:
    return _control(out, lambda store: set_disabled(store, args.name, False))


def cmd_priority(args: argparse.Namespace, out: Console) -> int:
    try:
        priority = parse_priority(args.priority)
    except BadPriority as exc:
        raise CommandError(str(exc)) from None
    return _control(out, lambda store: set_priority(store, args.name, priority))


def _control(out: Console, change: Callable[[AccountsStore], Change]) -> int:
    settings = load_settings()
    if not settings.accounts_file.exists():
        raise CommandError(NO_ACCOUNTS)
    done = change(_store(settings))
    out.print(f"{done.message}. {PICKED_UP}" if done.changed else f"{done.message}.", highlight=False)
    return 0


def cmd_accounts(args: argparse.Namespace, out: Console) -> int:
    settings = load_settings()
    store = _store(settings)
    merged = store.update(merge_duplicates) if store.path.exists() else []
    doc = store.read()
    if not doc.accounts:
        out.print(NO_ACCOUNTS)
        return 0
    live = _live_account_states(settings)
    now = time.time()
    table = Table(title=f"accounts in {display_path(store.path)}", title_justify="left")
    for column in ("name", "type", "plan", "email"):
        table.add_column(column)
    if args.verbose:
        table.add_column("token expires")
        table.add_column("org")
        table.add_column("id")
        table.add_column("source")
    ranked = any(account.priority for account in doc.accounts)
    if ranked:
        table.add_column("priority", justify="right")
    table.add_column("status")
    for account in doc.accounts:
        row = [account.name, account.type, account.plan or "", account.email or ""]
        if args.verbose:
            row += [
                relative(account.expires_at / 1000, now) if account.expires_at else "",
                account.org or "",
                (account.id or "")[:8],
                display_path(Path(account.source)) if account.source else "",
            ]
        if ranked:
            row.append(str(account.priority))
        row.append(account_status(account, live.get(account.name), now))
        table.add_row(*row)
    out.print(table)
    for message in merged:
        out.print(message)
    return 0


def account_status(account: Account, live: dict[str, Any] | None, now: float) -> str:
    """What `teamclaude accounts` says about an account: the running proxy's word, the same
    as `teamclaude status` (cli_common.proxy_status_cell), else what the file alone tells."""
    if account.disabled:
        return "[dim]disabled[/]"
    if account.type == "oauth" and not account.refresh_token and account.expires_at and account.expires_at / 1000 < now:
        return "[red]needs login[/] (token expired, no refresh token)"
    if live is not None:
        return proxy_status_cell(live, now)
    return "[green]ok[/]"


def _live_account_states(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per-account state from the proxy's state file (empty when no proxy wrote one)."""
    state = read_state(settings.state_file) or {}
    accounts = state.get("accounts")
    if not isinstance(accounts, list):
        return {}
    return {a["name"]: a for a in accounts if isinstance(a, dict) and isinstance(a.get("name"), str)}
