"""Deploying for a team (docs/deploy.md), for real: the unit `teamclaude service install` writes,
its command run the way systemd runs it, and the proxy's own listener speaking TLS with a given
certificate to a client that verifies it against a private CA."""

from __future__ import annotations

import http.client
import json
import shlex
import signal
import socket
import ssl
import sys
from pathlib import Path

import pytest

from teamclaude.fakeupstream import FakeUpstream
from teamclaude.proxyproc import ProxyProcess
from tests.e2e.cli_runner import run_cli
from tests.e2e.harness import PROXY_KEY, message_body, oauth_account, write_config
from tests.e2e.tls_certs import SERVER_NAME, TlsFiles, make_tls_files

HEADERS = {"x-teamclaude-key": PROXY_KEY, "content-type": "application/json", "anthropic-version": "2023-06-01"}


@pytest.fixture()
def fake():
    with FakeUpstream(accounts=[oauth_account("alice")]) as upstream:
        yield upstream


@pytest.fixture()
def tls(tmp_path: Path) -> TlsFiles:
    directory = tmp_path / "tls files"  # a space, as the unit's quoting must carry it
    directory.mkdir()
    return make_tls_files(directory)


def systemd_words(value: str, *, exec_line: bool) -> list[str]:
    """systemd's reading of the double-quoted words `teamclaude.systemd_unit` writes (its
    C escapes there are only `\\\\` and `\\"`, which POSIX shell quoting reads the same way):
    `%%` is `%` (specifiers), and on a command line `$$` is `$` in the arguments."""
    words = [word.replace("%%", "%") for word in shlex.split(value)]
    return words[:1] + [word.replace("$$", "$") for word in words[1:]] if exec_line else words


def unit_settings(text: str) -> tuple[list[str], dict[str, str]]:
    """ExecStart's argv and the Environment= variables of a unit file."""
    command: list[str] = []
    environment: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "ExecStart":
            command = systemd_words(value, exec_line=True)
        elif key == "Environment":
            environment.update(word.split("=", 1) for word in systemd_words(value, exec_line=False))
    return command, environment


def https(port: int, ca: Path, *, server_name: str = "127.0.0.1") -> http.client.HTTPSConnection:
    """A connection that verifies the proxy's certificate against `ca` alone."""
    context = ssl.create_default_context(cafile=str(ca))
    connection = http.client.HTTPSConnection(server_name, port, context=context, timeout=30)
    if server_name != "127.0.0.1":  # the name in SNI and in the check, the address on loopback
        connection.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname=server_name)
    return connection


def post(connection: http.client.HTTPConnection, body: dict) -> tuple[int, bytes]:
    try:
        connection.request("POST", "/v1/messages", body=json.dumps(body), headers=HEADERS)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_installed_unit_runs_the_proxy_over_tls_and_stops_cleanly_on_its_kill_signal(
        tmp_path: Path, fake: FakeUpstream, tls: TlsFiles) -> None:
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    installed = run_cli(cfg, "service", "install", "--", "--set", f"certs=*={tls.server}", "--set", "flow_detail=0")
    assert installed.returncode == 0, installed.stderr
    unit = Path(cfg.env()["XDG_CONFIG_HOME"]) / "systemd" / "user" / "teamclaude.service"
    text = unit.read_text()
    assert PROXY_KEY not in text and "sk-ant" not in text
    command, environment = unit_settings(text)
    assert command[0] == str(Path(sys.executable).parent / "teamclaude")  # this venv's entry point
    assert environment["TEAMCLAUDE_CONFIG"] == str(cfg.config)
    # As systemd starts it: the user manager's environment (no TEAMCLAUDE_CONFIG) plus the unit's.
    manager_env = {name: value for name, value in cfg.env().items() if name != "TEAMCLAUDE_CONFIG"}
    proxy = ProxyProcess(None, command=command, env={**manager_env, **environment}).start()
    try:
        assert proxy.port is not None
        status, body = post(https(proxy.port, tls.ca), message_body())
        assert status == 200, body
        assert fake.requests[-1].account == "alice"
        assert proxy.process is not None
        proxy.process.send_signal(signal.SIGINT)  # KillSignal=SIGINT
        assert proxy.process.wait(30) == 0  # within TimeoutStopSec=30, and not a failure
    finally:
        proxy.stop()


def test_the_proxy_listener_speaks_tls_with_the_given_certificate(tmp_path: Path, fake: FakeUpstream,
                                                                   tls: TlsFiles) -> None:
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    command = [sys.executable, "-m", "teamclaude.cli", "server", "--",
               "--set", f"certs=*={tls.server}", "--set", "flow_detail=0"]
    with ProxyProcess(None, command=command, env=cfg.env()) as proxy:
        assert proxy.port is not None
        status, body = post(https(proxy.port, tls.ca, server_name=SERVER_NAME), message_body(stream=True))
        assert status == 200, body
        assert b"event: message_stop" in body  # a stream, relayed whole through TLS
        assert fake.requests[-1].account == "alice"
        with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust the CA
            post(http.client.HTTPSConnection("127.0.0.1", proxy.port, context=ssl.create_default_context(),
                                             timeout=30), message_body())
        # The same port still answers plain HTTP (mitmproxy tells them apart by the first
        # bytes): docs/deploy.md says to keep it off untrusted networks for that reason.
        status, _ = post(http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30), message_body())
        assert status == 200

