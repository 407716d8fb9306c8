"""`teamclaude keys add|list|remove`: per-client keys in the accounts file (behaviour §3.2).

A new key is printed once, with the line that puts it into Claude Code; the file keeps only
its SHA-256.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from teamclaude import client_keys
from teamclaude.accounts_store import AccountsDoc, AccountsStore
from teamclaude.cli_common import CommandError, dollars, tokens
from teamclaude.client_keys import BadClientKey, ClientKey
from teamclaude.gate import KEY_HEADER
from teamclaude.paths import display_path
from teamclaude.settings import Settings, load_settings
from teamclaude.shared import clients as shared_clients
from teamclaude.statefile import read_state

PICKED_UP = "A running proxy picks the change up within seconds."
# A state file written this recently comes from a running proxy (it writes every 2 s at least).
LIVE_S = 10.0


def cmd_keys(args: argparse.Namespace, out: Console) -> int:
    return {"add": _add, "list": _list, "remove": _remove}[args.keys_command](args, out)


def _add(args: argparse.Namespace, out: Console) -> int:
    settings = load_settings(create=True)
    try:
        key, record = client_keys.create(args.name, args.max_concurrent, int(time.time() * 1000))
    except BadClientKey as exc:
        if exc.field == "max_concurrent":
            raise CommandError(f"--max-concurrent must be a positive integer, got {args.max_concurrent}") from None
        raise CommandError(str(exc)) from None

    def add(doc: AccountsDoc) -> None:
        if any(existing.name == record.name for existing in doc.client_keys):
            raise CommandError(f"a client key named '{record.name}' already exists: pick another name, "
                               f"or replace it with 'teamclaude keys remove {record.name}' first")
        doc.client_keys.append(record)

    if settings.shared_state:
        # A pool's keys live in the shared state only, so a removal anywhere revokes the key
        # everywhere (behaviour §14); this machine's file keeps its own keys only.
        add(AccountsStore(settings.accounts_file).read())  # only checks: a name this file has is taken
        _shared(shared_clients.add, settings.shared_state, record)
    else:
        AccountsStore(settings.accounts_file).update(add)
    limit = f", at most {record.max_concurrent} requests in flight" if record.max_concurrent else ""
    out.print(f"Added client key '{escape(record.name)}'{limit}. {PICKED_UP}", highlight=False)
    kept = "the pool's shared state" if settings.shared_state else "the accounts file"
    out.print(f"The key is shown only now; {kept} keeps only its hash. On that machine, "
              "point Claude Code at the proxy (ANTHROPIC_BASE_URL, as 'teamclaude env' prints it) and send the key:",
              highlight=False)
    print(f'export ANTHROPIC_CUSTOM_HEADERS="{KEY_HEADER}: {key}"')
    out.print("Where Claude Code has no login of its own, also set ANTHROPIC_AUTH_TOKEN to the key.", highlight=False)
    return 0


def _remove(args: argparse.Namespace, out: Console) -> int:
    settings = load_settings()
    store = AccountsStore(settings.accounts_file)

    def remove(doc: AccountsDoc) -> ClientKey | None:
        found = next((record for record in doc.client_keys if record.name == args.name), None)
        if found is not None:
            doc.client_keys.remove(found)
        return found

    found_here = store.update(remove) is not None
    found_shared = False
    if settings.shared_state:
        try:
            found_shared = shared_clients.remove(settings.shared_state, args.name)
        except shared_clients.SharedKeysError as exc:
            where = "Removed it from this machine's accounts file, but not from the pool: " if found_here else ""
            raise CommandError(f"{where}{exc}; the pool's proxies accept the key until "
                               f"'teamclaude keys remove {args.name}' succeeds") from None
    if not (found_here or found_shared):
        names = ", ".join(record.name for record in _records(settings, store)) or "none"
        raise CommandError(f"no client key named '{args.name}' (client keys: {names})")
    out.print(f"Removed client key '{escape(args.name)}': it is refused from now on. {PICKED_UP}", highlight=False)
    return 0


def _shared(operation: Any, *args: Any) -> Any:
    try:
        return operation(*args)
    except shared_clients.SharedKeysError as exc:
        raise CommandError(f"{exc}; nothing was changed") from None


def _records(settings: Settings, store: AccountsStore) -> list[ClientKey]:
    """This machine's client keys, and with `shared_state` the pool's (the file's first)."""
    records = list(store.read().client_keys)
    if settings.shared_state:
        known = {record.name for record in records}
        records += [r for r in _shared(shared_clients.read, settings.shared_state) if r.name not in known]
    return records


def _list(args: argparse.Namespace, out: Console) -> int:
    settings = load_settings()
    store = AccountsStore(settings.accounts_file)
    records = _records(settings, store)
    if not records:
        out.print("No client keys yet: add one with 'teamclaude keys add NAME'.")
        return 0
    now = time.time()
    live = _live_clients(read_state(settings.state_file) or {}, now)
    table = Table(title=f"client keys in {display_path(store.path)}", title_justify="left")
    table.add_column("name")
    table.add_column("created")
    table.add_column("max concurrent", justify="right")
    if live:
        for column in ("in flight", "requests", "tokens", "cost"):
            table.add_column(column, justify="right")
    for record in records:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.created_at / 1000))
        row = [record.name, created,
               str(record.max_concurrent) if record.max_concurrent else "–"]
        if live:
            usage = live.get(record.name) or {}
            row += [str(usage.get("in_flight", 0)), str(usage.get("requests", 0)),
                    tokens(usage.get("tokens")), dollars(usage.get("cost_usd"))]
        table.add_row(*(escape(cell) for cell in row))
    out.print(table)
    if live:
        out.print("Usage: since the running proxy started (from its state file).")
    return 0


def _live_clients(state: dict[str, Any], now: float) -> dict[str, dict[str, Any]]:
    """Per-client counts from a running proxy's state file (written within `LIVE_S`; empty
    when no proxy is running)."""
    entries, written_at = state.get("clients"), state.get("written_at")
    if not isinstance(entries, list) or not isinstance(written_at, (int, float)) or now - written_at > LIVE_S:
        return {}
    return {e["name"]: e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)}
