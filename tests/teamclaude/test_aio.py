"""The rules that make cancelling the proxy's long-running tasks always stop them."""

from __future__ import annotations

import asyncio

import pytest

from teamclaude.aio import raise_if_cancelled


async def test_a_loop_whose_cancellation_a_library_swallowed_still_stops() -> None:
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            raise_if_cancelled()
            rounds += 1
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                pass  # swallowed, as Python 3.11's wait_for does in a race

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    async with asyncio.timeout(5):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert rounds == 1


async def test_a_bounded_wait_ended_by_its_result_and_a_cancellation_at_once_is_cancelled() -> None:
    """The race in which 3.11's `wait_for` returns the result: `asyncio.timeout`, which the
    proxy's own bounded waits use, raises the cancellation."""
    ready = asyncio.get_running_loop().create_future()
    after_the_wait = asyncio.Event()

    async def bounded_wait() -> None:
        async with asyncio.timeout(5):
            await ready
        after_the_wait.set()

    task = asyncio.create_task(bounded_wait())
    await asyncio.sleep(0)
    ready.set_result(None)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not after_the_wait.is_set()
