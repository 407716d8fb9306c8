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

