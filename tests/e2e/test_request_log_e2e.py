"""The request log through the real proxy: the mitmproxy option, and settings applied live."""

from __future__ import annotations

import json
import os

import yaml

from teamclaude.fakeupstream import FakeUpstream
from teamclaude.request_log import written_at
from tests.e2e.cli_runner import wait_until
from tests.e2e.harness import call, message_body, oauth_account, start_proxy, write_config


def records(directory) -> list[dict]:
    """The records in `directory`, read as any reader would: log files only (a record being
    written is a hidden temporary file until it is complete)."""
    try:
        names = sorted(name for name in os.listdir(directory) if written_at(name) is not None)
    except FileNotFoundError:
        return []
    return [json.loads((directory / name).read_text()) for name in names]


def test_log_dir_option_and_live_settings_changes(tmp_path):
    alice = oauth_account("alice")
    option_dir, settings_dir = tmp_path / "from-option", tmp_path / "from-settings"
    with FakeUpstream([alice]) as fake:
        cfg = write_config(tmp_path / "cfg", fake.url, [alice])
        with start_proxy(cfg, ["--set", f"teamclaude_log_dir={option_dir}"]) as proxy:
            assert call(proxy.url, "POST", "/v1/messages", message_body(),
                        headers={"x-claude-code-session-id": "s-42"})[0] == 200
            [first] = wait_until(lambda: records(option_dir), "the first record")
            assert (first["kind"], first["account"], first["session"], first["status"]) == ("pooled", "alice", "s-42", 200)
            assert first["usage"]["output_tokens"] > 0 and "body" not in first["request"]

            # The option wins over the settings; without it, the settings apply without a restart.
            settings = yaml.safe_load(cfg.config.read_text())
            cfg.config.write_text(yaml.safe_dump({**settings, "log_dir": str(settings_dir), "log_bodies": True}))
            assert call(proxy.url, "POST", "/teamclaude/reload")[0] == 200
            assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
            wait_until(lambda: len(records(option_dir)) == 3, "reload and request records in the option's directory")
            assert not settings_dir.exists()
            assert json.loads(records(option_dir)[-1]["request"]["body"])["model"] == "claude-sonnet-4-5"

        with start_proxy(cfg) as proxy:
            assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
            wait_until(lambda: [r for r in records(settings_dir) if r["kind"] == "pooled"], "a record from the settings")
