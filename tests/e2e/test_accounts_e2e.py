"""Accounts, tokens and the CLI end to end: the real proxy (mitmdump + addon), the real
`teamclaude` CLI in subprocesses, and the fake Anthropic API with its rotating OAuth tokens."""

from __future__ import annotations

import json
import os
import shlex
import signal
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from teamclaude.accounts_store import Account, AccountsDoc, AccountsError, AccountsStore
from teamclaude.fakeupstream import FakeAccount, FakeUpstream, Recorded, TokenCall
from teamclaude.proxyproc import ProxyProcess
from tests.e2e.cli_runner import run_cli, wait_for_published_address, wait_until
from tests.e2e.harness import (
    PROXY_KEY,
    ConfigDir,
    accounts_yaml_entries,
    apikey_account,
    call,
    message_body,
    oauth_account,
    proxy_status,
    start_proxy,
    write_config,
)
from tests.e2e.held_forwarder import HeldForwarder

TOKEN_PATH = "/v1/oauth/token"


# ---- helpers ----


def oauth_urls(fake: FakeUpstream) -> dict[str, str]:
    return {
        "oauth_token_url": fake.url + TOKEN_PATH,
        "oauth_authorize_url": fake.url + "/oauth/authorize",
        "oauth_profile_url": fake.url + "/api/oauth/profile",
    }


def expire_in(cfg: ConfigDir, name: str, seconds: float) -> None:
    """Set an account's `expires_at` in the accounts file to `seconds` from now."""

    def change(doc: AccountsDoc) -> None:
        doc.get(name).expires_at = int((time.time() + seconds) * 1000)

    AccountsStore(cfg.accounts).update(change)


def add_accounts(cfg: ConfigDir, accounts: list[FakeAccount]) -> None:
    """Append accounts to the accounts file the way the CLI writes it (locked, atomic)."""

    def change(doc: AccountsDoc) -> None:
        doc.accounts.extend(Account(**entry) for entry in accounts_yaml_entries(accounts))

    AccountsStore(cfg.accounts).update(change)


def file_mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def served(fake: FakeUpstream) -> list[Recorded]:
    return [r for r in fake.requests if r.path == "/v1/messages"]


def header(record: Recorded, name: str) -> str | None:
    return next((v for k, v in record.headers if k.lower() == name), None)


def switch(proxy: ProxyProcess, account: str | None) -> tuple[int, dict[str, Any]]:
    status, _, body = call(proxy.url, "POST", "/teamclaude/switch", {"account": account})
    return status, json.loads(body)


def account_names(status: dict[str, Any]) -> set[str]:
    return {a["name"] for a in status["accounts"]}


def ask(proxy: ProxyProcess) -> int:
    return call(proxy.url, "POST", "/v1/messages", message_body())[0]


def serve_each(proxy: ProxyProcess, fake: FakeUpstream, names: list[str]) -> None:
    """One request on each account (pinned in turn), so the proxy has seen them all."""
    for name in names:
        assert switch(proxy, name)[0] == 200
        assert ask(proxy) == 200
        assert served(fake)[-1].account == name
    assert switch(proxy, None)[0] == 200


def capacity_cli(cfg: ConfigDir) -> tuple[int, dict[str, Any]]:
    result = run_cli(cfg, "capacity", "--json")
    return result.returncode, json.loads(result.stdout)


# ---- tokens ----

CONCURRENCY = 50


def test_concurrent_requests_share_one_refresh_and_the_rotated_pair_is_saved(tmp_path):
    alice = oauth_account("alice")
    with FakeUpstream([alice]) as fake, HeldForwarder(fake.url + TOKEN_PATH) as token_hop:
        cfg = write_config(tmp_path, fake.url, [alice], **{**oauth_urls(fake), "oauth_token_url": token_hop.url},
                           probe_gate=False, max_inflight_per_account=CONCURRENCY + 10)
        expire_in(cfg, "alice", 60)  # inside the default refresh_skew_s of 300 s
        with start_proxy(cfg) as proxy, ThreadPoolExecutor(CONCURRENCY) as pool:
            futures = [pool.submit(ask, proxy) for _ in range(CONCURRENCY)]
            try:
                token_hop.wait_for_arrivals(1)
                # Every request has its slot and waits for the refresh the hop is holding.
                wait_until(lambda: proxy_status(proxy)["accounts"][0]["inflight"] == CONCURRENCY,
                           f"{CONCURRENCY} requests in flight on alice")
            finally:
                token_hop.release()
            statuses = [future.result() for future in futures]

    assert statuses == [200] * CONCURRENCY
    assert token_hop.arrivals == 1
    assert fake.token_calls == [TokenCall("refresh_token", "alice", 200)]
    rotated = fake.account("alice")
    assert rotated.access_token != alice.access_token and rotated.refresh_token != alice.refresh_token
    upstream = served(fake)
    assert len(upstream) == CONCURRENCY
    assert {header(r, "authorization") for r in upstream} == {f"Bearer {rotated.access_token}"}
    saved = AccountsStore(cfg.accounts).read().get("alice")
    assert (saved.access_token, saved.refresh_token) == (rotated.access_token, rotated.refresh_token)
    assert file_mode(cfg.accounts) == 0o600


ROUNDS = 8


def api_key_of(name: str) -> str:
    return apikey_account(name).api_key or ""


def test_cli_writes_while_the_proxy_refreshes_lose_and_resurrect_nothing(tmp_path):
    alice = oauth_account("alice")
    # Tokens live 60 s and are refreshed when 3600 s from expiry: every request refreshes.
    with FakeUpstream([alice], token_ttl_s=60) as fake:
        # A short hold budget: a broken refresh fails the requests fast instead of holding them.
        cfg = write_config(tmp_path, fake.url, [alice], **oauth_urls(fake), refresh_skew_s=3600, hold_budget_s=2)
        expire_in(cfg, "alice", 0)
        store = AccountsStore(cfg.accounts)
        kept: set[str] = set()
        removed: set[str] = set()
        statuses: list[int] = []
        problems: list[str] = []
        reads = 0
        stop = threading.Event()

        def traffic(proxy: ProxyProcess) -> None:
            while not stop.is_set():
                try:
                    statuses.append(ask(proxy))
                except OSError as exc:
                    problems.append(f"request failed: {exc!r}")

        def watch_file() -> None:
            nonlocal reads
            while not stop.wait(0.005):
                must_have, must_not_have = {"alice", *kept}, set(removed)  # committed before this read
                try:
                    names = {a.name for a in store.read().accounts}
                except AccountsError as exc:
                    problems.append(f"unreadable: {exc}")
                    continue
                reads += 1
                if must_have - names or must_not_have & names:
                    problems.append(f"read {sorted(names)}: lost {sorted(must_have - names)}, "
                                    f"resurrected {sorted(must_not_have & names)}")
                if file_mode(cfg.accounts) != 0o600:
                    problems.append(f"mode {oct(file_mode(cfg.accounts))}")

        with start_proxy(cfg) as proxy:
            assert switch(proxy, "alice")[0] == 200  # the new API keys never take alice's traffic
            threads = [threading.Thread(target=traffic, args=(proxy,)), threading.Thread(target=watch_file)]
            for thread in threads:
                thread.start()
            try:
                for round_ in range(ROUNDS):
                    name = f"k{round_}"
                    added = run_cli(cfg, "login", "--api", "--name", name, stdin=api_key_of(name) + "\n")
                    assert added.returncode == 0, added.stderr
                    if round_ % 2:
                        kept.add(name)
                        continue
                    gone = run_cli(cfg, "remove", name)
                    assert gone.returncode == 0, gone.stderr
                    removed.add(name)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(30)
            refreshes_during_loop = len(fake.token_calls)
            assert ask(proxy) == 200  # refreshes once more with the saved refresh token

    assert problems == []
    assert reads > ROUNDS
    assert statuses and set(statuses) == {200}
    assert refreshes_during_loop >= ROUNDS
    assert {(c.account, c.status) for c in fake.token_calls} == {("alice", 200)}
    doc = store.read()
    assert {a.name for a in doc.accounts} == {"alice", *kept}
    assert {a.name: a.api_key for a in doc.accounts if a.type == "apikey"} == {n: api_key_of(n) for n in kept}
    assert doc.get("alice").refresh_token == fake.account("alice").refresh_token
    assert file_mode(cfg.accounts) == 0o600


def test_kill_9_after_the_rotated_pair_was_saved_loses_nothing(tmp_path):
    alice = oauth_account("alice")
    # Tokens live 60 s, inside the default refresh_skew_s of 300 s: every request refreshes.
    with FakeUpstream([alice], token_ttl_s=60) as fake:
        cfg = write_config(tmp_path, fake.url, [alice], **oauth_urls(fake))
        expire_in(cfg, "alice", 0)
        fake.inject("alice", "slow_headers", seconds=30)
        outcome: list[object] = []
        proxy = start_proxy(cfg)
        try:
            client = threading.Thread(target=lambda: outcome.append(_attempt(proxy)))
            client.start()
            token_call, in_flight = fake.wait_for_requests(2, timeout=10)[:2]
            assert (token_call.path, in_flight.path) == (TOKEN_PATH, "/v1/messages")
            rotated = fake.account("alice")
            assert header(in_flight, "authorization") == f"Bearer {rotated.access_token}"
            # The new access token is in use upstream: the rotated pair must be on disk already.
            saved = AccountsStore(cfg.accounts).read().get("alice")
            assert saved.refresh_token == rotated.refresh_token != alice.refresh_token
            assert proxy.process is not None
            os.killpg(proxy.process.pid, signal.SIGKILL)
            assert proxy.process.wait(10) == -signal.SIGKILL
            client.join(30)
        finally:
            proxy.stop()
        assert outcome and isinstance(outcome[0], Exception)  # the client saw the proxy die

        with start_proxy(cfg) as restarted:
            assert ask(restarted) == 200

    assert fake.token_calls == [TokenCall("refresh_token", "alice", 200)] * 2
    newest = fake.account("alice")
    assert header(served(fake)[-1], "authorization") == f"Bearer {newest.access_token}"
    assert AccountsStore(cfg.accounts).read().get("alice").refresh_token == newest.refresh_token
    assert file_mode(cfg.accounts) == 0o600


def _attempt(proxy: ProxyProcess) -> object:
    try:
        return ask(proxy)
    except Exception as exc:  # noqa: BLE001 (the test inspects what the client got)
        return exc


# ---- the CLI against the running proxy ----


def test_capacity_exit_codes_follow_the_running_proxy(tmp_path):
    accounts = [oauth_account("alice"), oauth_account("bob")]
    with FakeUpstream(accounts) as fake:
        cfg = write_config(tmp_path, fake.url, accounts, **oauth_urls(fake))
        with start_proxy(cfg) as proxy:
            wait_for_published_address(cfg, proxy)
            serve_each(proxy, fake, ["alice", "bob"])
            code, capacity = capacity_cli(cfg)
            assert (code, capacity["verdict"], capacity["liveAccounts"], capacity["total"]) == (0, "green", 2, 2)
            assert {a["status"] for a in capacity["accounts"]} == {"ok"}

            # Past five_hour_warn (0.75) on both: no unconstrained account is left, headroom 0.
            for name in ("alice", "bob"):
                fake.set_usage(name, five_hour=0.8)
            serve_each(proxy, fake, ["alice", "bob"])
            code, capacity = capacity_cli(cfg)
            assert (code, capacity["verdict"], capacity["headroom"], capacity["benched"]) == (10, "yellow", 0, 0)

        code, capacity = capacity_cli(cfg)
        assert (code, capacity["verdict"]) == (20, "red")
        assert "no proxy answers" in capacity["error"]


def test_capacity_is_yellow_while_an_account_is_benched(tmp_path):
    accounts = [oauth_account("alice"), oauth_account("bob")]
    with FakeUpstream(accounts) as fake:
        cfg = write_config(tmp_path, fake.url, accounts, **oauth_urls(fake))
        with start_proxy(cfg) as proxy:
            wait_for_published_address(cfg, proxy)
            serve_each(proxy, fake, ["alice", "bob"])
            assert capacity_cli(cfg)[0] == 0
            fake.inject("alice", "429_window", window="5h")
            assert switch(proxy, "alice")[0] == 200
            ask(proxy)  # a 429 with the 5h window rejected benches alice (failover may serve it from bob)
            code, capacity = capacity_cli(cfg)
    assert (code, capacity["verdict"], capacity["benched"], capacity["liveAccounts"]) == (10, "yellow", 1, 1)
    assert {a["name"]: a["benched"] for a in capacity["accounts"]} == {"alice": True, "bob": False}


STAND_IN_CLAUDE = """#!{python}
import json, os, sys
print(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}))
"""


def parse_exports(text: str) -> dict[str, str]:
    exported = {}
    for line in text.splitlines():
        words = shlex.split(line)
        assert words[0] == "export" and len(words) == 2, line
        name, _, value = words[1].partition("=")
        exported[name] = value
    return exported


def test_status_env_and_run_point_clients_at_the_running_proxy(tmp_path):
    alice = oauth_account("alice")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text(STAND_IN_CLAUDE.format(python=sys.executable))
    claude.chmod(0o755)
    with FakeUpstream([alice]) as fake:
        cfg = write_config(tmp_path / "cfg", fake.url, [alice], **oauth_urls(fake))
        with start_proxy(cfg) as proxy:
            wait_for_published_address(cfg, proxy)
            assert ask(proxy) == 200

            shown = run_cli(cfg, "status")
            assert shown.returncode == 0, shown.stderr
            assert proxy.url in shown.stdout and "alice" in shown.stdout
            raw = run_cli(cfg, "status", "--json")
            assert raw.returncode == 0, raw.stderr
            status = json.loads(raw.stdout)
            assert proxy.process is not None
            assert (status["proxy"]["listen"], status["proxy"]["pid"]) == (proxy.url, proxy.process.pid)
            assert account_names(status) == {"alice"}
            assert status["totals"]["requests"] == 1

            printed = run_cli(cfg, "env")
            assert printed.returncode == 0, printed.stderr
            assert parse_exports(printed.stdout) == {
                "ANTHROPIC_BASE_URL": proxy.url,
                "ANTHROPIC_CUSTOM_HEADERS": f"x-teamclaude-key: {PROXY_KEY}",
                "ANTHROPIC_AUTH_TOKEN": PROXY_KEY,  # the isolated HOME has no Claude Code login
            }

            ran = run_cli(cfg, "run", "--", "--version", PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
            assert ran.returncode == 0, ran.stderr
            assert "warning" not in ran.stderr  # the health check reached the proxy
            seen = json.loads(ran.stdout)
            assert seen["argv"] == ["--version"]
            assert seen["env"]["ANTHROPIC_BASE_URL"] == proxy.url
            name, _, value = seen["env"]["ANTHROPIC_CUSTOM_HEADERS"].partition(":")
            assert (name.strip(), value.strip()) == ("x-teamclaude-key", PROXY_KEY)

            # Exactly what the client would send: that base URL and that header, nothing else.
            status_code, _, body = call(seen["env"]["ANTHROPIC_BASE_URL"], "POST", "/v1/messages", message_body(),
                                        headers={name.strip(): value.strip()}, key=None)
            assert status_code == 200, body
            assert served(fake)[-1].account == "alice"


def test_switch_pins_session_less_requests_and_reload_picks_up_new_accounts(tmp_path):
    alice, bob, carol, dave = (oauth_account(name) for name in ("alice", "bob", "carol", "dave"))
    with FakeUpstream([alice, bob, carol, dave]) as fake:
        cfg = write_config(tmp_path, fake.url, [alice, bob], **oauth_urls(fake))
        with start_proxy(cfg) as proxy:
            for name in ("alice", "bob"):
                status, answer = switch(proxy, name)
                assert status == 200 and answer["ok"] is True
                assert ask(proxy) == 200
                assert served(fake)[-1].account == name
            assert proxy_status(proxy)["pinned"] == "bob"

            status, answer = switch(proxy, "mallory")
            assert status == 404
            assert answer["type"] == "error" and answer["error"]["type"] == "not_found_error"
            assert "'mallory'" in answer["error"]["message"]
            assert proxy_status(proxy)["pinned"] == "bob"

            add_accounts(cfg, [carol])
            status, _, body = call(proxy.url, "POST", "/teamclaude/reload")
            assert status == 200 and json.loads(body)["message"] == "reloaded: 3 accounts"
            assert account_names(proxy_status(proxy)) == {"alice", "bob", "carol"}
            assert switch(proxy, "carol")[0] == 200
            assert ask(proxy) == 200
            assert served(fake)[-1].account == "carol"

            add_accounts(cfg, [dave])  # no reload call: the file watcher notices by itself
            wait_until(lambda: "dave" in account_names(proxy_status(proxy)), "the proxy to load 'dave'", timeout=5)
