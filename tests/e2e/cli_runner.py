"""Run the `teamclaude` CLI as a separate process against a test config directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from teamclaude.proxyproc import ProxyProcess
from tests.e2e.harness import ConfigDir

T = TypeVar("T")

CLI_TIMEOUT_S = 60.0


def cli_env(cfg: ConfigDir, **extra: str) -> dict[str, str]:
    return {**os.environ, **cfg.env(), **extra}


def run_cli(cfg: ConfigDir, *args: str, stdin: str = "", **extra_env: str) -> subprocess.CompletedProcess[str]:
    """`teamclaude ARGS` with the test's isolated environment.

    The child gets its own session, so it has no controlling terminal: prompts such as
    getpass read from stdin, as they do when the CLI is scripted.
    """
    return subprocess.run(
        [sys.executable, "-m", "teamclaude.cli", *args], input=stdin, capture_output=True, text=True,
        env=cli_env(cfg, **extra_env), timeout=CLI_TIMEOUT_S, start_new_session=True,
    )


def wait_until(probe: Callable[[], T | None], what: str, timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy; AssertionError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_for_published_address(cfg: ConfigDir, proxy: ProxyProcess) -> None:
    """Wait until the proxy's state file names its real port (the CLI finds it there)."""

    def published() -> bool:
        try:
            state = json.loads(cfg.state.read_text())
        except (OSError, ValueError):
            return False
        return (state.get("proxy") or {}).get("listen") == proxy.url

    wait_until(published, f"the state file to name {proxy.url}")
