"""Where the proxy listens, and that it fails closed: real mitmdump / mitmweb / `teamclaude
server` processes, their listening sockets read from /proc, a real upstream that records
what reaches it."""

from __future__ import annotations

import http.client
import json
import re
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

from teamclaude.fakeupstream import FakeUpstream
from teamclaude.proxyproc import ProxyProcess, addon_path, mitmproxy_command
from tests.e2e.harness import PROXY_KEY, call, listening_sockets, message_body, oauth_account, start_proxy, write_config

LISTENING = re.compile(r"listening at (\S+)\.")
CLIENT_OWN = "Bearer sk-ant-oat01-client-own"


@pytest.fixture()
def fake():
    with FakeUpstream(accounts=[oauth_account("alice")]) as upstream:
        yield upstream


def proxy_listeners(proxy: ProxyProcess) -> set[tuple[str, int]]:
    assert proxy.process is not None
    return listening_sockets(proxy.process.pid)


def announced(proxy: ProxyProcess) -> list[str]:
    """Every listener mitmproxy said it started (it logs each one)."""
    return [m.group(1) for line in proxy.output for m in [LISTENING.search(line)] if m]


def test_bare_mitmdump_listens_only_where_the_settings_say(tmp_path, fake):
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    with start_proxy(cfg) as proxy:
        assert proxy_listeners(proxy) == {("127.0.0.1", proxy.port)}
        assert announced(proxy) == [f"127.0.0.1:{proxy.port}"]
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200


def test_teamclaude_server_listens_only_where_the_settings_say(tmp_path, fake):
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    command = [sys.executable, "-m", "teamclaude.cli", "server", "--", "--set", "flow_detail=0"]
    with ProxyProcess(None, command=command, env=cfg.env()) as proxy:
        assert proxy_listeners(proxy) == {("127.0.0.1", proxy.port)}
        assert announced(proxy) == [f"127.0.0.1:{proxy.port}"]
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200


def test_mitmweb_listens_only_where_the_settings_say_beside_its_own_ui(tmp_path, fake):
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    with socket.socket() as probe:  # mitmweb's own UI gets a port known up front
        probe.bind(("127.0.0.1", 0))
        web_port = probe.getsockname()[1]
    web = ["--set", "web_open_browser=false", "--set", f"web_port={web_port}"]
    with ProxyProcess(cfg.config, web, tool="mitmweb", env=cfg.env()) as proxy:
        assert proxy_listeners(proxy) - {("127.0.0.1", web_port)} == {("127.0.0.1", proxy.port)}
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200


def test_invalid_settings_at_start_listen_nowhere_and_send_nothing(tmp_path, fake):
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    cfg.config.write_text(cfg.config.read_text() + "max_inflight_per_acount: 3\n")
    proxy = ProxyProcess(cfg.config, ["--set", "flow_detail=0"], env=cfg.env())
    with pytest.raises(RuntimeError, match="max_inflight_per_acount"):
        proxy.start()
    assert proxy.process is not None and proxy.process.returncode not in (0, None)
    assert announced(proxy) == []
    assert fake.requests == []


def _own_shim(tmp_path: Path) -> Path:
    shim = tmp_path / "shim" / "teamclaude_addon.py"
    shim.parent.mkdir()
    shutil.copy(addon_path(), shim)
    return shim


def _reload(shim: Path, text: str) -> None:
    shim.write_text(text)
    later = time.time() + 5  # mitmproxy reloads a script when its mtime moves forward
    os.utime(shim, (later, later))


def _refused(proxy: ProxyProcess, predicate, timeout: float = 15.0) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = call(proxy.url, "POST", "/v1/messages", message_body(), headers={"authorization": CLIENT_OWN})
        if predicate(status) or time.monotonic() > deadline:
            return status, body
        time.sleep(0.2)


def _nothing_more_reaches(fake: FakeUpstream, proxy: ProxyProcess) -> None:
    """Once refusing, the proxy forwards nothing; what it forwarded before was rewritten."""
    before = len(fake.requests)
    for path in ("/v1/messages", "/v1/models", "/api/oauth/profile"):
        assert call(proxy.url, "POST", path, message_body(), headers={"authorization": CLIENT_OWN})[0] == 503
    assert len(fake.requests) == before
    for recorded in fake.requests:
        text = json.dumps(recorded.headers)
        assert PROXY_KEY not in text and "client-own" not in text


def test_script_reloaded_while_the_settings_are_invalid_answers_503(tmp_path, fake):
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    shim = _own_shim(tmp_path)
    command = [*mitmproxy_command(), "-s", str(shim), "--set", f"teamclaude_config={cfg.config}", "--set", "flow_detail=0"]
    with ProxyProcess(None, command=command, env=cfg.env()) as proxy:
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
        cfg.config.write_text(cfg.config.read_text() + "prot: 1\n")
        _reload(shim, shim.read_text() + "\n")
        status, body = _refused(proxy, lambda s: s == 503)
        assert status == 503 and b"unknown key 'prot'" in body
        _nothing_more_reaches(fake, proxy)


def test_script_reloaded_into_a_broken_state_answers_503(tmp_path, fake):
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    shim = _own_shim(tmp_path)
    command = [*mitmproxy_command(), "-s", str(shim), "--set", f"teamclaude_config={cfg.config}", "--set", "flow_detail=0"]
    with ProxyProcess(None, command=command, env=cfg.env()) as proxy:
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
        _reload(shim, "raise ImportError('a broken upgrade')\n")
        status, body = _refused(proxy, lambda s: s == 503)
        assert status == 503 and b"addon is not loaded" in json.loads(body)["error"]["message"].encode()
        _nothing_more_reaches(fake, proxy)


def test_forward_mode_listens_on_loopback_and_pools_only_the_real_upstream(tmp_path, fake):
    with FakeUpstream(accounts=[oauth_account("other")]) as elsewhere:
        cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
        with start_proxy(cfg, ["--mode", "regular@0"]) as proxy:
            assert {host for host, _ in proxy_listeners(proxy)} == {"127.0.0.1"}
            upstream_host = fake.url.removeprefix("http://")
            evil_host = elsewhere.url.removeprefix("http://")

            def absolute(target: str, key: str | None) -> int:
                connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
                headers = {"host": upstream_host, "content-type": "application/json"}
                if key:
                    headers["x-teamclaude-key"] = key
                connection.request("POST", f"http://{target}/v1/messages", json.dumps(message_body()), headers)
                status = connection.getresponse().status
                connection.close()
                return status

            assert absolute(upstream_host, PROXY_KEY) == 200  # the upstream itself: pooled
            assert absolute(evil_host, None) == 403  # Host says upstream, the target does not
            absolute(evil_host, PROXY_KEY)  # keyed: relayed, but never with a pooled credential
            seen = json.dumps([r.headers for r in elsewhere.requests] if elsewhere.requests else [], default=str)
            assert "sk-ant-oat01-alice" not in seen and PROXY_KEY not in seen
