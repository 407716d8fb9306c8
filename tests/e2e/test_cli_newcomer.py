"""A newcomer's pass over the CLI (issue 14 §7), each step as a user runs it: the real
`teamclaude` in a subprocess (a pseudo-terminal where a terminal matters), the real proxy,
the fake Anthropic API."""

from __future__ import annotations

import json
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from teamclaude.demo import write_demo_config
from teamclaude.fake.accounts import demo_accounts
from teamclaude.fakeupstream import FakeUpstream
from tests.deck.ptyrun import PtyProcess
from tests.e2e.cli_runner import cli_env, run_cli, wait_for_published_address, wait_until
from tests.e2e.harness import ConfigDir, call, message_body, oauth_account, start_proxy, write_config


def test_an_unknown_option_prints_the_commands_usage(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9", [])
    result = run_cli(cfg, "accounts", "--bogus")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: teamclaude accounts [-h] [-v]\n")
    assert "teamclaude accounts: error: unrecognized arguments: --bogus" in result.stderr
    assert "COMMAND ..." not in result.stderr


def test_run_with_claudes_options_says_to_use_double_dash(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9", [])
    result = run_cli(cfg, "run", "-p", "hi")
    assert result.returncode == 2 and result.stderr.startswith("usage: teamclaude run")
    assert "options for claude go after --, as in: teamclaude run -- -p hi" in result.stderr
    quoted = run_cli(cfg, "run", "--model", "opus", "-p", "hi there")
    assert "teamclaude run -- --model opus -p 'hi there'" in quoted.stderr


def test_login_prints_the_link_unbroken_and_waits_on_its_own_line(tmp_path: Path) -> None:
    """In an 80-column terminal: the OAuth link is one line however long (copying it must
    give a working link), and "Waiting…" is printed before the paste prompt."""
    with FakeUpstream([oauth_account("alice")]) as fake:
        cfg = write_config(tmp_path, fake.url, [], oauth_token_url=fake.url + "/v1/oauth/token",
                           oauth_authorize_url=fake.url + "/oauth/authorize",
                           oauth_profile_url=fake.url + "/api/oauth/profile")
        env = cli_env(cfg, BROWSER="", DISPLAY="", WAYLAND_DISPLAY="", TERM="xterm")
        login = PtyProcess([sys.executable, "-m", "teamclaude.cli", "login"], env, columns=80, rows=24)
        try:
            assert login.read_until(b"code> "), login.output.decode(errors="replace")
            output = login.output.decode()
            links = re.findall(r"http://127\.0\.0\.1:\d+/oauth/authorize\?\S+", output)
            assert len(links) == 2 and all(len(link) > 80 for link in links)
            for link in links:
                assert f"  {link}\r\n" in output  # whole, on its own line, no hard wrap
            waiting = output.index("Waiting up to")
            assert output[waiting - 2:waiting] == "\r\n" and output.index("code> ") > waiting
            login.send(b"\x03")
            assert login.wait() == 130
        finally:
            if login.process.poll() is None:
                login.process.send_signal(signal.SIGKILL)
                login.process.wait()


def test_tables_are_not_cut_at_80_columns_outside_a_terminal(tmp_path: Path) -> None:
    long_name = oauth_account("a-rather-long-account-name-for-the-team-pool")
    long_name.email = "a-rather-long-account-name-for-the-team-pool@example-company.com"
    cfg = write_config(tmp_path, "http://127.0.0.1:9", [long_name])
    result = run_cli(cfg, "accounts", COLUMNS="")
    assert result.returncode == 0
    row = next(line for line in result.stdout.splitlines() if long_name.name in line)
    assert long_name.email in row and "…" not in result.stdout and len(row) > 80


def test_accounts_and_status_say_the_same_word(tmp_path: Path) -> None:
    """Before any answer the proxy knows nothing of an account's windows: both say unknown
    (accounts used to say ok); after one answer both say ok."""
    alice = oauth_account("alice")
    with FakeUpstream([alice]) as fake:
        cfg = write_config(tmp_path, fake.url, [alice])
        with start_proxy(cfg) as proxy:
            wait_for_published_address(cfg, proxy)

            def words() -> tuple[str, str]:
                accounts = run_cli(cfg, "accounts", COLUMNS="")
                status = run_cli(cfg, "status", COLUMNS="")
                assert accounts.returncode == 0 and status.returncode == 0, (accounts.stderr, status.stderr)
                row = next(line for line in accounts.stdout.splitlines() if "alice" in line)
                status_row = next(line for line in status.stdout.splitlines() if line.lstrip("│ ").startswith("alice"))
                return row, status_row

            row, status_row = words()
            assert "unknown (no answer yet)" in row and "unknown (no answer yet)" in status_row
            assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
            _wait_for_status(cfg, "alice", "ok")
            row, status_row = words()
            assert re.search(r"│ ok\s+│", row) and re.search(r"│ ok\s+│", status_row)


def _wait_for_status(cfg: ConfigDir, name: str, word: str) -> None:
    def seen() -> bool:
        try:
            state = json.loads(cfg.state.read_text())
        except (OSError, ValueError):
            return False
        return any(a.get("name") == name and a.get("status") == word for a in state.get("accounts", []))

    wait_until(seen, f"{name} to be {word} in the state file")


def test_api_models_the_example_of_its_help_works_against_the_demo(tmp_path: Path) -> None:
    accounts = demo_accounts(time.time())
    with FakeUpstream(accounts) as fake:
        config, _ = write_demo_config(tmp_path, fake.url, 0, accounts)
        cfg = ConfigDir(tmp_path)
        env = {"TEAMCLAUDE_CONFIG": str(config)}
        help_text = run_cli(cfg, "api", "--help").stdout
        assert "/v1/models" in help_text and "/api/oauth/usage" in help_text
        for path in ("/v1/models", "/api/oauth/usage"):
            result = run_cli(cfg, "api", path, **env)
            assert result.returncode == 0, result.stderr
        models = json.loads(run_cli(cfg, "api", "/v1/models", **env).stdout)
        assert models["has_more"] is False and models["data"]
        assert models["first_id"] == models["data"][0]["id"] and models["last_id"] == models["data"][-1]["id"]
        for model in models["data"]:
            assert set(model) == {"type", "id", "display_name", "created_at"} and model["type"] == "model"
        page = json.loads(run_cli(cfg, "api", "/v1/models?limit=2", **env).stdout)
        assert len(page["data"]) == 2 and page["has_more"] is True
        after = json.loads(run_cli(cfg, "api", f"/v1/models?limit=2&after_id={page['last_id']}", **env).stdout)
        assert after["data"][0]["id"] == models["data"][2]["id"]
        # Without a credential the fake refuses like the real API.
        try:
            urllib.request.urlopen(fake.url + "/v1/models", timeout=10).close()
        except urllib.error.HTTPError as refused:
            assert refused.code == 401
            refused.close()
        else:
            raise AssertionError("GET /v1/models without a credential was answered")
