"""SharedState against a real redis-server: two proxies' views in one event loop, each with
its own Router, agreeing through Redis (the scripts' compare-and-set rules included)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from routing.config import RoutingConfig
from routing.engine import Router
from routing.ratelimits import parse_ratelimit_headers
from routing.types import AccountSpec, RequestInfo
from teamclaude.shared import names, scripts, state
from teamclaude.shared.state import SharedState
from tests.tasks import cancel_and_wait

ACCOUNTS = [AccountSpec("alice", "oauth"), AccountSpec("bob", "oauth")]
STOP_WITHIN_S = 5.0


class Proxy:
    """One proxy's routing view and its SharedState, run as a task."""

    def __init__(self, url: str, tag: str) -> None:
        self.router = Router(RoutingConfig(), ACCOUNTS)
        self.changes = 0
        self.shared = SharedState(url, self.router, time.time, self._changed, instance_id=f"proxy-{tag}")
        self.task: asyncio.Task[None] | None = None

    def _changed(self) -> None:
        self.changes += 1

    def start(self) -> Proxy:
        self.task = asyncio.create_task(self.shared.run())
        return self

    async def stop(self) -> None:
        """Cancel the task and see it end (a task that runs on after a cancellation fails
        the test rather than hanging it)."""
        if self.task is not None:
            task, self.task = self.task, None
            await cancel_and_wait(task, "the shared-state task", STOP_WITHIN_S)


async def eventually(condition: Callable[[], Any], within: float = 5.0) -> Any:
    deadline = time.monotonic() + within
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.01)
    return value


@pytest.fixture
async def proxies(redis_server) -> AsyncIterator[Callable[[str], Proxy]]:
    started: list[Proxy] = []

    def start(tag: str) -> Proxy:
        proxy = Proxy(redis_server.url, tag).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        await proxy.stop()


def request(conversation: str) -> RequestInfo:
    return RequestInfo("/v1/messages", model="claude-sonnet-4-5", session_id=conversation)


async def test_a_bench_deadline_only_extends(proxies, redis_server):
    a, b = proxies("a"), proxies("b")
    await eventually(lambda: a.shared.healthy and b.shared.healthy)
    now = time.time()
    a.router.bench("alice", now + 100, "429 retry-after", now)
    a.shared.account_changed("alice")
    await eventually(lambda: b.router.benches_of("alice", time.time()).get(None))
    assert b.router.benches_of("alice", time.time())[None][0] == pytest.approx(now + 100)
    b.router.bench("bob", now + 30, "529 overloaded", now)
    b.shared.account_changed("bob")
    await eventually(lambda: a.router.benches_of("bob", time.time()).get(None))
    # A shorter bench of alice, written late by another proxy, is refused by the script.
    stored = redis_server.client().get(names.bench("alice", None))
    shorter = json.dumps({"type": "bench", "account": "alice", "until": now + 10, "reason": "late", "by": "c"})
    assert redis_server.client().eval(
        scripts.SET_IF_GREATER, 2, names.bench("alice", None), names.EVENTS, "until",
        repr(now + 10), json.dumps({"until": now + 10, "reason": "late"}), 10_000, shorter) == 0
    assert redis_server.client().get(names.bench("alice", None)) == stored
    assert 0 < redis_server.client().pttl(names.bench("alice", None)) <= 100_000


async def test_two_proxies_binding_one_conversation_at_once_agree_on_the_first(proxies):
    a, b = proxies("a"), proxies("b")
    await eventually(lambda: a.shared.healthy and b.shared.healthy)
    now = time.time()
    first = a.router.select(request("conv"), now, exclude={"bob"})
    second = b.router.select(request("conv"), now + 1, exclude={"alice"})  # later, but second to write
    assert first is not None and second is not None and (first.account, second.account) == ("alice", "bob")
    a.shared.sent("flow-a", first.account, request("conv"))
    await eventually(lambda: a.shared._bindings.get("conv") == "alice")
    b.shared.sent("flow-b", second.account, request("conv"))  # lost the race: adopts alice
    await eventually(lambda: b.router.binding_of("conv")[0] == "alice")
    c = proxies("c")  # a third proxy that never saw it looks it up before routing
    await eventually(lambda: c.shared.healthy)
    await c.shared.prepare(request("conv"))
    assert c.router.binding_of("conv")[0] == "alice"
    decision = c.router.select(request("conv"), time.time())
    assert decision is not None and decision.account == "alice"


async def test_the_newest_rate_limit_reading_wins(proxies, redis_server):
    a, b = proxies("a"), proxies("b")
    await eventually(lambda: a.shared.healthy and b.shared.healthy)
    reset = int(time.time()) + 3600
    headers = {"anthropic-ratelimit-unified-5h-utilization": "0.42", "anthropic-ratelimit-unified-5h-reset": str(reset),
               "anthropic-ratelimit-unified-5h-status": "allowed"}
    a.shared.observed("alice", 200, parse_ratelimit_headers(headers.items()))
    await eventually(lambda: b.router.snapshot(time.time())["accounts"][0]["windows"].get("5h"))
    assert b.router.snapshot(time.time())["accounts"][0]["windows"]["5h"]["utilization"] == pytest.approx(0.42)
    # An older reading (observed before B's own newer one) does not replace it.
    b.router.observe("alice", 200, parse_ratelimit_headers({**headers, "anthropic-ratelimit-unified-5h-utilization": "0.5"}.items()),
                     time.time())
    assert not b.router.observe_shared("alice", 200, parse_ratelimit_headers(headers.items()), time.time() - 60)
    assert b.router.snapshot(time.time())["accounts"][0]["windows"]["5h"]["utilization"] == pytest.approx(0.5)
    assert 0 < redis_server.client().pttl(names.window("alice")) <= state.WINDOW_TTL_S * 1000


async def test_a_dead_proxys_leases_expire_and_the_others_count_only_live_ones(proxies, redis_server, monkeypatch):
    monkeypatch.setattr(state, "LEASE_S", 3.0)
    a, b = proxies("a"), proxies("b")
    await eventually(lambda: a.shared.healthy and b.shared.healthy)
    for n in range(3):
        a.shared.sent(f"flow-{n}", "alice", request(f"c{n}"))
    await eventually(lambda: b.router.remote_inflight("alice") == 3)
    a.shared.finished("flow-0", "alice", request("c0"), None, 0.0, None)
    await eventually(lambda: b.router.remote_inflight("alice") == 2)
    await a.stop()  # dies without a goodbye: its leases stay until they expire
    assert redis_server.client().zcard(names.inflight("alice")) == 2
    await eventually(lambda: b.router.remote_inflight("alice") == 0, within=8.0)
    assert redis_server.client().zcard(names.inflight("alice")) == 0


async def test_redis_lost_degrades_then_resyncs_its_own_live_state(proxies, redis_server):
    a = proxies("a")
    await eventually(lambda: a.shared.healthy)
    now = time.time()
    a.router.bench("bob", now + 600, "5h window rejected", now)
    a.shared.account_changed("bob")
    a.shared.sent("flow-1", "alice", request("conv"))
    await eventually(lambda: redis_server.client().zcard(names.inflight("alice")) == 1)
    redis_server.kill()
    await eventually(lambda: not a.shared.healthy)
    assert a.shared.degraded_since is not None and a.shared.status()["error"]
    redis_server.restart()
    await eventually(lambda: a.shared.healthy, within=10.0)
    client = redis_server.client()
    assert client.get(names.bench("bob", None)) is not None  # written again by the resync
    assert client.zcard(names.inflight("alice")) == 1
    assert a.shared.status()["degraded_since"] is None


async def test_a_cancellation_a_library_swallows_still_stops_the_shared_task(proxies, monkeypatch):
    """On Python 3.11 `asyncio.wait_for`, which redis-py sends every command through, returns
    instead of raising when the cancellation comes in the same loop turn as the answer. The
    heartbeat then ran on forever, and so did whoever awaited the task (CI hung on this test
    module). Here a heartbeat swallows its cancellation every time, on any Python."""
    beating = asyncio.Event()
    beat = SharedState._beat

    async def beat_then_swallow_a_cancellation(self: SharedState, client: Any) -> None:
        await beat(self, client)
        beating.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # what 3.11's wait_for does when the awaited send finished in the same turn

    monkeypatch.setattr(SharedState, "_beat", beat_then_swallow_a_cancellation)
    a = proxies("a")
    async with asyncio.timeout(10):
        await beating.wait()
    assert a.task is not None
    task = a.task
    await a.stop()  # within STOP_WITHIN_S, or the test fails
    assert task.cancelled()


async def test_run_ends_when_cancelled_as_redis_py_sends_a_command(redis_server):
    """The same race through redis-py itself, unpatched: run() cancelled 0..13 loop steps after
    a write was queued, so the cancellation meets the pipeline's send (before the fix, 11 of
    42 such cancellations were lost on Python 3.11 and run() went on for ever)."""
    for steps in range(14):
        proxy = Proxy(redis_server.url, f"p{steps}").start()
        await eventually(lambda p=proxy: p.shared.healthy)
        proxy.shared.sent("flow", "alice", request(f"conv-{steps}"))
        for _ in range(steps):
            await asyncio.sleep(0)
        await proxy.stop()


async def test_run_ends_when_cancelled_while_it_connects_and_resyncs(redis_server):
    """Cancelled 0..39 loop steps after it started: while it connects, loads its scripts,
    subscribes and resyncs, each a command redis-py sends through 3.11's wait_for. A lost
    cancellation there went on into the session for ever (45 of 100 random cancellations in
    the first 30 ms before the check after resync, on Python 3.11)."""
    for steps in range(40):
        proxy = Proxy(redis_server.url, f"c{steps}").start()
        for _ in range(steps):
            await asyncio.sleep(0)
        await proxy.stop()
