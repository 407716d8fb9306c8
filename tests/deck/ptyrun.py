"""Runs a command in a pseudo-terminal of a given size and reads its screen output."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time


def _take_controlling_terminal() -> None:
    """In the child, after setsid: make the pty (its stdin) the controlling terminal, so
    Ctrl-C typed into it raises SIGINT as in a real terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyProcess:
    def __init__(self, argv: list[str], env: dict[str, str], columns: int, rows: int, cwd: str | None = None) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(
            argv, stdin=self.slave, stdout=self.slave, stderr=self.slave, env=env, cwd=cwd,
            start_new_session=True, close_fds=True, preexec_fn=_take_controlling_terminal,
        )
        self.output = b""

    def read_until(self, needle: bytes, timeout: float = 15.0) -> bool:
        """Read output until `needle` appears after what was already consumed."""
        start = len(self.output)
        deadline = time.monotonic() + timeout
        while needle not in self.output[start:]:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._pump(remaining):
                return needle in self.output[start:]
        return True

    def _pump(self, timeout: float) -> bool:
        readable, _, _ = select.select([self.master], [], [], min(timeout, 0.5))
        if readable:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return False
            if not chunk:
                return False
            self.output += chunk
        return self.process.poll() is None or bool(readable)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._pump(0.1)
        return self.process.wait(timeout=max(0.1, deadline - time.monotonic()))

    def echo_enabled(self) -> bool:
        return bool(termios.tcgetattr(self.slave)[3] & termios.ECHO)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
