"""Rotated OAuth pairs through the real proxy when the accounts file cannot be written (a real
full or read-only file system), is corrupt, or the token endpoint is down; and a short real
`kill -9` loop during refreshes (bench/kill9.py runs the long one)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from bench import kill9
from teamclaude.accounts_store import AccountsStore
from teamclaude.fakeupstream import FakeUpstream, TokenCall
from teamclaude.proxyproc import ProxyProcess
from tests.e2e.cli_runner import run_cli, wait_until
from tests.e2e.harness import (
    ConfigDir,
    apikey_account,
    call,
    oauth_account,
    proxy_status,
    start_proxy,
    write_config,
)
from tests.e2e.test_accounts_e2e import (
    TOKEN_PATH,
    ask,
    expire_in,
    file_mode,
    header,
    oauth_urls,
    served,
)


def _alice_state(proxy: ProxyProcess) -> dict[str, Any]:
    return next(a for a in proxy_status(proxy)["accounts"] if a["name"] == "alice")


def _on_small_fs(tmp_path: Path, small_fs, fake: FakeUpstream, **settings: Any) -> ConfigDir:
    """A config whose accounts file lives on the small file system (settings and state do not)."""
    accounts = small_fs.path / "accounts.yaml"
    cfg = write_config(tmp_path, fake.url, [oauth_account("alice")], **oauth_urls(fake),
                       accounts_file=str(accounts), **settings)
    shutil.copy2(cfg.accounts, accounts)
    cfg.accounts.unlink()
    return _AccountsElsewhere(cfg.root, accounts)


class _AccountsElsewhere(ConfigDir):
    def __init__(self, root: Path, accounts: Path) -> None:
        super().__init__(root)
        self._accounts = accounts

    @property
    def accounts(self) -> Path:  # type: ignore[override]
        return self._accounts


def _unsaved_shown_everywhere(cfg: ConfigDir, proxy: ProxyProcess, reason: str) -> None:
    unsaved = _alice_state(proxy)["token_unsaved"]
    assert unsaved is not None and reason in unsaved["error"], unsaved
    state = wait_until(lambda: json.loads(cfg.state.read_text()) if "token_unsaved\":{" in cfg.state.read_text() else None,
                       "the state file shows the unsaved pair")
    assert state["accounts"][0]["token_unsaved"]["error"] == unsaved["error"]
    for command in (("accounts",), ("status",)):
        shown = run_cli(cfg, *command, COLUMNS="250")
        assert shown.returncode == 0, shown.stderr
        assert "new token not saved" in shown.stdout, shown.stdout


def _saved_and_usable_after_restart(cfg: ConfigDir, proxy: ProxyProcess, fake: FakeUpstream) -> None:
    wait_until(lambda: _alice_state(proxy)["token_unsaved"] is None, "the retry saved the pair", timeout=30)
    assert AccountsStore(cfg.accounts).read().get("alice").refresh_token == fake.account("alice").refresh_token
    assert file_mode(cfg.accounts) == 0o600
    proxy.stop()
    expire_in(cfg, "alice", 0)
    with start_proxy(cfg) as restarted:
        assert ask(restarted) == 200  # refreshed with the saved refresh token
    assert fake.token_calls[-1] == TokenCall("refresh_token", "alice", 200)


def test_refresh_on_a_full_disk_keeps_serving_shows_unsaved_and_lands_when_space_returns(tmp_path, small_fs):
    with FakeUpstream([oauth_account("alice")]) as fake:
        cfg = _on_small_fs(tmp_path, small_fs, fake)
        expire_in(cfg, "alice", 60)  # inside the default refresh_skew_s of 300 s
        with start_proxy(cfg) as proxy:
            small_fs.fill()
            assert ask(proxy) == 200
            rotated = fake.account("alice")
            assert header(served(fake)[-1], "authorization") == f"Bearer {rotated.access_token}"
            assert ask(proxy) == 200  # keeps serving from memory, no second refresh
            assert len(fake.token_calls) == 1
            _unsaved_shown_everywhere(cfg, proxy, "No space left on device")
            assert AccountsStore(cfg.accounts).read().get("alice").refresh_token != rotated.refresh_token
            small_fs.free()
            _saved_and_usable_after_restart(cfg, proxy, fake)


def test_refresh_on_a_read_only_file_system_keeps_serving_and_lands_when_writable(tmp_path, small_fs):
    with FakeUpstream([oauth_account("alice")]) as fake:
        cfg = _on_small_fs(tmp_path, small_fs, fake)
        expire_in(cfg, "alice", 60)
        with start_proxy(cfg) as proxy:
            small_fs.read_only()
            assert ask(proxy) == 200
            assert ask(proxy) == 200
            assert len(fake.token_calls) == 1
            _unsaved_shown_everywhere(cfg, proxy, "Read-only file system")
            small_fs.read_write()
            _saved_and_usable_after_restart(cfg, proxy, fake)


BROKEN_LINE = "    refresh_token: [not, a, string]\n"


def _corrupt(cfg: ConfigDir) -> int:
    """Break alice's entry in the accounts file by hand; returns the broken line's number."""
    lines = cfg.accounts.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if "refresh_token:" in line)
    lines[at] = BROKEN_LINE
    cfg.accounts.write_text("".join(lines))
    return at + 1


def test_a_corrupt_accounts_file_while_a_refresh_is_due_serves_with_the_valid_token_or_fails_over(tmp_path):
    alice, bob = oauth_account("alice"), oauth_account("bob")
    with FakeUpstream([alice, bob]) as fake:
        cfg = write_config(tmp_path, fake.url, [alice, bob], **oauth_urls(fake))
        expire_in(cfg, "alice", 60)  # due for a refresh, still valid for a minute
        with start_proxy(cfg) as proxy:
            call(proxy.url, "POST", "/teamclaude/switch", {"account": "alice"})
            line = _corrupt(cfg)
            where = f"accounts.yaml line {line}"
            wait_until(lambda: where in (proxy_status(proxy)["proxy"]["config_error"] or ""),
                       "the watcher reports the broken file")

            assert ask(proxy) == 200  # the still-valid token, no refresh possible
            assert header(served(fake)[-1], "authorization") == f"Bearer {alice.access_token}"
            assert fake.token_calls == []
            assert where in (_alice_state(proxy)["token_refresh_error"] or "")

            fake.inject("alice", "401")  # upstream refuses alice's token: fail over, not 502
            assert ask(proxy) == 200
            assert served(fake)[-1].account == "bob"
            assert fake.token_calls == []
        assert "internal error" not in "".join(proxy.output)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_token_endpoint_down_with_an_expired_token_is_an_outage_not_a_login_problem(tmp_path):
    alice, key = oauth_account("alice"), apikey_account("key")
    with FakeUpstream([alice, key]) as fake:
        down = f"http://127.0.0.1:{_closed_port()}{TOKEN_PATH}"
        cfg = write_config(tmp_path, fake.url, [alice, key], **{**oauth_urls(fake), "oauth_token_url": down})
        expire_in(cfg, "alice", -10)
        with start_proxy(cfg) as proxy:
            call(proxy.url, "POST", "/teamclaude/switch", {"account": "alice"})
            assert ask(proxy) == 200
            assert served(fake)[-1].account == "key"  # served by the other account
            alice_state = _alice_state(proxy)
            assert not alice_state["needs_login"] and alice_state["status"] != "needs-login"
            assert "cannot reach 127.0.0.1" in alice_state["token_refresh_error"]
            shown = run_cli(cfg, "accounts", COLUMNS="250")
            assert "refresh failing" in shown.stdout and "needs login" not in shown.stdout, shown.stdout
        log = "".join(proxy.output)
        assert "cannot reach 127.0.0.1" in log and "other accounts serve meanwhile" in log
        assert "teamclaude login" not in log


STALL_SCRIPT = Path(__file__).with_name("stall_accounts_write_script.py")


def test_kill_9_after_the_pair_arrived_and_before_the_accounts_file_is_written_loses_nothing(tmp_path):
    with FakeUpstream([oauth_account("alice")]) as fake:
        cfg = write_config(tmp_path, fake.url, [oauth_account("alice")], **oauth_urls(fake))
        expire_in(cfg, "alice", 0)
        flag = tmp_path / "stall"
        flag.write_text("")
        proxy = ProxyProcess(cfg.config, ["--set", "flow_detail=0", "-s", str(STALL_SCRIPT)],
                             env={**cfg.env(), "TEAMCLAUDE_TEST_STALL_ACCOUNTS": str(flag)}).start()
        try:
            client = threading.Thread(target=lambda: _ignore_errors(ask, proxy))
            client.start()
            wait_until(lambda: "stalled" in flag.read_text(), "the refresh reached the accounts file write")
            assert proxy.process is not None
            os.killpg(proxy.process.pid, signal.SIGKILL)
            proxy.process.wait(10)
            client.join(30)
        finally:
            proxy.stop()
        rotated = fake.account("alice")
        assert fake.token_calls == [TokenCall("refresh_token", "alice", 200)]
        assert AccountsStore(cfg.accounts).read().get("alice").refresh_token != rotated.refresh_token

        with start_proxy(cfg) as restarted:  # recovers the pair from the journal
            assert AccountsStore(cfg.accounts).read().get("alice").refresh_token == rotated.refresh_token
            expire_in(cfg, "alice", 0)
            wait_until(lambda: ask(restarted) == 200, "a refresh with the recovered refresh token")
        assert fake.token_calls[-1] == TokenCall("refresh_token", "alice", 200)
        assert not list(cfg.accounts.parent.glob("*.journal")) and not list(cfg.accounts.parent.glob(".*.tmp"))


def _ignore_errors(function, *args) -> None:
    try:
        function(*args)
    except OSError:
        pass  # the proxy was killed under the request


def test_kill_9_during_refreshes_loses_no_received_refresh_token(tmp_path):
    outcomes = kill9.run(kills=5, seed=7, root=tmp_path, echo=False)
    result = kill9.summary(outcomes)
    assert result["refreshes"] >= 5 * 3
    assert result["lost_after_receiving"] == 0, outcomes
    assert result["not_served_after_restart"] == result["lost"], outcomes
    assert result["temp_files_left"] == 0
