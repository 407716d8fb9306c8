"""A real `redis-server` for tests: on a free loopback port, in its own directory, stoppable,
killable and restartable on the same port (Redis lost mid-run and back)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """`url` is redis://127.0.0.1:PORT/0; nothing is saved to disk (no RDB, no AOF)."""

    def __init__(self, binary: str, directory: Path, password: str | None = None) -> None:
        self.binary = binary
        self.directory = directory
        self.password = password
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self, timeout: float = 10.0, *, same_port: bool = False) -> RedisServer:
        """Start on a free port, or (`same_port`, a restart) on the one it had."""
        if not same_port:
            self.port = 0
        for _ in range(5):
            port = self.port or _free_port()
            args = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no",
                    "--loglevel", "warning"]
            if self.password:
                args += ["--requirepass", self.password]
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.port = port
            if self._wait_ready(timeout):
                return self
            self.process.kill()
            self.process.wait()
            if not same_port:
                self.port = 0
        raise RuntimeError("redis-server did not start")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                with self.client() as probe:
                    # Ours, not another test's that took the port first (ours then fails to bind).
                    if probe.info("server")["process_id"] == self.process.pid:
                        return True
            except redis.RedisError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the connection drops with no goodbye, as a crashed or unplugged Redis."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, timeout: float = 30.0) -> None:
        """Back on the same port (empty: nothing was saved), as a restarted Redis."""
        self.stop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.start(min(10.0, max(0.1, deadline - time.monotonic())), same_port=True)
                return
            except RuntimeError:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"redis-server did not come back on port {self.port} "
                                       f"within {timeout:g} s") from None
                time.sleep(0.1)  # the old socket may linger a moment
