"""Ending or misusing the CLI gives one clear line and a clean exit, never a traceback
(issue 12, item 12). Each runs the real `teamclaude` as a separate process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from teamclaude.statefile import read_state
from tests.child_output import Lines
from tests.e2e.cli_runner import CLI_TIMEOUT_S, cli_env, run_cli, wait_until
from tests.e2e.harness import write_config


def test_demo_with_an_impossible_port_says_so_in_one_line(tmp_path):
    result = run_cli(write_config(tmp_path, "http://127.0.0.1:9", []), "demo", "--port", "99999", "--no-deck")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == "teamclaude demo: error: argument --port: '99999' is not a TCP port (0-65535)"


def test_login_api_with_no_input_says_so_in_one_line(tmp_path):
    result = run_cli(write_config(tmp_path, "http://127.0.0.1:9", []), "login", "--api")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip() == "teamclaude: no API key given: standard input ended before a line was read"


def test_quitting_demo_traffic_mid_stream_is_clean(tmp_path):
    cfg = write_config(tmp_path, "http://127.0.0.1:9", [])
    demo = subprocess.Popen(
        [sys.executable, "-m", "teamclaude.cli", "demo", "--traffic", "--no-deck", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(cfg), start_new_session=True,
    )
    try:
        assert demo.stdout is not None and demo.stderr is not None
        out, err = Lines(demo.stdout, "the demo"), Lines(demo.stderr, "the demo's stderr")
        out.wait_for(lambda line: "Running until Ctrl-C" in line, "'Running until Ctrl-C'", timeout=CLI_TIMEOUT_S)
        [config] = [line.split("=", 1)[1].strip() for line in out.seen if "export TEAMCLAUDE_CONFIG=" in line]
        state = Path(config).with_name("state.json")
        # Quit while the traffic threads have streams in flight, so the cut reaches them mid-read.
        wait_until(lambda: any(a.get("inflight") for a in (read_state(state) or {}).get("accounts", [])) or None,
                   "streams in flight", timeout=CLI_TIMEOUT_S)
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=CLI_TIMEOUT_S)
        stderr = err.until_end()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        demo.stdout.close()
        demo.stderr.close()
    assert "Traceback" not in stderr, stderr
    assert demo.returncode == 0
