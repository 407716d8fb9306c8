from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from teamclaude import cli_proxy
from teamclaude import login as login_module
from teamclaude.accounts_store import Account, AccountsDoc, AccountsStore
from teamclaude.cli import main
from teamclaude.fakeupstream import FakeUpstream

from .conftest import ALICE_ACCESS, ALICE_REFRESH

REPO = Path(__file__).resolve().parents[2]


class Env:
    def __init__(self, root: Path, fake: FakeUpstream) -> None:
        self.root = root
        self.fake = fake
        self.config = root / "cfg" / "config.yaml"
        self.state = root / "state.json"
        self.claude_dir = root / "claude"
        self.store = AccountsStore(root / "cfg" / "accounts.yaml")

    def write_config(self, **extra: Any) -> None:
        values = {
            "state_file": str(self.state),
            "upstream": self.fake.url,
            "oauth_token_url": self.fake.url + "/v1/oauth/token",
            "oauth_authorize_url": self.fake.url + "/oauth/authorize",
            "oauth_profile_url": self.fake.url + "/api/oauth/profile",
            **extra,
        }
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(values))

    def add_alice(self) -> None:
        alice = Account(name="alice", type="oauth", id=self.fake.account("alice").uuid, access_token=ALICE_ACCESS,
                        refresh_token=ALICE_REFRESH, expires_at=int((time.time() + 5400) * 1000),
                        email="alice@example.com", plan="max")
        self.store.update(lambda doc: doc.accounts.append(alice))


@pytest.fixture
def env(tmp_path: Path, fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> Env:
    environment = Env(tmp_path, fake)
    environment.write_config()
    monkeypatch.setenv("TEAMCLAUDE_CONFIG", str(environment.config))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(environment.claude_dir))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return environment


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- env and run ----


def test_env_prints_exports_and_keeps_the_key(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "env")
    key = env.store.read().proxy_key
    assert code == 0 and key and key.startswith("tc-")
    assert out.splitlines() == [
        "export ANTHROPIC_BASE_URL=http://127.0.0.1:3456",
        f'export ANTHROPIC_CUSTOM_HEADERS="x-teamclaude-key: {key}"',
        f"export ANTHROPIC_AUTH_TOKEN={key}",
    ]
    assert run_cli(capsys, "env")[1] == out


@pytest.mark.parametrize(("listen_host", "base_url"), [
    ("::1", "http://[::1]:4000"), ("::", "http://[::1]:4000"), ("0.0.0.0", "http://127.0.0.1:4000"),
])
def test_env_points_at_an_ipv6_listener_with_brackets(env: Env, capsys: pytest.CaptureFixture[str],
                                                       listen_host: str, base_url: str) -> None:
    env.write_config(listen_host=listen_host, port=4000)
    assert f"export ANTHROPIC_BASE_URL={base_url}" in run_cli(capsys, "env")[1].splitlines()


def test_env_leaves_claude_codes_own_login_alone(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.claude_dir.mkdir()
    (env.claude_dir / ".credentials.json").write_text(json.dumps({"claudeAiOauth": {
        "accessToken": "sk-ant-oat01-cc", "refreshToken": "sk-ant-ort01-cc", "expiresAt": 1}}))
    env.write_config(listen_host="0.0.0.0", port=4000)
    code, out, _ = run_cli(capsys, "env")
    assert "ANTHROPIC_AUTH_TOKEN" not in out
    assert "export ANTHROPIC_BASE_URL=http://127.0.0.1:4000" in out


def test_env_creates_the_settings_file_from_the_example(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.config.unlink()
    assert run_cli(capsys, "env")[0] == 0
    assert env.config.read_text().startswith("# teamclaude settings.")


def stand_in_claude(directory: Path) -> Path:
    directory.mkdir()
    script = directory / "claude"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, open(os.environ['DUMP_TO'], 'w'))\n"
    )
    script.chmod(0o755)
    return directory


def test_run_execs_claude_with_the_proxy_environment(env: Env, tmp_path: Path) -> None:
    bin_dir = stand_in_claude(tmp_path / "bin")
    dump = tmp_path / "dump.json"
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "DUMP_TO": str(dump)}
    result = subprocess.run([sys.executable, "-m", "teamclaude.cli", "run", "--", "--model", "opus", "-p", "hi"],
                            env=environment, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    seen = json.loads(dump.read_text())
    key = env.store.read().proxy_key
    assert seen["argv"] == ["--model", "opus", "-p", "hi"]
    assert seen["env"]["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:3456"
    assert seen["env"]["ANTHROPIC_CUSTOM_HEADERS"] == f"x-teamclaude-key: {key}"
    assert seen["env"]["ANTHROPIC_AUTH_TOKEN"] == key
    assert "no proxy answers at http://127.0.0.1:3456" in result.stderr
    assert key not in result.stderr + result.stdout


def test_run_without_claude_says_how_to_install(env: Env, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = run_cli(capsys, "run")
    assert code == 1
    assert err.strip().startswith("teamclaude: Claude Code ('claude') is not on PATH: install it")


# ---- status and capacity against a stand-in proxy ----


class StandIn:
    def __init__(self, documents: dict[str, Any], status: int = 200) -> None:
        self.documents, self.status, self.keys = documents, status, []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                stand_in.keys.append(self.headers.get("x-teamclaude-key"))
                body = json.dumps(stand_in.documents.get(self.path, {})).encode()
                self.send_response(stand_in.status if self.path in stand_in.documents else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def capacity_doc(verdict: str) -> dict[str, Any]:
    return {
        "verdict": verdict, "headroom": 4, "liveAccounts": 2, "benched": 1, "total": 3, "warmSessions": 2,
        "soonestResetSec": 3720, "at": 1795000000.0,
        "accounts": [
            {"name": "alice", "status": "ok", "benched": False, "benchSec": 0, "inflight": 1,
             "burn5h": 120000, "capEst5h": 900000, "headroomTok": 780000, "live": True},
            {"name": "bob", "status": "benched", "benched": True, "benchSec": 240, "inflight": 0,
             "burn5h": 5000, "capEst5h": None, "headroomTok": None, "live": False},
        ],
    }


@pytest.fixture
def proxy_docs() -> dict[str, Any]:
    now = time.time()
    return {
        "/teamclaude/capacity": capacity_doc("green"),
        "/teamclaude/status": {
            "proxy": {"version": "0.1.0", "listen": "http://127.0.0.1:1", "upstream": "https://api.anthropic.com",
                      "mode": "reverse", "failover": "transparent", "pid": 42, "started_at": now - 3700,
                      "config_error": None},
            "current": "alice", "pinned": None,
            "accounts": [
                {"name": "alice", "status": "ok", "inflight": 1, "inflight_cap": 5, "warm_sessions": 2,
                 "windows": {"5h": {"utilization": 0.31, "reset": now + 3600, "status": "allowed"},
                             "7d": {"utilization": 0.52, "reset": now + 86400, "status": "allowed_warning"}},
                 "usage": {"tokens": 10500, "cost_usd": 0.42}},
                {"name": "bob", "status": "benched", "bench_until": now + 240, "bench_reason": "5h window rejected",
                 "inflight": 0, "inflight_cap": 1, "warm_sessions": 0, "windows": {}, "usage": {}},
                {"name": "carol", "status": "needs-login", "needs_login": True, "windows": {}},
            ],
            "capacity": capacity_doc("yellow"),
            "totals": {"requests": 130, "tokens": 20000, "cost_usd": 0.9},
        },
    }


@pytest.mark.parametrize(("verdict", "exit_code"), [("green", 0), ("yellow", 10), ("red", 20)])
def test_capacity_exit_codes(env: Env, capsys: pytest.CaptureFixture[str], proxy_docs: dict[str, Any],
                             verdict: str, exit_code: int) -> None:
    proxy_docs["/teamclaude/capacity"] = capacity_doc(verdict)
    with StandIn(proxy_docs) as stand_in:
        env.write_config(port=stand_in.port)
        code, out, _ = run_cli(capsys, "capacity")
    assert code == exit_code
    assert f"capacity: {verdict.upper()} · headroom 4 · live 2/3 · benched 1 · warm sessions 2 · next reset in 1h 02m" in out
    assert "alice" in out and "780k" in out and "4m" in out
    assert stand_in.keys == [env.store.read().proxy_key]


def test_capacity_json_is_the_proxys_document(env: Env, capsys: pytest.CaptureFixture[str],
                                              proxy_docs: dict[str, Any]) -> None:
    with StandIn(proxy_docs) as stand_in:
        env.write_config(port=stand_in.port)
        code, out, _ = run_cli(capsys, "capacity", "--json")
    assert code == 0 and json.loads(out) == proxy_docs["/teamclaude/capacity"]


def test_capacity_without_a_proxy_is_red(env: Env, capsys: pytest.CaptureFixture[str], unused_tcp_port: int) -> None:
    env.write_config(port=unused_tcp_port)
    code, out, err = run_cli(capsys, "capacity", "--json")
    assert code == 20
    assert json.loads(out)["verdict"] == "red"
    assert f"no proxy answers at http://127.0.0.1:{unused_tcp_port}" in err
    assert run_cli(capsys, "capacity")[0] == 20


def test_capacity_with_a_refused_key_says_why(env: Env, capsys: pytest.CaptureFixture[str],
                                              proxy_docs: dict[str, Any]) -> None:
    with StandIn(proxy_docs, status=401) as stand_in:
        env.write_config(port=stand_in.port)
        code, _, err = run_cli(capsys, "capacity")
    assert code == 20 and "refused the key (HTTP 401)" in err


def test_status_renders_accounts_windows_and_capacity(env: Env, capsys: pytest.CaptureFixture[str],
                                                      proxy_docs: dict[str, Any]) -> None:
    with StandIn(proxy_docs) as stand_in:
        env.write_config(port=stand_in.port)
        code, out, _ = run_cli(capsys, "status")
        json_code, json_out, _ = run_cli(capsys, "status", "--json")
    assert code == 0
    assert "teamclaude 0.1.0 on http://127.0.0.1:1 → https://api.anthropic.com (reverse, failover transparent, pid 42, up 1h 01m)" in out
    assert "current account: alice (automatic)" in out
    assert "31% (resets in 1h 00m)" in out or "31% (resets in 59m)" in out
    assert "benched 4m (5h window rejected)" in out or "benched 3m (5h window rejected)" in out
    assert "needs login" in out
    assert "capacity: YELLOW" in out
    assert "total: 130 requests · 20k tokens · $0.90" in out
    assert json_code == 0 and json.loads(json_out)["current"] == "alice"


def test_status_without_a_proxy_fails_with_a_hint(env: Env, capsys: pytest.CaptureFixture[str],
                                                  unused_tcp_port: int) -> None:
    env.write_config(port=unused_tcp_port)
    code, _, err = run_cli(capsys, "status")
    assert code == 1 and cli_proxy.START_HINT in err


def test_port_zero_uses_the_address_the_proxy_recorded(env: Env, capsys: pytest.CaptureFixture[str],
                                                       proxy_docs: dict[str, Any]) -> None:
    with StandIn(proxy_docs) as stand_in:
        env.write_config(port=0)
        env.state.write_text(json.dumps({"proxy": {"listen": f"http://127.0.0.1:{stand_in.port}"}}))
        assert run_cli(capsys, "capacity")[0] == 0


# ---- accounts, login, import, remove ----


def test_accounts_lists_status_and_merges_duplicates(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert "No accounts yet" in run_cli(capsys, "accounts")[1]
    env.add_alice()

    def more(doc: AccountsDoc) -> None:
        doc.accounts.append(Account(name="alice-old", type="oauth", id=doc.accounts[0].id,
                                    refresh_token="sk-ant-ort01-old", expires_at=1))
        doc.accounts.append(Account(name="ci", type="apikey", api_key="sk-ant-api03-ci", disabled=True))
        doc.accounts.append(Account(name="carol", type="oauth", refresh_token="sk-ant-ort01-carol"))

    env.store.update(more)
    env.state.write_text(json.dumps({"accounts": [{"name": "carol", "status": "needs-login", "needs_login": True}]}))
    code, out, _ = run_cli(capsys, "accounts", "-v")
    assert code == 0
    assert [a.name for a in env.store.read().accounts] == ["alice", "ci", "carol"]
    assert "merged duplicate 'alice-old' into 'alice'" in out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "ok" in lines["alice"] and "in 1h " in lines["alice"] and "max" in lines["alice"]
    assert "disabled" in lines["ci"]
    assert "needs login" in lines["carol"]
    assert "sk-ant" not in out


def test_remove(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.add_alice()
    code, out, _ = run_cli(capsys, "remove", "alice")
    assert code == 0 and "Removed 'alice'" in out and env.store.read().accounts == []
    code, _, err = run_cli(capsys, "remove", "alice")
    assert code == 1 and err == "teamclaude: no account named 'alice' (see 'teamclaude accounts')\n"


def test_login_api_reads_the_key_without_echo(env: Env, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or "sk-ant-api03-secret")
    monkeypatch.setattr("sys.stdin", io.StringIO())  # a terminal: the hidden prompt, not a piped line
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    code, out, _ = run_cli(capsys, "login", "--api", "--name", "ci")
    assert code == 0 and "Added API-key account 'ci'" in out and "sk-ant" not in out
    assert prompts == ["Anthropic API key (input hidden): "]
    assert env.store.read().get("ci").api_key == "sk-ant-api03-secret"
    assert stat.S_IMODE(env.store.path.stat().st_mode) == 0o600


def test_login_through_the_browser(env: Env, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    visits: list[threading.Thread] = []

    def browser(url: str) -> bool:
        visits.append(threading.Thread(target=lambda: urllib.request.urlopen(url, timeout=10).close()))
        visits[-1].start()
        return True

    monkeypatch.setattr(login_module, "open_in_browser", browser)
    code, out, _ = run_cli(capsys, "login")
    for visit in visits:
        visit.join(30)
        assert not visit.is_alive(), "the browser's visit of the callback did not end within 30 s"
    assert code == 0
    assert "Signed in as alice@example.com (max); added as 'alice@example.com'" in out
    assert "sk-ant" not in out
    assert env.store.read().get("alice@example.com").refresh_token == env.fake.account("alice").refresh_token


def test_import_from_claude_code(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.claude_dir.mkdir()
    (env.claude_dir / ".credentials.json").write_text(json.dumps({"claudeAiOauth": {
        "accessToken": ALICE_ACCESS, "refreshToken": ALICE_REFRESH, "expiresAt": 1795000000000,
        "subscriptionType": "max"}}))
    code, out, _ = run_cli(capsys, "import")
    assert code == 0 and "Imported 'alice@example.com' (max) from" in out
    code, _, err = run_cli(capsys, "import", "--from", str(env.root / "missing.json"))
    assert code == 1 and "missing.json does not exist" in err


# ---- api ----


def test_api_calls_the_upstream_with_fresh_credentials(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.add_alice()
    code, out, _ = run_cli(capsys, "api", "/api/oauth/profile", "--account", "alice")
    assert code == 0
    assert json.loads(out)["account"]["email"] == "alice@example.com"
    seen = env.fake.requests[-1]
    headers = {name.lower(): value for name, value in seen.headers}
    assert seen.account == "alice" and headers["authorization"] == f"Bearer {ALICE_ACCESS}"
    assert headers["anthropic-beta"] == "oauth-2025-04-20"
    assert ALICE_ACCESS not in out


def test_api_refuses_other_hosts(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.add_alice()
    code, _, err = run_cli(capsys, "api", "https://example.com/v1/models")
    assert code == 1 and "refusing to send account credentials to https://example.com" in err
    assert env.fake.requests == []


def test_api_reports_http_errors_and_unknown_accounts(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.add_alice()
    code, _, err = run_cli(capsys, "api", "/api/oauth/nothing-here")
    assert code == 1 and "answered HTTP 404 (account 'alice')" in err
    code, _, err = run_cli(capsys, "api", "/v1/models", "--account", "zed")
    assert code == 1 and "no account named 'zed'" in err


# ---- errors and help ----


def test_bad_settings_print_one_line(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.config.write_text("port: 1\nprot: 2\n")
    code, out, err = run_cli(capsys, "accounts")
    assert code == 1 and out == ""
    assert err == f"teamclaude: {env.config} line 2: unknown key 'prot' (did you mean 'port'?)\n"


def test_bad_accounts_file_prints_one_line(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.store.path.write_text("accounts:\n  - name: bob\n    type: oath\n    api_key: sk-ant-api03-x\n")
    code, _, err = run_cli(capsys, "accounts")
    assert code == 1 and "line 3: account 'bob' has type 'oath'" in err and "sk-ant" not in err
    assert err.count("\n") == 1


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "help")
    assert code == 0 and "capacity" in out and "login" in out
    code, out, _ = run_cli(capsys, "help", "capacity")
    assert code == 0 and "--json" in out


def test_login_api_reads_a_piped_key(env: Env, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("sk-ant-api03-piped-secret\n"))
    code, out, _ = run_cli(capsys, "login", "--api", "--name", "ci")
    assert code == 0 and "sk-ant" not in out
    assert env.store.read().get("ci").api_key == "sk-ant-api03-piped-secret"
