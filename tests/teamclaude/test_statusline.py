"""`teamclaude statusline`, run as Claude Code runs it: a subprocess with JSON on stdin."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.cli_runner import cli_env, run_cli
from tests.e2e.harness import ConfigDir, write_config

CLAUDE_INPUT = {
    "hook_event_name": "Status", "session_id": "main0001-aaaa", "transcript_path": "/tmp/x.jsonl",
    "cwd": "/work", "model": {"id": "claude-sonnet-4-5", "display_name": "Sonnet"},
    "workspace": {"current_dir": "/work", "project_dir": "/work"}, "version": "2.1.332",
    "cost": {"total_cost_usd": 0.01},
}


def window(utilization: float, reset: float, status: str = "allowed") -> dict:
    return {"utilization": utilization, "reset": reset, "status": status}


def write_state(cfg: ConfigDir, now: float, **changes: object) -> None:
    """A state file as the proxy writes it: alice (Max) and bob (Pro), an API key, a
    disabled account, and the session Claude Code asks about on alice."""
    accounts = [
        {"name": "alice@example.com", "kind": "oauth", "plan": "max", "status": "ok", "disabled": False,
         "windows": {"5h": window(0.40, now + 3630), "7d": window(0.60, now + 3.5 * 86400 + 30),
                     "7d_sonnet": window(0.30, now + 2 * 86400 + 30)}},
        {"name": "bob@example.com", "kind": "oauth", "plan": "pro", "status": "ok", "disabled": False,
         "windows": {"5h": window(0.90, now + 7230, "allowed_warning"), "7d": window(0.20, now + 5 * 86400)}},
        {"name": "ci-key", "kind": "apikey", "plan": None, "status": "ok", "disabled": False, "windows": {}},
        {"name": "off", "kind": "oauth", "plan": "max", "status": "disabled", "disabled": True,
         "windows": {"5h": window(1.0, now + 60, "rejected")}},
    ]
    state = {"version": 1, "seq": 3, "written_at": now, "accounts": accounts,
             "sessions": [{"id": "main0001-aaaa", "account": "alice@example.com"}], **changes}
    cfg.state.parent.mkdir(parents=True, exist_ok=True)
    cfg.state.write_text(json.dumps(state))


@pytest.fixture
def cfg(tmp_path: Path) -> ConfigDir:
    return write_config(tmp_path, "http://127.0.0.1:9", [])


def statusline(cfg: ConfigDir, stdin: str = json.dumps(CLAUDE_INPUT), **env: str) -> str:
    result = run_cli(cfg, "statusline", stdin=stdin, **env)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1
    return result.stdout.rstrip("\n")


def test_one_line_about_the_pool_for_this_session(cfg: ConfigDir) -> None:
    write_state(cfg, time.time())
    # 5h: (5 × 40 % + 1 × 90 %) / 6 = 48 %; 7d: (5 × 60 % + 20 %) / 6 = 53 %.
    assert statusline(cfg, NO_COLOR="1") == (
        "pool 5h 48% ↻1h00m · 7d 53% ↻3d12h · sonnet 7d 30% ↻2d00h · 2/2 free · on alice"
    )


def test_colours_by_status_unless_no_color(cfg: ConfigDir) -> None:
    write_state(cfg, time.time())
    line = statusline(cfg)
    assert "\x1b[32m5h 48%\x1b[0m" in line and "\x1b[32m2/2 free\x1b[0m" in line


def test_without_input_or_with_garbage_it_still_prints_the_pool(cfg: ConfigDir) -> None:
    write_state(cfg, time.time())
    expected = "pool 5h 48% ↻1h00m · 7d 53% ↻3d12h · 2/2 free"
    assert statusline(cfg, stdin="", NO_COLOR="1") == expected
    assert statusline(cfg, stdin="not json {", NO_COLOR="1") == expected
    assert statusline(cfg, stdin="[1, 2]", NO_COLOR="1") == expected


def test_no_room_left_and_a_stale_or_missing_state(cfg: ConfigDir) -> None:
    now = time.time()
    full = {"name": "a", "kind": "oauth", "plan": "pro", "windows": {"5h": window(1.0, now + 3630, "rejected")}}
    write_state(cfg, now, accounts=[full], sessions=[])
    assert statusline(cfg, NO_COLOR="1") == "pool 5h 100% ↻1h00m · 0/1 free"
    write_state(cfg, now - 7200)
    assert statusline(cfg, NO_COLOR="1") == "teamclaude: proxy not running (state 2h00m old)"
    cfg.state.unlink()
    assert statusline(cfg, NO_COLOR="1") == "teamclaude: no proxy state (start it with 'teamclaude server')"


def test_a_broken_settings_file_is_one_line_not_a_traceback(cfg: ConfigDir) -> None:
    cfg.config.write_text("port: [\n")
    line = statusline(cfg, NO_COLOR="1")
    assert line.startswith("teamclaude: ") and "Traceback" not in line


def test_it_imports_neither_rich_nor_mitmproxy(cfg: ConfigDir) -> None:
    write_state(cfg, time.time())
    probe = ("import io, sys; from teamclaude.cli import main; main(['statusline']); "
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'mitmproxy', 'asyncio')); "
             "print(heavy)")
    result = subprocess.run([sys.executable, "-c", probe], input="{}", capture_output=True, text=True,
                            env=cli_env(cfg, NO_COLOR="1"), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
