import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deck.actions import ActionError, ActionRunner, Target, add_api_key, perform, remove
from deck.controller import AddApiKey, ImportAccount, Notice, Reload, Remove, SetPriority, Switch, ToggleDisabled
from deck.locallog import LocalLog
from teamclaude.accounts_store import Account, AccountsStore


class FakeProxy:
    """Answers /teamclaude/switch and /teamclaude/reload like the proxy, recording calls."""

    def __init__(self, key):
        self.calls = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                proxy.calls.append((self.path, self.headers.get("x-teamclaude-key"), json.loads(body)))
                if self.headers.get("x-teamclaude-key") != key:
                    status, answer = 401, {"type": "error", "error": {"type": "authentication_error", "message": "missing or wrong proxy key"}}
                elif self.path == "/teamclaude/switch" and json.loads(body).get("account") == "ghost":
                    status, answer = 404, {"type": "error", "error": {"type": "not_found_error", "message": "no account named 'ghost'"}}
                elif self.path == "/teamclaude/switch":
                    status, answer = 200, {"ok": True, "message": f"current account pinned to {json.loads(body)['account']}"}
                else:
                    status, answer = 200, {"ok": True, "message": "reloaded: 2 accounts"}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def accounts(tmp_path):
    path = tmp_path / "accounts.yaml"
    store = AccountsStore(path)
    key = store.ensure_proxy_key()
    store.update(lambda doc: doc.upsert(Account(name="alice", type="oauth", access_token="sk-ant-oat01-x")))
    return path, key


@pytest.fixture
def proxy(accounts):
    fake = FakeProxy(accounts[1])
    yield fake
    fake.stop()


def test_switch_posts_the_account_with_the_proxy_key(proxy, accounts):
    path, key = accounts
    message = perform(Switch("alice"), Target(proxy.url, path))
    assert message == "current account pinned to alice"
    assert proxy.calls == [("/teamclaude/switch", key, {"account": "alice"})]
    perform(Switch(None), Target(proxy.url, path))
    assert proxy.calls[-1][2] == {"account": None}


def test_reload(proxy, accounts):
    assert perform(Reload(), Target(proxy.url, accounts[0])) == "reloaded: 2 accounts"
    assert proxy.calls[0][0] == "/teamclaude/reload"


def test_proxy_errors_are_one_line_without_the_key(proxy, accounts, tmp_path):
    path, key = accounts
    with pytest.raises(ActionError, match="HTTP 404: no account named 'ghost'"):
        perform(Switch("ghost"), Target(proxy.url, path))
    other = tmp_path / "other.yaml"
    AccountsStore(other).ensure_proxy_key()
    with pytest.raises(ActionError) as refused:
        perform(Switch("alice"), Target(proxy.url, other))
    assert "HTTP 401" in str(refused.value) and key not in str(refused.value)


def test_unreachable_proxy(accounts):
    with pytest.raises(ActionError, match="proxy unreachable at http://127.0.0.1:9/teamclaude/switch"):
        perform(Switch("alice"), Target("http://127.0.0.1:9", accounts[0]))


def test_no_proxy_key(tmp_path):
    with pytest.raises(ActionError, match="no proxy key"):
        perform(Reload(), Target("http://127.0.0.1:9", tmp_path / "missing.yaml"))


def test_add_and_remove_through_the_store(accounts):
    path, key = accounts
    target = Target("", path)
    assert "added API key account ci" in add_api_key(target, "ci", "sk-ant-api03-NEWKEY")
    doc = AccountsStore(path).read()
    assert doc.get("ci").api_key == "sk-ant-api03-NEWKEY" and doc.proxy_key == key
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ActionError, match="'alice' is an OAuth account"):
        add_api_key(target, "alice", "sk-ant-api03-OTHER")
    with pytest.raises(ActionError, match="does not look like an Anthropic API key"):
        add_api_key(target, "bad", "hello")
    assert "added API key account api-key-1" in add_api_key(target, "", "sk-ant-api03-AUTO")
    assert "removed ci" in remove(target, "ci")
    assert AccountsStore(path).read().get("ci") is None
    with pytest.raises(ActionError, match="no account named ci"):
        remove(target, "ci")


def test_toggle_and_priority_through_the_store(accounts):
    path, key = accounts
    target = Target("", path)
    assert perform(ToggleDisabled("alice"), target).startswith("'alice' disabled")
    assert AccountsStore(path).read().get("alice").disabled
    assert perform(ToggleDisabled("alice"), target).startswith("'alice' enabled")
    assert perform(SetPriority("alice", 3), target).startswith("'alice' priority 3")
    doc = AccountsStore(path).read()
    assert (doc.get("alice").disabled, doc.get("alice").priority, doc.proxy_key) == (False, 3, key)
    with pytest.raises(ActionError, match="no account named 'nobody'"):
        perform(ToggleDisabled("nobody"), target)


def test_runner_logs_outcomes_off_thread(accounts):
    log = LocalLog(clock=lambda: 1.0)
    runner = ActionRunner(log)
    runner.submit(Notice("bell on"), Target("", accounts[0]))
    runner.submit(Remove("nobody"), Target("", accounts[0]))
    runner.submit(AddApiKey("k", "sk-ant-api03-HIDDEN"), Target("", accounts[0]))
    runner.wait(10)
    texts = [line.text for line in log.lines()]
    assert texts[0] == "bell on"
    assert "remove nobody failed: no account named nobody" in " ".join(texts)
    assert any(text.startswith("add k: added API key account k") for text in texts)
    assert all("HIDDEN" not in text for text in texts)
    assert [line.level for line in log.lines() if "failed" in line.text] == ["error"]


def test_import_from_claude_code_uses_the_importer(accounts, tmp_path, monkeypatch):
    claude = tmp_path / "claude"
    claude.mkdir()
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(claude))
    monkeypatch.setenv("TEAMCLAUDE_CONFIG", str(tmp_path / "no-config.yaml"))
    target = Target("", accounts[0])
    with pytest.raises(ActionError, match="import failed: .*does not exist"):
        perform(ImportAccount(), target)
    # Only a refresh token: the importer asks no profile endpoint, Claude Code's file says who it is.
    (claude / ".credentials.json").write_text(json.dumps({"claudeAiOauth": {"refreshToken": "sk-ant-ort01-R", "subscriptionType": "max"}}))
    (claude / ".claude.json").write_text(json.dumps({"oauthAccount": {"accountUuid": "u-1", "emailAddress": "dora@example.com"}}))
    message = perform(ImportAccount(), target)
    assert message.startswith("imported ") and "from Claude Code" in message
    imported = [a for a in AccountsStore(accounts[0]).read().accounts if a.email == "dora@example.com"]
    assert len(imported) == 1 and imported[0].refresh_token == "sk-ant-ort01-R"
    assert "sk-ant" not in message
