"""Several real proxies on one real Redis (the `shared_state` setting): one pool.

Each proxy has its own settings, accounts and state files, as on separate machines; they
share one fake upstream and one redis-server (the `redis_server` fixture).
"""

from __future__ import annotations

import contextlib
import json
import http.client
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import pytest

from teamclaude.fakeupstream import FakeUpstream
from teamclaude.proxyproc import ProxyProcess
from teamclaude.shared import names
from teamclaude.shared.state import HEARTBEAT_S, LEASE_S
from tests.e2e.cli_runner import run_cli, wait_until
from tests.e2e.harness import call, message_body, oauth_account, proxy_status, shared_of, start_proxy, write_config

SESSION_HEADER = "x-claude-code-session-id"
SLOW_STREAM = {"x-fake-chunks": "400", "x-fake-chunk-interval-ms": "50"}


@pytest.fixture()
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(accounts=[oauth_account("alice"), oauth_account("bob")]) as upstream:
        yield upstream


@pytest.fixture()
def start_proxies(tmp_path, fake, redis_server) -> Iterator[Callable[..., list[ProxyProcess]]]:
    with ExitStack() as stack:
        def start(count: int, **settings: Any) -> list[ProxyProcess]:
            proxies = []
            for index in range(count):
                cfg = write_config(tmp_path / f"machine-{index}", fake.url, [fake.account("alice"), fake.account("bob")],
                                   oauth_token_url=f"{fake.url}/v1/oauth/token", shared_state=redis_server.url,
                                   **settings)
                proxy = stack.enter_context(start_proxy(cfg))
                proxy.cfg = cfg  # type: ignore[attr-defined]
                proxies.append(proxy)
            for proxy in proxies:
                wait_until(lambda p=proxy: shared_of(p)["healthy"], what="connected to Redis")
            return proxies
        yield start


def account_of(proxy: ProxyProcess, name: str) -> dict[str, Any]:
    return next(a for a in proxy_status(proxy)["accounts"] if a["name"] == name)


def ask(proxy: ProxyProcess, session: str | None = None, headers: dict[str, str] | None = None) -> int:
    all_headers = {**({SESSION_HEADER: session} if session else {}), **(headers or {})}
    return call(proxy.url, "POST", "/v1/messages", message_body(), headers=all_headers)[0]


def served_by_session(fake: FakeUpstream) -> dict[str, set[str]]:
    served: dict[str, set[str]] = {}
    for request in fake.requests:
        session = dict((k.lower(), v) for k, v in request.headers).get(SESSION_HEADER)
        if request.path == "/v1/messages" and session:
            served.setdefault(session, set()).add(request.account)
    return served


def test_a_conversation_is_served_by_one_account_whichever_proxy_it_reaches(start_proxies, fake):
    first, *others = start_proxies(3)
    sessions = [f"session-{n}" for n in range(6)]
    for session in sessions:  # bound at the first proxy, spread over both accounts
        assert ask(first, session) == 200
    for proxy in others:
        for session in reversed(sessions):
            assert ask(proxy, session) == 200
    served = served_by_session(fake)
    assert all(len(served[s]) == 1 for s in sessions), served
    assert {next(iter(served[s])) for s in sessions} == {"alice", "bob"}
    def every_proxy_reports_its_conversations() -> bool:  # reported at each heartbeat
        instances = shared_of(others[-1])["instances"]
        return len(instances) == 3 and not any(i["stopped"] for i in instances) and all(
            {c["session"] for c in i["conversations"]} == set(sessions) for i in instances)
    wait_until(every_proxy_reports_its_conversations, what="every proxy's conversations in the pool view")


def test_a_bench_at_one_proxy_is_honoured_by_the_others_within_a_second(start_proxies, fake):
    first, second = start_proxies(2)
    for proxy in (first, second):
        assert call(proxy.url, "POST", "/teamclaude/switch", {"account": "alice"})[0] == 200
    fake.set_usage("alice", five_hour=1.0)
    assert ask(first) == 200  # alice's window is rejected: benched, served by bob
    benched_at = time.monotonic()
    assert [(r.account, r.status) for r in fake.requests] == [("alice", 429), ("bob", 200)]
    wait_until(lambda: account_of(second, "alice")["bench_until"], timeout=1.0, what="the bench at the second proxy")
    assert time.monotonic() - benched_at < 1.0
    assert ask(second) == 200
    assert [r.account for r in fake.requests][2:] == ["bob"]  # the second proxy never tried alice


def test_a_killed_proxys_in_flight_slots_free_themselves(start_proxies, fake):
    first, second = start_proxies(2, max_inflight_per_account=1, probe_gate=False)
    def stream_until_killed() -> None:
        with contextlib.suppress(http.client.HTTPException, OSError):  # its proxy is killed mid-stream
            call(first.url, "POST", "/v1/messages", message_body(stream=True), {**SLOW_STREAM, SESSION_HEADER: "long"})

    streaming = threading.Thread(target=stream_until_killed, daemon=True)
    streaming.start()
    busy = wait_until(lambda: next((a["name"] for a in proxy_status(first)["accounts"] if a["inflight"]), None),
                      what="the stream in flight at the first proxy")
    wait_until(lambda: account_of(second, busy)["inflight"] == 1, what="the first proxy's slot seen at the second")
    assert ask(second, "new-conversation") == 200  # the in-flight cap sends new work elsewhere
    assert fake.requests[-1].account != busy
    os.killpg(first.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: account_of(second, busy)["inflight"] == 0, timeout=LEASE_S + 5 * HEARTBEAT_S,
               what="the killed proxy's lease expired")
    assert time.monotonic() - killed_at >= 1.0  # freed by the lease's TTL, not by a goodbye
    wait_until(lambda: any(i["stopped"] for i in shared_of(second)["instances"]), timeout=10.0,
               what="the killed proxy shown as stopped")


def test_redis_restarted_mid_traffic_is_no_client_error_and_resyncs(start_proxies, fake, redis_server):
    proxies = start_proxies(2)
    codes: list[int] = []
    stop = threading.Event()

    def traffic(proxy: ProxyProcess, tag: str) -> None:
        n = 0
        while not stop.is_set():
            codes.append(ask(proxy, f"{tag}-{n % 4}"))
            n += 1

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(traffic, proxy, f"p{i}-t{t}") for i, proxy in enumerate(proxies) for t in range(2)]
        try:
            wait_until(lambda: len(codes) >= 20, what="traffic before the outage")
            redis_server.kill()
            for proxy in proxies:
                wait_until(lambda p=proxy: not shared_of(p)["healthy"], what="degraded")
            during = len(codes)
            wait_until(lambda: len(codes) >= during + 20, what="traffic during the outage")
            assert shared_of(proxies[0])["degraded_since"] is not None
            redis_server.restart()
            for proxy in proxies:
                wait_until(lambda p=proxy: shared_of(p)["healthy"], what="back in step")
            after = len(codes)
            wait_until(lambda: len(codes) >= after + 20, what="traffic after the outage")
        finally:
            # Also when a wait above fails: leaving the `with` joins the traffic threads, which
            # run until this is set (without it a failed wait hung the run forever).
            stop.set()
        for future in running:
            future.result(timeout=30)
    assert set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
    client = redis_server.client()
    wait_until(lambda: client.zcard(names.INSTANCES) == 2, what="both proxies registered again")
    keys = {k.decode() for k in client.keys(names.PREFIX + "*")}
    assert any(k.startswith(names.PREFIX + "bind:") for k in keys)
    # -1: a key without a TTL. (-2: gone since KEYS listed it, as an in-flight set whose last
    # lease ended or expired a moment ago; that is fine.)
    assert [k for k in keys if client.pttl(k) == -1] == []
    usage = wait_until(lambda: shared_of(proxies[1])["usage"], what="pool usage counted again")
    assert sum(u["requests"] for u in usage.values()) >= 20


def test_a_password_in_the_redis_url_is_never_shown(tmp_path, fake):
    from tests.redis_server import RedisServer, redis_server_binary

    binary = redis_server_binary()
    assert binary is not None
    password = "redis-pass-0123456789-secret"
    (tmp_path / "redis").mkdir()
    server = RedisServer(binary, tmp_path / "redis", password=password).start()
    try:
        cfg = write_config(tmp_path / "machine", fake.url, [fake.account("alice"), fake.account("bob")],
                           shared_state=server.url)
        with start_proxy(cfg) as proxy:
            wait_until(lambda: shared_of(proxy)["healthy"], what="connected with the password")
            assert ask(proxy, "s1") == 200
            server.kill()
            wait_until(lambda: not shared_of(proxy)["healthy"], what="degraded")
            status = proxy_status(proxy)
            assert status["shared"]["url"].startswith("redis://:***@127.0.0.1:")
            wait_until(lambda: cfg.state.exists() and json.loads(cfg.state.read_text())["shared"]["healthy"] is False,
                       what="the state file says degraded")
            state_text = cfg.state.read_text()
        assert password not in json.dumps(status) and password not in state_text
        assert password not in "".join(proxy.output)
    finally:
        server.stop()


def test_a_client_key_added_on_one_machine_works_on_every_proxy_until_removed_on_another(start_proxies, fake):
    first, second = start_proxies(2)
    added = run_cli(first.cfg, "keys", "add", "ana", "--max-concurrent", "2")
    assert added.returncode == 0, added.stderr
    key = next(line.split(": ", 1)[1].rstrip('"') for line in added.stdout.splitlines() if "tck-" in line)
    for proxy in (first, second):
        wait_until(lambda p=proxy: call(p.url, "POST", "/v1/messages", message_body(), key=key)[0] == 200,
                   what="the key accepted by every proxy")
    assert "ana" not in first.cfg.accounts.read_text()  # a pool's keys live in the shared state only
    listed = run_cli(second.cfg, "keys", "list")
    assert listed.returncode == 0 and "ana" in listed.stdout and key not in listed.stdout
    again = run_cli(second.cfg, "keys", "add", "ana")
    assert again.returncode == 1 and "already has a client key named 'ana'" in again.stderr
    removed = run_cli(second.cfg, "keys", "remove", "ana")
    assert removed.returncode == 0, removed.stderr
    for proxy in (first, second):  # removed on one machine: refused everywhere
        wait_until(lambda p=proxy: call(p.url, "POST", "/v1/messages", message_body(), key=key)[0] in (401, 403),
                   what="the key refused by every proxy")
