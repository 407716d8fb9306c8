"""What the proxy's long-running asyncio tasks do so that cancelling them always stops them.

On Python 3.11 `asyncio.wait_for` returns its awaitable's result, instead of raising, when a
cancellation arrives in the same loop turn as that result (CPython gh-86296, fixed in 3.12).
redis-py wraps every command it sends in `wait_for`, so a `while True` task cancelled at that
moment ran on forever (a test awaiting it hung CI; a reloaded script would leave it running
beside its successor). Two rules follow: our own bounded waits use `asyncio.timeout` (which
counts cancellations right on 3.11), and each loop of a long-running task starts with `raise_if_cancelled()`, because
`Task.cancelling()` still counts a request that a library swallowed.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise CancelledError when the current task was asked to stop, even if the request's
    CancelledError was swallowed on the way (it is then raised here instead)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
