"""Run the real proxy (`mitmdump -s teamclaude_addon.py`) as a child process.

Used by `teamclaude demo`, the end-to-end tests and the benchmarks, so all of them exercise
exactly what a user runs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from teamclaude.urls import connect_host, http_url

# Logged by the addon once mitmproxy listens (so a script that failed to load never matches).
_SERVING = re.compile(r"teamclaude: serving http://\[?([0-9a-fA-F.:]+?)\]?:(\d+) ")


def addon_path() -> Path:
    spec = importlib.util.find_spec("teamclaude_addon")
    if spec is None or spec.origin is None:
        raise RuntimeError("teamclaude_addon is not installed: run `pip install -e .` in the repository")
    return Path(spec.origin)


def mitmproxy_command(tool: str = "mitmdump") -> list[str]:
    """The mitmproxy tool of the running interpreter's environment."""
    script = Path(sys.executable).parent / tool
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", f"from mitmproxy.tools.main import {tool}; {tool}()"]


class ProxyProcess:
    """A mitmdump child with the teamclaude addon; `.url` once it is listening."""

    def __init__(
        self,
        config_path: Path | None,
        extra_args: Sequence[str] = (),
        *,
        tool: str = "mitmdump",
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        echo: bool = False,
    ) -> None:
        if command is not None:
            self.args = list(command)
        else:
            self.args = [*mitmproxy_command(tool), "-s", str(addon_path())]
            if config_path is not None:
                self.args += ["--set", f"teamclaude_config={config_path}"]
        self.args += list(extra_args)
        self.env = {**os.environ, **(env or {})}
        self.echo = echo
        self.output: list[str] = []
        self.host: str | None = None
        self.port: int | None = None
        self._listening = threading.Event()
        self._ended = threading.Event()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return http_url(self.host or "", self.port)

    def start(self, timeout: float = 30.0) -> ProxyProcess:
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            env=self.env, start_new_session=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        self._listening.wait(timeout)
        if self.port is None:
            self.stop()
            raise RuntimeError("proxy did not start:\n" + "".join(self.output[-40:]))
        return self

    def _drain(self) -> None:
        """Read the child's output to its end. Whatever happens here, the waits of `start`
        and `stop` are released (and undecodable bytes never stop the reading: a child
        whose pipe is no longer read blocks on its next log line)."""
        assert self.process is not None and self.process.stdout is not None
        try:
            for line in self.process.stdout:
                self.output.append(line)
                if self.echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                match = _SERVING.search(line)
                if match and self.port is None:
                    self.host = connect_host(match.group(1))
                    self.port = int(match.group(2))
                    self._listening.set()
        finally:
            self._ended.set()
            self._listening.set()

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._ended.wait(timeout)
        return self.process.returncode

    def __enter__(self) -> ProxyProcess:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
