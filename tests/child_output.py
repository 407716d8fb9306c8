"""A child process's output, read line by line with a deadline.

`pipe.readline()` waits for as long as the child neither prints nor exits: a child stuck
before its line would hang the test forever. Here a thread reads, so every wait has a bound
and a timeout names what did not come (and shows what did).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import IO


class Lines:
    """Every line of a text `pipe` as the child prints it; `seen` holds those read so far."""

    def __init__(self, pipe: IO[str], name: str = "the child") -> None:
        self.name = name
        self.seen: list[str] = []
        self.ended = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, args=(pipe,), name=f"output of {name}", daemon=True).start()

    def _drain(self, pipe: IO[str]) -> None:
        try:
            for line in pipe:
                self._queue.put(line)
        except (OSError, ValueError):  # closed under the thread: the test is over
            pass
        finally:
            self._queue.put(None)

    def wait_for(self, wanted: Callable[[str], object], what: str, timeout: float = 30.0) -> str:
        """The next line for which `wanted` is true; AssertionError naming `what` when the
        output ends, or `timeout` passes, before one."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what} from {self.name}; "
                                     f"it printed:\n{self.text()}") from None
            if line is None:
                self.ended = True
                break
            self.seen.append(line)
            if wanted(line):
                return line
        raise AssertionError(f"{self.name} ended its output before {what}; it printed:\n{self.text()}")

    def until_end(self, timeout: float = 30.0) -> str:
        """All the output, once the child has closed it (it exited)."""
        if not self.ended:
            try:
                self.wait_for(lambda line: False, "the end of its output", timeout)
            except AssertionError:
                if not self.ended:
                    raise
        return self.text()

    def text(self) -> str:
        return "".join(self.seen)
