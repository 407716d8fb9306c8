"""Runs a command in a pseudo-terminal of a given size and reads its screen output."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time


# Run first in the child (after setsid, in its own session): make the pty, its stdin, the
# controlling terminal, so Ctrl-C typed into it raises SIGINT as in a real terminal; then
# become the command. A separate program rather than a `preexec_fn`: Python code run between
# fork and exec can deadlock on a lock another thread of this process held at the fork
# (CPython documents `preexec_fn` as unsafe with threads; these tests run a fake upstream's
# thread beside it), and Popen would then wait for the exec forever.
_TAKE_TERMINAL_THEN_EXEC = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execvp(sys.argv[1], sys.argv[1:])"
)


class PtyProcess:
    def __init__(self, argv: list[str], env: dict[str, str], columns: int, rows: int, cwd: str | None = None) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _TAKE_TERMINAL_THEN_EXEC, *argv],
            stdin=self.slave, stdout=self.slave, stderr=self.slave, env=env, cwd=cwd,
            start_new_session=True, close_fds=True,
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
