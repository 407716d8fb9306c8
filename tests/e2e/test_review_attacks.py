"""Attacks from an adversarial review that the proxy does not withstand yet, each driven the way
it arrives: a real mitmdump / `teamclaude server`, a real upstream that records what reaches
it, raw sockets. Each failed before its fix."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from teamclaude.fakeupstream import FakeUpstream
from teamclaude.proxyproc import ProxyProcess, addon_path, mitmproxy_command
from tests.e2e.bodies import MIB, bomb_headers, peak_rss_mib, send_raw, stream_alongside
from tests.e2e.cli_runner import wait_until
from tests.e2e.harness import (
    PROXY_KEY,
    call,
    listening_sockets,
    message_body,
    oauth_account,
    start_proxy,
    write_config,
)
from tests.e2e.scripted import ScriptedUpstream
from tests.e2e.test_startup import _own_shim, _reload

CLIENT_OWN = "sk-ant-oat01-client-own-token"


@pytest.fixture()
def fake():
    with FakeUpstream(accounts=[oauth_account("alice")]) as upstream:
        yield upstream


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def leaked(fake: FakeUpstream) -> list[str]:
    """What reached the upstream that must never: the proxy key or the client's own token."""
    seen = json.dumps([r.headers for r in fake.requests])
    return [secret for secret in (PROXY_KEY, CLIENT_OWN) if secret in seen]


def accepts(port: int, process: subprocess.Popen, timeout: float = 30.0) -> bool:
    """Whether something accepts connections on `port` before `process` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


@pytest.mark.parametrize("extra, served", [
    pytest.param(["--set", "teamclaude_log_keep_days=abc"], False, id="bad-option-value"),
    pytest.param(["--set", "teamclaude_config={config}"], True, id="config-given-again"),
])
def test_teamclaude_server_with_an_option_the_script_cannot_take_forwards_nothing(tmp_path, fake, extra, served):
    """A bad `teamclaude_*` value makes mitmproxy skip the script, silently, and keep relaying in
    the reverse mode `teamclaude server` put on its command line: the shim's guard must answer
    (or mitmdump exit) instead. `-- --set teamclaude_config=FILE` (the settings named again, as a
    user pointing it at another file would) used to do the same; now that file is the one used."""
    port = free_port()
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")], port=port)
    args = [arg.format(config=cfg.config) for arg in extra]
    command = [sys.executable, "-m", "teamclaude.cli", "server", "--", "--set", "flow_detail=0", *args]
    process = subprocess.Popen(command, env={**os.environ, **cfg.env()}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        status = None
        if accepts(port, process):
            try:
                status, _, _ = call(f"http://127.0.0.1:{port}", "POST", "/v1/messages", message_body(),
                                    headers={"authorization": f"Bearer {CLIENT_OWN}"})
            except ConnectionError:
                assert not served  # the proxy is exiting on the error it logged at start
        assert leaked(fake) == []
        if served:  # `teamclaude server` takes the settings file named after `--` as its own
            assert status == 200 and [r.account for r in fake.requests] == ["alice"]
        else:
            assert fake.requests == []
            assert status in (None, 503)  # exited at start, or refusing
    finally:
        process.terminate()
        process.wait(10)


def test_streamed_request_body_never_goes_upstream_unrewritten(tmp_path, fake):
    """With mitmproxy's `stream_large_bodies` (a documented mitmdump option, passed after
    `teamclaude server --`), a large or chunked request would be sent upstream as its body
    arrives, before the addon's `request` hook runs: the proxy refuses to run with it."""
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    proxy = ProxyProcess(cfg.config, ["--set", "flow_detail=0", "--set", "stream_large_bodies=1k"], env=cfg.env())
    with pytest.raises(RuntimeError, match="stream_large_bodies"):
        proxy.start()
    assert fake.requests == []


def test_forward_mode_does_not_tunnel_raw_tcp_for_clients_without_the_key(tmp_path, fake):
    """Forward mode answers `CONNECT other-host:port` with 200 for anyone and, when the tunnel
    carries neither TLS nor HTTP, relays the bytes: an open TCP relay into loopback."""
    received: list[bytes] = []
    with socket.socket() as service:
        service.bind(("127.0.0.1", 0))
        service.listen(1)
        service.settimeout(20)

        def serve() -> None:
            try:
                connection, _ = service.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(10)
                try:
                    received.append(connection.recv(100))
                except OSError:
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        target = f"127.0.0.1:{service.getsockname()[1]}"
        cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
        forward_port = free_port()
        with start_proxy(cfg, ["--mode", f"regular@{forward_port}"]) as proxy, \
                socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as client:
            client.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            answer = client.recv(1000)
            if answer.startswith(b"HTTP/1.1 200"):
                client.sendall(b"SSH-2.0-OpenSSH_9.6 not-http-not-tls\r\n")
                thread.join(20)
        thread.join(1)
    assert received == []
    assert not answer.startswith(b"HTTP/1.1 200")


def test_many_empty_gzip_members_without_the_key_do_not_stall_other_clients(tmp_path, fake):
    """2 MiB of empty gzip members (20 bytes each) sent with no key to the pass-through token
    endpoint: redacting its stored copy inflates it on the event loop, and `inflate` copies the
    rest of the body once per member (`lstrip`, `unused_data`): ~100k copies of ~1 MiB, seconds
    in which no other client is served (8 MiB: minutes)."""
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    with start_proxy(cfg) as proxy:
        with stream_alongside(proxy.url, 40, 50) as gaps:
            members = gzip.compress(b"", mtime=0) * (2 * MIB // 20)
            status, _ = send_raw(proxy.url, "/v1/oauth/token", members, bomb_headers(key=None))
            assert 200 <= status < 600
    assert len(gaps) > 10
    assert max(gaps[1:]) < 1.0, f"the concurrent stream stalled {max(gaps[1:]):.2f}s"


def test_a_key_minted_on_a_pass_through_path_is_not_stored_in_flow_files(tmp_path):
    """Claude Code's Console login calls `POST /api/oauth/claude_cli/create_api_key` (a
    pass-through path) and gets a new API key in the answer's body. That key stays readable in
    the `-w` flow file and the HAR: the README says pass-through credentials read `<redacted>`."""
    minted = "sk-ant-api03-freshly-minted-console-key-0123456789abcdef"
    answer = [json.dumps({"raw_key": minted}).encode()]
    with ScriptedUpstream(answer, [("content-type", "application/json")]) as upstream:
        cfg = write_config(tmp_path, upstream.url, [oauth_account("alice")])
        flows, har = tmp_path / "flows.mitm", tmp_path / "flows.har"
        with start_proxy(cfg, ["-w", str(flows), "--set", f"hardump={har}"]) as proxy:
            status, _, body = call(proxy.url, "POST", "/api/oauth/claude_cli/create_api_key", b"",
                                   headers={"authorization": f"Bearer {CLIENT_OWN}"}, key=None)
            assert status == 200 and minted.encode() in body  # the client gets its key
    assert minted.encode() not in flows.read_bytes()
    assert minted.encode() not in har.read_bytes()


def test_a_request_in_flight_across_a_script_reload_leaves_no_token_in_the_har(tmp_path):
    """mitmproxy reloads the script (its file changed: an upgrade, a `git pull`) while a pooled
    request waits for its answer. The old addon's `done` redacts only `-w`'s active flows; the
    new addon does not know the flow, so its `response` hook leaves the injected token in place:
    it stays in the HAR (and in mitmweb's flow list)."""
    alice = oauth_account("alice")
    with FakeUpstream(accounts=[alice]) as fake:
        cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
        shim = _own_shim(tmp_path)
        har = tmp_path / "flows.har"
        command = [*mitmproxy_command(), "-s", str(shim), "--set", f"teamclaude_config={cfg.config}",
                   "--set", "flow_detail=0", "--set", f"hardump={har}"]
        with ProxyProcess(None, command=command, env=cfg.env()) as proxy:
            answers: list[int] = []
            slow = threading.Thread(target=lambda: answers.append(call(
                proxy.url, "POST", "/v1/messages", message_body(), headers={"x-fake-delay-headers-ms": "4000"})[0]))
            slow.start()
            deadline = time.monotonic() + 15
            while fake.request_count < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            _reload(shim, shim.read_text() + "\n")
            slow.join(30)
            assert answers == [200]
    assert alice.access_token.encode() not in har.read_bytes()


def test_a_large_body_without_the_key_is_refused_before_it_is_buffered(tmp_path, fake):
    """No key, `POST /v1/messages` with a 256 MiB body: mitmproxy reads the whole body into
    memory (twice its size at peak) before the addon's `request` hook answers 401. Any local
    process can grow the proxy by gigabytes with a few such requests (1 GiB: 2.1 GB peak RSS)."""
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    with start_proxy(cfg) as proxy:
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200  # warm
        assert proxy.process is not None
        before = peak_rss_mib(proxy.process.pid)
        host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
        size, chunk = 256 * MIB, b"a" * MIB
        with socket.create_connection((host, int(port)), timeout=60) as client:
            client.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                           b"content-length: %d\r\n\r\n" % size)
            try:
                for _ in range(size // len(chunk)):
                    client.sendall(chunk)
            except OSError:
                pass  # refused early: the proxy closed the connection
            answer = client.recv(100)
        assert answer.startswith((b"HTTP/1.1 401", b"HTTP/1.1 413"))
        grown = peak_rss_mib(proxy.process.pid) - before
    assert grown < 150, f"peak RSS grew {grown:.0f} MiB for an unkeyed {size // MIB} MiB body"


def test_a_full_disk_leaves_no_empty_request_log_record(tmp_path, fake, small_fs):
    """The request log opens its file, then writes into it (issue 11 asked for atomic writes):
    when the disk is full the write fails after the file exists, and an empty `tc-*.json` stays
    behind for good (a reader, like test_request_log_e2e's, also sees files half written)."""
    log_dir = small_fs.path / "log"
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")], log_dir=str(log_dir))
    with start_proxy(cfg) as proxy:
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
        wait_until(lambda: list(log_dir.glob("tc-*.json")), "the first record")
        small_fs.fill()
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
        wait_until(lambda: any("cannot write the request log" in line for line in proxy.output), "the write refused")
        small_fs.free()
    unreadable = []
    for path in log_dir.glob("tc-*.json"):
        try:
            json.loads(path.read_text())
        except ValueError:
            unreadable.append(path.name)
    assert unreadable == []


def test_bare_mitmdump_whose_script_fails_to_load_is_not_an_open_proxy(tmp_path, fake):
    """`mitmdump -s teamclaude_addon.py` with a bad `teamclaude_*` value: the script is not
    loaded (nothing is printed), so mitmproxy's default mode stands: a forward proxy on all
    interfaces (`*:8080`; `--listen-port` here to leave 8080 alone) relaying to any host, no key."""
    port = free_port()
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    with FakeUpstream(accounts=[oauth_account("other")]) as elsewhere:
        command = [*mitmproxy_command(), "-s", str(addon_path()), "--set", f"teamclaude_config={cfg.config}",
                   "--set", "teamclaude_log_keep_days=abc", "--listen-port", str(port)]
        process = subprocess.Popen(command, env={**os.environ, **cfg.env()}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            if accepts(port, process):
                assert {host for host, _ in listening_sockets(process.pid)} <= {"127.0.0.1"}
                call(f"http://127.0.0.1:{port}", "GET", f"{elsewhere.url}/v1/models", key=None)
            assert elsewhere.requests == []
        finally:
            process.terminate()
            process.wait(10)
