"""Stopping an asyncio task in a test, with a bound."""

from __future__ import annotations

import asyncio
from contextlib import suppress


async def cancel_and_wait(task: asyncio.Task, what: str, timeout: float = 10.0) -> None:
    """Cancel `task` and wait for its end; AssertionError naming `what` when it goes on.

    `await task` would wait for ever on a task that lost its cancellation (Python 3.11's
    wait_for can lose one). Such a task is cancelled again before failing, so that the event
    loop's own teardown, which cancels and awaits every task left, does not hang on it too.
    """
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        for _ in range(10):
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                break
        raise AssertionError(f"{what} still ran {timeout:g} s after it was cancelled (a lost cancellation)")
    with suppress(asyncio.CancelledError):
        task.result()  # raises what ended it otherwise
