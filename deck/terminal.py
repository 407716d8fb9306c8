"""Raw keyboard input: cbreak mode on a terminal, restored however the Deck ends."""

from __future__ import annotations

import os
import select
import termios
import tty
from types import TracebackType

ESCAPE_GRACE_S = 0.03  # an escape sequence split across reads arrives within this


class KeyboardInput:
    """Context manager: stdin in cbreak mode (no echo, no line buffering; Ctrl-C still works)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list | None = None

    def __enter__(self) -> KeyboardInput:
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.restore()

    def restore(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def read(self, timeout: float) -> bytes:
        """Bytes typed within `timeout` seconds (b"" when none).

        Raises EOFError when the terminal went away (a closed pty reads as ready forever).
        """
        if not self._ready(timeout):
            return b""
        try:
            data = os.read(self.fd, 1024)
        except OSError as exc:
            raise EOFError("terminal closed") from exc
        if not data:
            raise EOFError("terminal closed")
        while data.endswith(b"\x1b") and self._ready(ESCAPE_GRACE_S):
            more = os.read(self.fd, 1024)
            if not more:
                break
            data += more
        return data

    def _ready(self, timeout: float) -> bool:
        readable, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        return bool(readable)
