"""Per-client keys through the real CLI and the real proxy: added, used, logged, limited, removed."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from teamclaude.fakeupstream import FakeUpstream
from tests.e2e.cli_runner import run_cli, wait_for_published_address, wait_until
from tests.e2e.harness import PROXY_KEY, ConfigDir, call, message_body, oauth_account, proxy_status, start_proxy, write_config
from tests.e2e.test_request_log_e2e import records
from tests.e2e.test_review_attacks import free_port

KEY_LINE = re.compile(r'^export ANTHROPIC_CUSTOM_HEADERS="x-teamclaude-key: (tck-[A-Za-z0-9_-]{32})"$', re.M)


def add_key(cfg: ConfigDir, name: str, *options: str) -> str:
    done = run_cli(cfg, "keys", "add", name, *options)
    assert done.returncode == 0, done.stderr
    match = KEY_LINE.search(done.stdout)
    assert match, done.stdout
    return match.group(1)


def clients(proxy) -> dict[str, dict]:
    return {entry["name"]: entry for entry in proxy_status(proxy)["clients"]}


def test_keys_are_added_used_logged_and_removed(tmp_path):
    alice = oauth_account("alice")
    log_dir = tmp_path / "log"
    with FakeUpstream([alice]) as fake:
        cfg = write_config(tmp_path / "cfg", fake.url, [alice])
        with start_proxy(cfg, ["--set", f"teamclaude_log_dir={log_dir}"]) as proxy:
            key = add_key(cfg, "laptop", "--max-concurrent", "3")
            again = run_cli(cfg, "keys", "add", "laptop")
            assert again.returncode == 1 and "already exists" in again.stderr and "tck-" not in again.stderr
            text = cfg.accounts.read_text()
            assert key not in text and "sha256:" in text and stat.S_IMODE(cfg.accounts.stat().st_mode) == 0o600
            wait_until(lambda: "laptop" in clients(proxy), "the proxy to load the new key")

            # Served with the key in either header form, named in the log and the status.
            assert call(proxy.url, "POST", "/v1/messages", message_body(), key=key)[0] == 200
            assert call(proxy.url, "POST", "/v1/messages", message_body(stream=True), key=None,
                        headers={"authorization": f"Bearer {key}"})[0] == 200
            assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200  # the proxy key still works
            assert call(proxy.url, "GET", "/teamclaude/health", key=key)[0] == 200  # local endpoints too
            code, _, body = call(proxy.url, "POST", "/teamclaude/switch", {"account": "alice"}, key=key)
            assert code == 403 and b"needs the proxy key" in body  # changing the pool is the admin key's
            assert call(proxy.url, "POST", "/teamclaude/switch", {"account": None})[0] == 200
            call(proxy.url, "POST", "/v1/oauth/token", {"grant_type": "refresh_token", "refresh_token": "x"}, key=key)
            def pooled() -> list[dict]:
                return [r for r in records(log_dir) if r["kind"] == "pooled"]

            logged = wait_until(lambda: found if len(found := pooled()) == 3 else None, "three pooled log records")
            assert sorted(str(r["client"]) for r in logged) == ["None", "laptop", "laptop"]
            laptop = clients(proxy)["laptop"]  # booked when the requests finished, before they were logged
            assert laptop["requests"] == 2 and laptop["in_flight"] == 0 and laptop["tokens"] > 0 and laptop["cost_usd"] > 0
            assert laptop["max_concurrent"] == 3
            listed = run_cli(cfg, "keys", "list")
            assert listed.returncode == 0 and "laptop" in listed.stdout and key not in listed.stdout
            wait_for_published_address(cfg, proxy)
            status = run_cli(cfg, "status")
            assert status.returncode == 0 and "laptop" in status.stdout, status.stdout

            # The key went nowhere: not upstream, not into the log, the state file or the status.
            sent = [json.dumps([r.headers, r.body.decode("utf-8", "replace")]) for r in fake.requests]
            assert [r.path for r in fake.requests][-1] == "/v1/oauth/token"  # a pass-through path
            assert len(sent) == 4 and not [s for s in sent if key in s]
            for path in log_dir.iterdir():
                assert key not in path.read_text()
            digest = next(line for line in text.splitlines() if "sha256:" in line).split()[-1]
            wait_until(lambda: "laptop" in cfg.state.read_text(), "the state file to list the client")
            assert key not in cfg.state.read_text() and digest not in cfg.state.read_text()

            # Removed: refused as soon as the proxy has reloaded the file.
            removed = run_cli(cfg, "keys", "remove", "laptop")
            assert removed.returncode == 0, removed.stderr
            wait_until(lambda: "laptop" not in clients(proxy), "the proxy to drop the key")
            code, _, body = call(proxy.url, "POST", "/v1/messages", message_body(), key=key)
            assert code == 401 and json.loads(body)["error"]["type"] == "authentication_error"
            assert len(fake.requests) == 4
            unknown = run_cli(cfg, "keys", "remove", "laptop")
            assert unknown.returncode == 1 and "no client key named 'laptop'" in unknown.stderr


@contextmanager
def slow_stream(url: str, key: str) -> Iterator[http.client.HTTPResponse]:
    """A streaming request (40 chunks, 100 ms apart) whose first bytes have arrived."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", "/v1/messages", body=json.dumps(message_body(stream=True)), headers={
            "x-teamclaude-key": key, "content-type": "application/json",
            "x-fake-chunks": "40", "x-fake-chunk-interval-ms": "100"})
        response = connection.getresponse()
        assert response.status == 200
        assert response.read1(65536)
        yield response
    finally:
        connection.close()


def test_a_client_at_its_limit_gets_a_429_and_its_place_comes_back(tmp_path):
    alice = oauth_account("alice")
    with FakeUpstream([alice]) as fake:
        cfg = write_config(tmp_path / "cfg", fake.url, [alice])
        ci = add_key(cfg, "ci", "--max-concurrent", "1")
        dev = add_key(cfg, "dev")
        with start_proxy(cfg) as proxy:
            with slow_stream(proxy.url, ci) as stream:
                code, headers, body = call(proxy.url, "POST", "/v1/messages", message_body(), key=ci)
                assert code == 429 and headers["retry-after"] == "2"
                error = json.loads(body)["error"]
                assert error["type"] == "rate_limit_error" and "'ci'" in error["message"] and "1 requests" in error["message"]
                assert call(proxy.url, "POST", "/v1/messages", message_body(), key=dev)[0] == 200  # others are served
                assert [r.status for r in fake.requests] == [200, 200]  # the refused one never went upstream
                assert clients(proxy)["ci"] | {"created_at": 0} == {
                    "name": "ci", "created_at": 0, "max_concurrent": 1, "in_flight": 1, "requests": 0,
                    "refused": 1, "tokens": 0, "cost_usd": 0.0}
                done = threading.Event()
                threading.Thread(target=lambda: (stream.read(), done.set()), daemon=True).start()
                assert done.wait(30)
            wait_until(lambda: clients(proxy)["ci"]["in_flight"] == 0, "the stream's place to be released")
            assert call(proxy.url, "POST", "/v1/messages", message_body(), key=ci)[0] == 200

            # A client that hangs up mid-stream frees its place too.
            with slow_stream(proxy.url, ci):
                assert clients(proxy)["ci"]["in_flight"] == 1
            wait_until(lambda: clients(proxy)["ci"]["in_flight"] == 0, "the cut stream's place to be released")
            assert call(proxy.url, "POST", "/v1/messages", message_body(), key=ci)[0] == 200
            assert clients(proxy)["ci"]["requests"] == 4 and PROXY_KEY not in cfg.state.read_text()


def test_forward_mode_opens_a_tunnel_elsewhere_for_a_client_key_as_for_the_proxy_key(tmp_path):
    alice = oauth_account("alice")
    with FakeUpstream([alice]) as fake, socket.socket() as elsewhere:
        elsewhere.bind(("127.0.0.1", 0))
        elsewhere.listen(4)
        target = f"127.0.0.1:{elsewhere.getsockname()[1]}"
        cfg = write_config(tmp_path / "cfg", fake.url, [alice])
        key = add_key(cfg, "builder")

        def connect(proxy, password: str | None) -> bytes:
            auth = "" if password is None else (
                "Proxy-Authorization: Basic " + base64.b64encode(f"teamclaude:{password}".encode()).decode() + "\r\n")
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as client:
                client.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n".encode())
                return client.recv(1000)

        with start_proxy(cfg, ["--mode", f"regular@{free_port()}"]) as proxy:
            assert connect(proxy, key).startswith(b"HTTP/1.1 200")
            assert connect(proxy, PROXY_KEY).startswith(b"HTTP/1.1 200")
            assert connect(proxy, key[:-1]).startswith(b"HTTP/1.1 403")
            assert connect(proxy, None).startswith(b"HTTP/1.1 403")
