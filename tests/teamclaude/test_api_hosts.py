"""`teamclaude api` sends credentials only to the configured Anthropic hosts (behaviour §13)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from teamclaude.cli import main
from teamclaude.cli_common import CommandError
from teamclaude.cli_proxy import api_url
from teamclaude.settings import Settings

API_KEY = "sk-ant-api03-ci-key-secret"


class Recorder:
    """A loopback HTTP server that records requests and answers with a fixed status and headers."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.seen: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    server = Recorder(200, {"content-type": "application/json"})
    yield server
    server.stop()


def test_a_redirect_to_another_host_is_not_followed(tmp_path: Path, monkeypatch, capsys, elsewhere) -> None:
    upstream = Recorder(302, {"location": elsewhere.url + "/steal"})
    try:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({"upstream": upstream.url, "state_file": str(tmp_path / "state.json")}))
        (tmp_path / "accounts.yaml").write_text(yaml.safe_dump(
            {"proxy_key": "tc-x", "accounts": [{"name": "ci", "type": "apikey", "api_key": API_KEY}]}))
        monkeypatch.setenv("TEAMCLAUDE_CONFIG", str(config))
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        code = main(["api", "/v1/models"])
        captured = capsys.readouterr()
    finally:
        upstream.stop()
    assert upstream.seen and upstream.seen[0]["x-api-key"] == API_KEY
    assert elsewhere.seen == []
    assert code == 1 and "not following the redirect" in captured.err
    assert API_KEY not in captured.out + captured.err


@pytest.mark.parametrize("path", [
    "https://example.com/v1/models", "HTTPS://example.com/v1/models", "https://api.anthropic.com@example.com/x",
    "https://api.anthropic.com.example.com/x", "http://api.anthropic.com/v1/models", "ftp://api.anthropic.com/x",
    "https://api.anthropic.com:8443/v1/models",
])
def test_other_hosts_schemes_and_ports_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(CommandError, match="refusing to send account credentials"):
        api_url(Settings.defaults(tmp_path / "config.yaml"), path)


@pytest.mark.parametrize("path, expected", [
    ("/v1/models", "https://api.anthropic.com/v1/models"),
    ("v1/models", "https://api.anthropic.com/v1/models"),
    ("//example.com/x", "https://api.anthropic.com/example.com/x"),
    ("@example.com/x", "https://api.anthropic.com/@example.com/x"),
    ("https://API.anthropic.com/v1/models", "https://API.anthropic.com/v1/models"),
    ("https://platform.claude.com/v1/oauth/token", "https://platform.claude.com/v1/oauth/token"),
])
def test_paths_stay_on_the_configured_hosts(tmp_path: Path, path: str, expected: str) -> None:
    assert api_url(Settings.defaults(tmp_path / "config.yaml"), path) == expected
