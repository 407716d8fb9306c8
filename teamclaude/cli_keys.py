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
from teamclaude.settings import load_settings
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

    AccountsStore(settings.accounts_file).update(add)
    limit = f", at most {record.max_concurrent} requests in flight" if record.max_concurrent else ""
    out.print(f"Added client key '{escape(record.name)}'{limit}. {PICKED_UP}", highlight=False)
    out.print("The key is shown only now; the accounts file keeps only its hash. On that machine, "
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

    if store.update(remove) is None:
        names = ", ".join(record.name for record in store.read().client_keys) or "none"
        raise CommandError(f"no client key named '{args.name}' (client keys: {names})")
    out.print(f"Removed client key '{escape(args.name)}': it is refused from now on. {PICKED_UP}", highlight=False)
    return 0


def _list(args: argparse.Namespace, out: Console) -> int:
    settings = load_settings()
    store = AccountsStore(settings.accounts_file)
    records = store.read().client_keys
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
