"""CLI commands that point clients at the proxy or talk to it: env, run, status, capacity, api."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from teamclaude.accounts_store import AccountsStore
from teamclaude.cli_common import CommandError, dollars, duration, percent, proxy_status_cell, relative, tokens
from teamclaude.credentials import CredentialManager
from teamclaude.importer import claude_code_has_login
from teamclaude.oauth import OAUTH_BETA
from teamclaude.settings import Settings, load_settings
from teamclaude.statefile import read_state
from teamclaude.urls import connect_host, http_url

PROXY_TIMEOUT_S = 5.0
API_TIMEOUT_S = 60.0
ANTHROPIC_VERSION = "2023-06-01"
CAPACITY_EXIT = {"green": 0, "yellow": 10, "red": 20}
UNREACHABLE_EXIT = 20
START_HINT = "start it with 'teamclaude server'"


_ABSOLUTE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class ProxyUnreachable(CommandError):
    pass


# ---- where the proxy is ----


def proxy_url(settings: Settings) -> str:
    """The URL a client on this machine uses for the proxy.

    A wildcard listen address is reached through loopback; with `port: 0` the port the
    running proxy actually got is read from its state file.
    """
    if settings.port == 0:
        listen = ((read_state(settings.state_file) or {}).get("proxy") or {}).get("listen")
        if isinstance(listen, str) and listen.startswith("http"):
            return listen.rstrip("/")
        raise ProxyUnreachable("the settings say 'port: 0' and no running proxy has written its address yet")
    return http_url(connect_host(settings.listen_host), settings.port)


def client_env(settings: Settings, store: AccountsStore, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables that send Claude Code through the proxy (behaviour §12)."""
    key = store.ensure_proxy_key()
    variables = {
        "ANTHROPIC_BASE_URL": proxy_url(settings),
        "ANTHROPIC_CUSTOM_HEADERS": f"x-teamclaude-key: {key}",
    }
    if not claude_code_has_login(env):
        # Claude Code will not start without a credential of its own; the proxy accepts its key.
        variables["ANTHROPIC_AUTH_TOKEN"] = key
    return variables


def cmd_env(args: argparse.Namespace, out: Console) -> int:
    settings = load_settings(create=True)
    for name, value in client_env(settings, AccountsStore(settings.accounts_file)).items():
        print(f'export {name}="{value}"' if " " in value else f"export {name}={value}")
    return 0


def cmd_run(args: argparse.Namespace, out: Console) -> int:
    settings = load_settings(create=True)
    claude = shutil.which("claude")
    if claude is None:
        raise CommandError(
            "Claude Code ('claude') is not on PATH: install it (npm install -g @anthropic-ai/claude-code), "
            "or run your client after: eval \"$(teamclaude env)\""
        )
    store = AccountsStore(settings.accounts_file)
    variables = client_env(settings, store)
    try:
        # The health endpoint wants the proxy key like every other local endpoint.
        _get_json(variables["ANTHROPIC_BASE_URL"] + "/teamclaude/health", store.ensure_proxy_key(), timeout=1.0)
    except ProxyUnreachable as exc:
        print(f"teamclaude: warning: {exc}", file=sys.stderr)
    argv = list(args.claude_args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(claude, ["claude", *argv], {**os.environ, **variables})
    return 0  # not reached: execve replaces this process


# ---- talking to the running proxy ----


def _get_json(url: str, key: str | None, *, timeout: float = PROXY_TIMEOUT_S) -> Any:
    headers = {"Accept": "application/json"}
    if key:
        headers["x-teamclaude-key"] = key
    # The proxy is local: never route this call through an HTTP(S)_PROXY from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code in (401, 403):
                raise ProxyUnreachable(
                    f"the proxy at {url.rsplit('/teamclaude', 1)[0]} refused the key (HTTP {exc.code}): "
                    "is it using the same accounts file as this command?"
                ) from None
            raise ProxyUnreachable(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProxyUnreachable(f"no proxy answers at {url.rsplit('/teamclaude', 1)[0]} ({reason}); {START_HINT}") from None
    except ValueError:
        raise ProxyUnreachable(f"{url} did not answer JSON: is something else listening there?") from None


def _from_proxy(path: str) -> Any:
    settings = load_settings()
    key = AccountsStore(settings.accounts_file).ensure_proxy_key()
    return _get_json(proxy_url(settings) + path, key)


def cmd_status(args: argparse.Namespace, out: Console) -> int:
    status = _from_proxy("/teamclaude/status")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    render_status(status, out, now=time.time())
    return 0


def cmd_capacity(args: argparse.Namespace, out: Console) -> int:
    try:
        capacity = _from_proxy("/teamclaude/capacity")
    except ProxyUnreachable as exc:
        if args.json:
            print(json.dumps({"verdict": "red", "error": str(exc)}))
        print(f"teamclaude: {exc}", file=sys.stderr)
        return UNREACHABLE_EXIT
    if args.json:
        print(json.dumps(capacity, indent=2))
    else:
        render_capacity(capacity, out, now=time.time())
    return CAPACITY_EXIT.get(str(capacity.get("verdict")), UNREACHABLE_EXIT)


# ---- views ----

_VERDICT_STYLE = {"green": "bold green", "yellow": "bold yellow", "red": "bold red"}


def capacity_line(capacity: dict[str, Any]) -> str:
    verdict = str(capacity.get("verdict", "unknown"))
    style = _VERDICT_STYLE.get(verdict, "bold")
    soonest = capacity.get("soonestResetSec")
    parts = [
        f"[{style}]{verdict.upper()}[/]",
        f"headroom {capacity.get('headroom', '–')}",
        f"live {capacity.get('liveAccounts', '–')}/{capacity.get('total', '–')}",
        f"benched {capacity.get('benched', '–')}",
        f"warm sessions {capacity.get('warmSessions', '–')}",
    ]
    if isinstance(soonest, (int, float)):
        parts.append(f"next reset in {duration(soonest)}")
    held = capacity.get("held")
    if isinstance(held, int) and held > 0:
        oldest, wake = capacity.get("heldOldestSec"), capacity.get("heldNextWakeSec")
        waiting = f"[yellow]{held} held[/]"
        if isinstance(oldest, (int, float)):
            waiting += f" (oldest {duration(oldest)}"
            waiting += f", next look in {duration(wake)})" if isinstance(wake, (int, float)) else ")"
        parts.append(waiting)
    return " · ".join(parts)


def render_capacity(capacity: dict[str, Any], out: Console, *, now: float) -> None:
    out.print(f"capacity: {capacity_line(capacity)}")
    accounts = capacity.get("accounts") or []
    if not accounts:
        return
    table = Table()
    for column in ("account", "status", "live", "in flight", "burn 5h", "cap est 5h", "headroom", "bench left"):
        table.add_column(column, justify="left" if column in ("account", "status") else "right")
    for account in accounts:
        bench = account.get("benchSec") or 0
        table.add_row(
            str(account.get("name", "?")),
            str(account.get("status", "")),
            "yes" if account.get("live") else "no",
            str(account.get("inflight", 0)),
            tokens(account.get("burn5h")),
            tokens(account.get("capEst5h")),
            tokens(account.get("headroomTok")),
            duration(bench) if bench else "",
        )
    out.print(table)


def _window_cell(window: dict[str, Any] | None, now: float) -> str:
    if not isinstance(window, dict):
        return "–"
    cell = percent(window.get("utilization"))
    reset = window.get("reset")
    if isinstance(reset, (int, float)):
        cell += f" (resets {relative(reset, now)})"
    if window.get("status") == "rejected":
        cell = f"[red]{cell}[/]"
    return cell


def render_status(status: dict[str, Any], out: Console, *, now: float) -> None:
    proxy = status.get("proxy") or {}
    started = proxy.get("started_at")
    uptime = f", up {duration(now - started)}" if isinstance(started, (int, float)) else ""
    out.print(
        f"teamclaude {proxy.get('version', '?')} on {proxy.get('listen', '?')} → {proxy.get('upstream', '?')} "
        f"({proxy.get('mode', '?')}, failover {proxy.get('failover', '?')}, pid {proxy.get('pid', '?')}{uptime})",
        highlight=False,
    )
    if proxy.get("config_error"):
        out.print(f"[red]config error:[/] {proxy['config_error']}", highlight=False)
    pinned, current = status.get("pinned"), status.get("current")
    if pinned:
        out.print(f"current account: {pinned} (pinned)", highlight=False)
    elif current:
        out.print(f"current account: {current} (automatic)", highlight=False)
    accounts = status.get("accounts") or []
    if accounts:
        table = Table()
        for column in ("account", "status", "5h", "7d", "in flight", "sessions", "tokens", "cost"):
            table.add_column(column, justify="right" if column in ("in flight", "sessions", "tokens", "cost") else "left")
        for account in accounts:
            windows = account.get("windows") or {}
            usage = account.get("usage") or {}
            table.add_row(
                str(account.get("name", "?")),
                proxy_status_cell(account, now),
                _window_cell(windows.get("5h"), now),
                _window_cell(windows.get("7d"), now),
                f"{account.get('inflight', 0)}/{account.get('inflight_cap', '–')}",
                str(account.get("warm_sessions", 0)),
                tokens(usage.get("tokens")),
                dollars(usage.get("cost_usd")),
            )
        out.print(table)
    else:
        out.print("The proxy has no accounts: add one with 'teamclaude login' or 'teamclaude import'.")
    capacity = status.get("capacity")
    if isinstance(capacity, dict):
        out.print(f"capacity: {capacity_line(capacity)}")
    totals = status.get("totals")
    if isinstance(totals, dict):
        out.print(f"total: {totals.get('requests', 0)} requests · {tokens(totals.get('tokens'))} tokens · "
                  f"{dollars(totals.get('cost_usd'))}", highlight=False)
    clients = [c for c in status.get("clients") or [] if isinstance(c, dict)]
    if clients:
        render_clients(clients, out)
    shared = status.get("shared")
    if isinstance(shared, dict):
        render_shared(shared, out, now=now)


def render_clients(clients: list[dict[str, Any]], out: Console) -> None:
    """Per-client usage since the proxy started (`teamclaude keys`)."""
    table = Table()
    for column in ("client", "in flight", "requests", "refused", "tokens", "cost"):
        table.add_column(column, justify="left" if column == "client" else "right")
    for client in clients:
        limit = client.get("max_concurrent")
        table.add_row(
            escape(str(client.get("name", "?"))),
            f"{client.get('in_flight', 0)}/{limit}" if limit else str(client.get("in_flight", 0)),
            str(client.get("requests", 0)),
            str(client.get("refused", 0)),
            tokens(client.get("tokens")),
            dollars(client.get("cost_usd")),
        )
    out.print(table)


def render_shared(shared: dict[str, Any], out: Console, *, now: float) -> None:
    """The pool's proxies (the `shared_state` setting): Redis health, each proxy and what it serves."""
    since = shared.get("degraded_since")
    if shared.get("healthy"):
        health = "[green]in step[/]"
    else:
        how_long = f" for {duration(now - since)}" if isinstance(since, (int, float)) else ""
        health = (f"[red]DEGRADED{how_long}[/] ({escape(str(shared.get('error') or 'not connected'))}): "
                  "serving from this proxy's own view")
    out.print(f"shared state: {escape(str(shared.get('url', '?')))} · {health}", highlight=False)
    for proxy in shared.get("instances") or []:
        conversations = proxy.get("conversations") or []
        accounts = sorted({str(c.get("account")) for c in conversations})
        seen = proxy.get("seen")
        if proxy.get("stopped"):
            state = "[red]stopped reporting[/]" + (f" {duration(now - seen)} ago" if isinstance(seen, (int, float)) else "")
        else:
            state = (f"{len(conversations)} warm conversation(s)" + (f" on {', '.join(accounts)}" if accounts else "")
                     + f", {proxy.get('inflight', 0)} in flight" + (f", {proxy['held']} held" if proxy.get("held") else ""))
        this = " (this one)" if proxy.get("this") else ""
        out.print(f"  {escape(str(proxy.get('host', '?')))} pid {proxy.get('pid', '?')} "
                  f"{escape(str(proxy.get('listen', '')))}{this}: {state}", highlight=False)
    usage = shared.get("usage") or {}
    if usage:
        requests = sum(int(u.get("requests", 0)) for u in usage.values())
        cost = sum(float(u.get("cost_usd", 0.0)) for u in usage.values())
        used = sum(int(u.get("tokens", 0)) for u in usage.values())
        out.print(f"pool total (every proxy): {requests} requests · {tokens(used)} tokens · {dollars(cost)}",
                  highlight=False)


# ---- api ----


def allowed_origins(settings: Settings) -> set[tuple[str, str]]:
    """(scheme, host:port) pairs credentials may be sent to: the upstream and the OAuth hosts."""
    urls = (settings.upstream, settings.oauth_profile_url, settings.oauth_token_url)
    return {(urlsplit(url).scheme, urlsplit(url).netloc.lower()) for url in urls}


def api_url(settings: Settings, path: str) -> str:
    """The URL for `path`; CommandError unless it is on one of the configured Anthropic hosts."""
    url = path if _ABSOLUTE_URL.match(path) else settings.upstream + "/" + path.lstrip("/")
    parts = urlsplit(url)
    if (parts.scheme.lower(), parts.netloc.lower()) not in allowed_origins(settings):
        hosts = ", ".join(sorted(f"{s}://{h}" for s, h in allowed_origins(settings)))
        raise CommandError(
            f"refusing to send account credentials to {parts.scheme}://{parts.netloc}: "
            f"only the configured Anthropic hosts ({hosts})"
        )
    return url


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would repeat the credential headers to wherever a redirect points: never follow."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib's signature)
        return None


def cmd_api(args: argparse.Namespace, out: Console) -> int:
    settings = load_settings()
    url = api_url(settings, args.path)
    store = AccountsStore(settings.accounts_file)
    doc = store.read()
    usable = [a for a in doc.accounts if not a.disabled]
    if args.account is not None:
        name = args.account
    elif usable:
        name = sorted(usable, key=lambda a: (a.type != "oauth", a.priority))[0].name
    elif doc.accounts:
        raise CommandError("every account is disabled: name one with --account NAME")
    else:
        raise CommandError("no accounts yet: add one with 'teamclaude login' or 'teamclaude import'")
    manager = CredentialManager(store, settings)
    manager.reload(doc)
    account = asyncio.run(manager.fresh(name))
    headers = {"anthropic-version": ANTHROPIC_VERSION, "Accept": "application/json"}
    if account.type == "oauth":
        headers["Authorization"] = f"Bearer {account.access_token}"
        headers["anthropic-beta"] = OAUTH_BETA
    else:
        headers["x-api-key"] = account.api_key or ""
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=API_TIMEOUT_S) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            status, body = exc.code, exc.read()
            if 300 <= status < 400:
                print(f"teamclaude: not following the redirect to {exc.headers.get('location', '?')} "
                      "(credentials go only to the configured Anthropic hosts)", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        raise CommandError(f"cannot reach {urlsplit(url).netloc}: {getattr(exc, 'reason', exc)}") from None
    try:
        print(json.dumps(json.loads(body), indent=2))
    except ValueError:
        print(body.decode("utf-8", "replace"))
    if not 200 <= status < 300:
        print(f"teamclaude: {url} answered HTTP {status} (account '{account.name}')", file=sys.stderr)
        return 1
    return 0
