"""Routing state shared by a team's proxies through Redis (the `shared_state` setting).

Every proxy keeps routing from its own `Router` (no Redis round trip decides a request), and
this object keeps that view in step with the others':

- benches: a bench here is written with an extend-only script and announced; a bench
  announced elsewhere is applied here at once (the pub/sub event), or at the next resync;
- quota windows: the rate-limit headers of each answer, the newest observation winning;
- conversation bindings: a conversation this proxy does not know is looked up before it is
  routed (one GET, the only command a request waits for); a binding made or moved here is
  written with a compare-and-set, and a lost race adopts the winner's;
- in-flight slots: one lease per request (a sorted-set member scored by its expiry, renewed
  while the request lives), so a dead proxy's slots free themselves; the others' counts are
  read every heartbeat and count against each account's in-flight cap;
- usage: atomic increments per account and per client;
- holds: a freed slot is announced, and a proxy holding requests looks again at once;
- client keys (`teamclaude keys`, `teamclaude.shared.clients`): read, never written here.

Writes leave the request path: they are queued and sent in one pipeline by a writer task.
When Redis is lost the proxy keeps serving from its last view, marked degraded
(`healthy`, `degraded_since`), drops what it could not send, and on reconnecting writes its
own live state again (benches, leases) and reads everyone else's (resync).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError, RedisError, ResponseError

from routing.engine import Router
from routing.ratelimits import RateLimits, parse_ratelimit_headers
from routing.types import RequestInfo
from routing.usage import Usage
from teamclaude.aio import raise_if_cancelled
from teamclaude.client_keys import ClientKey
from teamclaude.shared import clients, names, scripts
from teamclaude.shared.connection import async_client, display_url, new_instance_id, sync_client

logger = logging.getLogger("teamclaude")

HEARTBEAT_S = 1.0
# An in-flight lease lives this long unless renewed (every heartbeat): a killed proxy's
# slots are free again this long after its last heartbeat.
LEASE_S = 10.0
# A proxy that stopped reporting is shown for this long, then forgotten.
INSTANCE_MEMORY_S = 3600.0
USAGE_TTL_S = 35 * 86400.0
WINDOW_TTL_S = 8 * 86400.0
# A conversation lookup never holds a request longer than this (Redis slow: route locally).
LOOKUP_TIMEOUT_S = 0.25
RECONNECT_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# Unchanged rate-limit readings are shared again this often (a newcomer's resync reads them).
WINDOW_REPEAT_S = 30.0
# A conversation's binding is written again (its TTL and last use) at most this often.
BINDING_TOUCH_S = 30.0
MAX_QUEUED = 10_000

_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


@dataclass
class _Write:
    """One queued write: `add` puts its commands on the pipeline, `done` gets their results."""

    add: Callable[[Any], int]  # returns how many commands it added
    done: Callable[[list[Any]], None] | None = None


class SharedState:
    def __init__(self, url: str, router: Router, clock: Callable[[], float], on_change: Callable[[], None],
                 *, describe: Callable[[], dict[str, Any]] | None = None,
                 on_token: Callable[[str], None] | None = None,
                 on_clients: Callable[[list[ClientKey]], None] | None = None, instance_id: str | None = None) -> None:
        self.url = url
        self.router = router
        self.clock = clock
        self.on_change = on_change
        self.describe = describe or dict
        self.on_token = on_token
        self.on_clients = on_clients
        self._clients_due = True  # the pool's client keys: read at the next heartbeat
        self.instance_id = instance_id or new_instance_id()
        self.healthy = False
        self.degraded_since: float | None = clock()
        self.last_error: str | None = "not connected yet"
        self.instances: list[dict[str, Any]] = []
        self.pool_usage: dict[str, dict[str, float]] = {}
        self._client: redis.asyncio.Redis | None = None
        self._queue: list[_Write] = []
        self._queued = asyncio.Event()
        self._leases: dict[str, tuple[str, str]] = {}  # flow id -> (account, member)
        self._bindings: dict[str, str] = {}  # conversation -> account as last known in Redis
        self._benches: dict[tuple[str, str | None], float] = {}  # announced or applied: until
        self._scripts: dict[str, str] = {}  # name -> SHA1 of the loaded script
        self._usage: dict[tuple[str, str], list[int]] = {}  # not sent yet: requests, tokens, micro-USD
        self._windows_sent: dict[str, tuple[tuple[Any, ...], float]] = {}
        self._touched: dict[str, float] = {}  # conversation -> last use written
        self._others_holding = False
        self._refused: set[str] = set()  # errors of heartbeat commands already logged

    # ----- the request path (never waits on Redis, except `prepare`) -----

    async def prepare(self, request: RequestInfo) -> None:
        """Before a request is routed: a conversation this proxy has no binding for takes
        the pool's (one GET, bounded by LOOKUP_TIMEOUT_S)."""
        key = request.conversation_key
        client = self._client
        if key is None or client is None or not self.healthy or self.router.binding_of(key) is not None:
            return
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                stored = await client.get(names.binding(key))
        except _ERRORS as exc:
            self._lost(exc)
            return
        if stored is not None:
            self._adopt_binding(key, stored)

    def sent(self, lease_id: str, account: str, request: RequestInfo) -> None:
        """A request (`lease_id`: its flow) goes out on `account`, maybe again after a
        failover: its lease, and its conversation's binding when this proxy made or moved it."""
        member = f"{self.instance_id}:{lease_id}"
        previous = self._leases.get(lease_id)
        self._leases[lease_id] = (account, member)
        expiry = self.clock() + LEASE_S

        def add(pipe: Any) -> int:
            if previous is not None and previous[0] != account:
                pipe.zrem(names.inflight(previous[0]), previous[1])
            pipe.zadd(names.inflight(account), {member: expiry})
            pipe.pexpire(names.inflight(account), int(LEASE_S * 2000))
            return 3 if previous is not None and previous[0] != account else 2

        self._enqueue(_Write(add))
        key = request.conversation_key
        if key is not None:
            bound = self.router.binding_of(key)
            if bound is not None and bound[0] == account and self._bindings.get(key) != account:
                self._claim(key, account, self._bindings.get(key, ""), bound[1])

    def finished(self, lease_id: str, account: str | None, request: RequestInfo, usage: Usage | None,
                 cost_usd: float, client: str | None) -> None:
        """A request ended: its lease goes, its usage is counted (sent with the next
        heartbeat), its conversation's binding is touched now and then, and proxies holding
        requests are told a slot is free (their heartbeat would see it within a second)."""
        lease = self._leases.pop(lease_id, None)
        tokens = usage.total if usage is not None else 0
        for kind, name in (("account", account), ("client", client or "proxy-key")):
            if name is not None:
                pending = self._usage.setdefault((kind, name), [0, 0, 0])
                pending[0] += 1
                pending[1] += tokens
                pending[2] += int(round(cost_usd * 1_000_000))
        freed = lease[0] if lease is not None else None
        event = json.dumps({"type": "freed", "account": freed, "by": self.instance_id}) if (
            freed is not None and self._others_holding) else None
        if lease is not None:
            def add(pipe: Any) -> int:
                pipe.zrem(names.inflight(lease[0]), lease[1])
                if event is not None:
                    pipe.publish(names.EVENTS, event)
                return 2 if event is not None else 1

            self._enqueue(_Write(add))
        key = request.conversation_key
        bound = self.router.binding_of(key) if key is not None else None
        if key is not None and bound is not None and self._bindings.get(key) == bound[0]:
            if bound[1] - self._touched.get(key, float("-inf")) >= self._touch_every_s():
                self._claim(key, bound[0], bound[0], bound[1])  # its TTL and last use, renewed

    def account_changed(self, account: str) -> None:
        """After an answer or a failure on `account`: announce benches that are new here."""
        now = self.clock()
        for family, (until, reason) in self.router.benches_of(account, now).items():
            if self._benches.get((account, family), 0.0) >= until:
                continue
            self._benches[(account, family)] = until
            self._enqueue(self._bench_write(account, family, until, reason, now))

    def observed(self, account: str, status: int, limits: RateLimits) -> None:
        """The rate-limit headers of an answer, for the other proxies (newest wins): sent
        when what they say changed, or at least every WINDOW_REPEAT_S (not every answer)."""
        if limits.empty:
            return
        at = self.clock()
        signature = tuple(sorted((name, round(w.utilization, 3) if w.utilization is not None else None, w.reset, w.status)
                                 for name, w in limits.windows.items()))
        last = self._windows_sent.get(account)
        if last is not None and last[0] == signature and at - last[1] < WINDOW_REPEAT_S:
            return
        self._windows_sent[account] = (signature, at)
        value = json.dumps({"at": at, "status": status, "raw": limits.raw})
        event = json.dumps({"type": "window", "account": account, "at": at, "status": status,
                            "raw": limits.raw, "by": self.instance_id})

        def add(pipe: Any) -> int:
            self._script(pipe, "set_if_greater", [names.window(account), names.EVENTS],
                         ["at", repr(at), value, int(WINDOW_TTL_S * 1000), event])
            return 1

        self._enqueue(_Write(add))

    # ----- what the state file, `status` and the Deck show -----

    def status(self) -> dict[str, Any]:
        return {
            "url": display_url(self.url),
            "instance": self.instance_id,
            "healthy": self.healthy,
            "degraded_since": self.degraded_since,
            "error": None if self.healthy else self.last_error,
            "instances": self.instances,
            "usage": self.pool_usage,
        }

    # ----- the connection -----

    async def run(self) -> None:
        """Until cancelled: connect, resync, then heartbeat, listen and write; reconnect
        with backoff whenever Redis is lost."""
        failures = 0
        while True:
            raise_if_cancelled()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except _ERRORS as exc:
                self._lost(exc)
            except Exception as exc:  # noqa: BLE001 (a bug must not end sharing for good)
                logger.exception("teamclaude: shared state: internal error")
                self._lost(exc)
            await self._close_client()
            await asyncio.sleep(RECONNECT_DELAYS_S[min(failures, len(RECONNECT_DELAYS_S) - 1)])
            failures = 0 if self.healthy else failures + 1

    def close_sync(self) -> None:
        """At shutdown (mitmproxy's `done` hook is synchronous): this proxy's leases and
        record go now rather than by their TTL. A Redis that does not answer within a
        second is left to the TTLs."""
        if not self.healthy:
            return
        try:
            with sync_client(self.url) as client:
                pipe = client.pipeline(transaction=False)
                for account, member in self._leases.values():
                    pipe.zrem(names.inflight(account), member)
                pipe.zrem(names.INSTANCES, self.instance_id)
                pipe.delete(names.instance(self.instance_id))
                pipe.execute()
        except (RedisError, OSError):
            pass

    async def _session(self) -> None:
        client = async_client(self.url)
        self._client = client
        await client.ping()
        for name, text in (("set_if_greater", scripts.SET_IF_GREATER), ("bind", scripts.BIND)):
            self._scripts[name] = await client.script_load(text)  # loaded again after a Redis restart
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(names.EVENTS)
        try:
            await self._resync(client)
            raise_if_cancelled()  # asked to stop while connecting, and a command swallowed it
            self._up()
            tasks = [asyncio.create_task(coro) for coro in
                     (self._listen(pubsub), self._heartbeat(client), self._write(client))]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()  # raises what ended the session
        finally:
            try:
                await pubsub.aclose() if hasattr(pubsub, "aclose") else await pubsub.close()
            except _ERRORS:
                pass

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose() if hasattr(client, "aclose") else await client.close()
            except _ERRORS:
                pass

    def _up(self) -> None:
        if not self.healthy:
            if self.degraded_since is not None and self.last_error != "not connected yet":
                logger.warning("teamclaude: shared state %s is back; the pool is in step again",
                               display_url(self.url))
            self.healthy, self.degraded_since, self.last_error = True, None, None
            self.on_change()

    def _lost(self, exc: BaseException) -> None:
        why = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
        why = why.replace(self.url, display_url(self.url))
        if self.healthy:
            logger.error("teamclaude: shared state %s lost (%s); serving from this proxy's own view "
                         "until it is back", display_url(self.url), why)
            self.degraded_since = self.clock()
        self.healthy = False
        self.last_error = why
        self._queue.clear()
        # Nothing of the others is known while apart: their slots are not counted.
        for account in self.router.account_names():
            self.router.set_remote_inflight(account, 0)
        self.on_change()

    # ----- resync, heartbeat, events, writes -----

    async def _resync(self, client: redis.asyncio.Redis) -> None:
        """After (re)connecting: take everyone's benches and newest windows, and write this
        proxy's own live state again (Redis may have restarted empty)."""
        now = self.clock()
        # Values another process wrote are never trusted: one that does not parse is skipped
        # (raising here would keep this proxy reconnecting, degraded, for as long as it lasts).
        async for key in client.scan_iter(match=names.BENCH_PATTERN, count=500):
            value = await _get(client, key)
            if value is not None:
                account, _, family = _text(key)[len(names.PREFIX) + len("bench:"):].rpartition(":")
                self._apply_bench(account, None if family == "*" else family, value, now)
        async for key in client.scan_iter(match=names.WINDOW_PATTERN, count=500):
            value = await _get(client, key)
            if value is not None:
                self._apply_window(_text(key)[len(names.PREFIX) + len("window:"):], _json_or_none(value))
        self._bindings.clear()
        self._touched.clear()
        self._windows_sent.clear()
        self._clients_due = True  # a key removed while apart is refused at the first heartbeat
        pipe = client.pipeline(transaction=False)
        for account in self.router.account_names():
            for family, (until, reason) in self.router.benches_of(account, now).items():
                self._benches[(account, family)] = until
                self._bench_write(account, family, until, reason, now).add(pipe)
        for account, member in self._leases.values():
            pipe.zadd(names.inflight(account), {member: now + LEASE_S})
            pipe.pexpire(names.inflight(account), int(LEASE_S * 2000))
        self._note_refused(await pipe.execute(raise_on_error=False))
        self.on_change()

    async def _heartbeat(self, client: redis.asyncio.Redis) -> None:
        beats = 0
        while True:
            raise_if_cancelled()
            await self._beat(client)
            beats += 1
            if beats % 60 == 0:
                self._forget_evicted()
                await client.pexpire(names.CLIENTS, clients.CLIENTS_TTL_MS)  # renewed while proxies run
            if self._clients_due or beats % 30 == 0:
                await self._read_clients(client)
            await asyncio.sleep(HEARTBEAT_S)

    async def _read_clients(self, client: redis.asyncio.Redis) -> None:
        self._clients_due = False
        records = clients.parse_all(await client.hgetall(names.CLIENTS))
        if self.on_clients is not None:
            self.on_clients(records)

    def _forget_evicted(self) -> None:
        """Conversations the router forgot are forgotten here too (memory stays bounded)."""
        for key in [k for k in self._bindings if self.router.binding_of(k) is None]:
            del self._bindings[key]
        for key in [k for k in self._touched if self.router.binding_of(k) is None]:
            del self._touched[key]

    async def _beat(self, client: redis.asyncio.Redis) -> None:
        """Report this proxy, renew its leases, and read the others' slots and records."""
        now = self.clock()
        accounts = self.router.account_names()
        record = {**self.describe(), "id": self.instance_id, "seen": now}
        pipe = client.pipeline(transaction=False)
        pipe.set(names.instance(self.instance_id), json.dumps(record), px=int(INSTANCE_MEMORY_S * 1000))
        pipe.zadd(names.INSTANCES, {self.instance_id: now})
        pipe.zremrangebyscore(names.INSTANCES, "-inf", now - INSTANCE_MEMORY_S)
        pipe.pexpire(names.INSTANCES, int(INSTANCE_MEMORY_S * 1000))
        own: dict[str, dict[str, float]] = {}
        for account, member in self._leases.values():
            own.setdefault(account, {})[member] = now + LEASE_S
        for account in accounts:
            key = names.inflight(account)
            if own.get(account):
                # XX: a lease released meanwhile is not brought back. The key's TTL is renewed
                # too, or a request outliving it (2 x LEASE_S after the last send on the
                # account) would vanish from the others' counts with the key.
                pipe.zadd(key, own[account], xx=True)
                pipe.pexpire(key, int(LEASE_S * 2000))
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zcard(key)
        usage, self._usage = self._usage, {}
        for (kind, name), (requests, tokens, cost_micro) in usage.items():
            usage_key = names.usage(kind, name)
            pipe.hincrby(usage_key, "requests", requests)
            pipe.hincrby(usage_key, "tokens", tokens)
            pipe.hincrby(usage_key, "cost_micro_usd", cost_micro)
            pipe.pexpire(usage_key, int(USAGE_TTL_S * 1000))
        pipe.zrange(names.INSTANCES, 0, -1)
        for account in accounts:
            pipe.hgetall(names.usage("account", account))
        try:
            # A key another process left with a value of the wrong type fails its command
            # alone (its result is the error): the heartbeat goes on without it.
            results = await pipe.execute(raise_on_error=False)
        except _ERRORS:
            for key, numbers in usage.items():  # counted again with the next heartbeat that lands
                pending = self._usage.setdefault(key, [0, 0, 0])
                for i, n in enumerate(numbers):
                    pending[i] += n
            raise
        position = 4
        for account in accounts:
            position += 3 if own.get(account) else 1
            count = results[position]
            others = max(0, (count if isinstance(count, int) else 0) - len(own.get(account, {})))
            position += 1
            self.router.set_remote_inflight(account, others)
        position += 4 * len(usage)
        ids = [_text(i) for i in results[position]] if isinstance(results[position], list) else []
        totals = [raw if isinstance(raw, dict) else {} for raw in results[position + 1:]]
        self.pool_usage = {account: _usage_numbers(raw) for account, raw in zip(accounts, totals, strict=True) if raw}
        self._note_refused(results)
        self.instances = await self._instances(client, ids, now)
        self.on_change()  # the pool view changed (and a held request may look again)

    def _note_refused(self, results: list[Any]) -> None:
        """Among a pipeline's results, the commands Redis refused (the others went on): said
        once, not every second. Scripts gone (SCRIPT FLUSH) end the session: the reconnection
        loads them again."""
        errors = [r for r in results if isinstance(r, ResponseError)]
        for error in errors:
            if isinstance(error, NoScriptError):
                raise error
        new = {str(e) for e in errors} - self._refused
        if new:
            logger.warning("teamclaude: shared state %s: keys under %s hold values teamclaude did not write (%s); "
                           "they are skipped", display_url(self.url), names.PREFIX, "; ".join(sorted(new))[:300])
        self._refused |= new

    async def _instances(self, client: redis.asyncio.Redis, ids: list[str], now: float) -> list[dict[str, Any]]:
        if not ids:
            return []
        values = await client.mget([names.instance(i) for i in ids])
        found = []
        for raw in values:
            if raw is None:
                continue
            record = _json_or_none(raw)
            seen = record.get("seen") if isinstance(record, dict) else None
            if isinstance(seen, (int, float)) and not isinstance(seen, bool) and math.isfinite(seen):
                record["stopped"] = now - seen > 3 * HEARTBEAT_S + 2.0
                record["this"] = record.get("id") == self.instance_id
                found.append(record)
        self._others_holding = any(r.get("held") and not r["this"] and not r["stopped"] for r in found)
        return sorted(found, key=lambda r: str(r.get("id")))

    async def _listen(self, pubsub: Any) -> None:
        while True:
            raise_if_cancelled()
            message = await pubsub.get_message(timeout=HEARTBEAT_S)
            if message is None or message.get("type") != "message":
                continue
            try:
                event = json.loads(message["data"])
            except (ValueError, TypeError):
                continue
            if isinstance(event, dict) and event.get("by") != self.instance_id:
                self._on_event(event)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        account = event.get("account")
        if kind == "freed" and isinstance(account, str):
            self.router.set_remote_inflight(account, self.router.remote_inflight(account) - 1)
            self.on_change()
        elif kind == "bench" and isinstance(account, str):
            self._apply_bench(account, event.get("family"), json.dumps(event), self.clock())
        elif kind == "window" and isinstance(account, str):
            self._apply_window(account, event)
        elif kind == "token" and isinstance(account, str) and self.on_token is not None:
            self.on_token(account)
        elif kind == "clients":
            self._clients_due = True

    async def _write(self, client: redis.asyncio.Redis) -> None:
        """The writer: everything queued since the last round trip, in one pipeline."""
        while True:
            raise_if_cancelled()
            await self._queued.wait()
            self._queued.clear()
            writes, self._queue = self._queue, []
            pipe = client.pipeline(transaction=False)
            counts = [write.add(pipe) for write in writes]
            results = await pipe.execute(raise_on_error=False)
            self._note_refused(results)
            position = 0
            for write, count in zip(writes, counts, strict=True):
                if write.done is not None:
                    write.done(results[position:position + count])
                position += count

    def _enqueue(self, write: _Write) -> None:
        if not self.healthy or len(self._queue) >= MAX_QUEUED:
            return  # written again by the resync, or not needed any more
        self._queue.append(write)
        self._queued.set()

    def _script(self, pipe: Any, name: str, keys: list[str], args: list[Any]) -> None:
        pipe.evalsha(self._scripts[name], len(keys), *keys, *args)

    def _bench_write(self, account: str, family: str | None, until: float, reason: str, now: float) -> _Write:
        value = json.dumps({"until": until, "reason": reason})
        event = json.dumps({"type": "bench", "account": account, "family": family, "until": until,
                            "reason": reason, "by": self.instance_id})
        ttl_ms = max(1, math.ceil((until - now) * 1000))

        def add(pipe: Any) -> int:
            self._script(pipe, "set_if_greater", [names.bench(account, family), names.EVENTS],
                         ["until", repr(until), value, ttl_ms, event])
            return 1

        return _Write(add)

    def _apply_bench(self, account: str, family: Any, raw: str | bytes, now: float) -> None:
        try:
            data = json.loads(raw)
            until, reason = float(data["until"]), str(data["reason"])
        except (ValueError, KeyError, TypeError):
            return
        family = family if isinstance(family, str) and family else None
        if not math.isfinite(until) or until <= now or self._benches.get((account, family), 0.0) >= until:
            return
        self._benches[(account, family)] = until
        self.router.bench(account, until, f"{reason} (at another proxy)", now, family)
        self.on_change()

    def _apply_window(self, account: str, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("raw"), dict):
            return
        try:
            at, status = float(data["at"]), int(data.get("status") or 0)
        except (ValueError, KeyError, TypeError):
            return
        limits = parse_ratelimit_headers((str(k), str(v)) for k, v in data["raw"].items())
        if self.router.observe_shared(account, status, limits, at):
            self.on_change()

    def _claim(self, key: str, account: str, expected: str, last_used: float) -> None:
        """Write a conversation's binding unless another proxy moved it first (then adopt)."""
        ttl_ms = int(self.router.config.binding_evict_s * 1000)

        def add(pipe: Any) -> int:
            self._script(pipe, "bind", [names.binding(key)], [expected, account, repr(last_used), ttl_ms])
            return 1

        def done(results: list[Any]) -> None:
            winner = results[0]
            if winner is None:
                self._bindings[key] = account
                self._touched[key] = last_used
            elif not isinstance(winner, Exception):
                self._adopt_binding(key, winner, force=True)  # it was bound elsewhere first

        self._enqueue(_Write(add, done))

    def _touch_every_s(self) -> float:
        return min(BINDING_TOUCH_S, self.router.config.warm_window_s / 10)

    def _adopt_binding(self, key: str, stored: bytes | str, *, force: bool = False) -> None:
        account, _, used = _text(stored).partition("\t")
        try:
            last_used = float(used)
        except ValueError:
            return
        if not math.isfinite(last_used):
            return
        self._bindings[key] = account
        self._touched[key] = last_used
        if self.router.adopt_binding(key, account, last_used, self.clock(), force=force):
            self.on_change()


def _text(raw: bytes | str) -> str:
    """A key or value read from Redis, as text (bytes that are not UTF-8 are replaced)."""
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


async def _get(client: redis.asyncio.Redis, key: bytes) -> bytes | None:
    """GET, None for a key that holds another type (written by another process)."""
    try:
        value = await client.get(key)
    except ResponseError:
        return None
    return value if isinstance(value, bytes) else None


def _json_or_none(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # UnicodeDecodeError included
        return None


def _usage_numbers(raw: dict[bytes, bytes]) -> dict[str, float]:
    numbers = {_text(k): int(v) for k, v in raw.items() if _text(v).lstrip("-").isdigit()}
    return {"requests": numbers.get("requests", 0), "tokens": numbers.get("tokens", 0),
            "cost_usd": round(numbers.get("cost_micro_usd", 0) / 1_000_000, 6)}
