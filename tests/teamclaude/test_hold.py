import asyncio
import json

from teamclaude.hold import Waker, retry_after_seconds, throttled_response_parts

NOW = 1_800_000_000.0


def test_retry_after_is_clamped_to_what_claude_code_accepts():
    assert retry_after_seconds(NOW + 3 * 3600, NOW, 59) == 59
    assert retry_after_seconds(NOW + 12.2, NOW, 59) == 13
    assert retry_after_seconds(NOW - 5, NOW, 59) == 1
    assert retry_after_seconds(None, NOW, 59) == 59


def test_body_names_the_accounts_the_soonest_and_the_real_wait():
    body, headers = throttled_response_parts(3, ("grace", NOW + 3720), NOW, 300, 59)
    message = json.loads(body)["error"]["message"]
    assert json.loads(body)["error"]["type"] == "rate_limit_error"
    assert "all 3 accounts" in message and "grace" in message and "1h02m" in message and "held 5m00s" in message
    assert headers["retry-after"] == "59" and headers["x-should-retry"] == "true"


async def test_waker_wakes_all_waiters_at_once():
    waker = Waker()
    woken = []

    async def waiter(n):
        await waker.wait(30)
        woken.append(n)

    tasks = [asyncio.create_task(waiter(n)) for n in range(5)]
    await asyncio.sleep(0)
    waker.notify()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert sorted(woken) == [0, 1, 2, 3, 4]
