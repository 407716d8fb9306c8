"""What shared state (`shared_state: redis://...`) adds per request, and what it costs Redis.

    .venv/bin/python bench/shared_state.py            # full run (~3 min)
    .venv/bin/python bench/shared_state.py --quick    # smoke run (< 1 min)

Three targets serve the same requests from the same fake upstream (its own process):
`direct` (the fake itself), `alone` (teamclaude without shared state) and `shared`
(teamclaude on a real redis-server on loopback, the only proxy of its pool). Round by round
every workload runs against the three in a rotating order, so machine noise lands on all
alike; added latency is a proxy's percentile minus the direct one of the same round (median
over rounds), and `shared - alone` is the price of sharing.

Workloads, JSON messages at concurrency 1 and 16: `warm` (one conversation per worker, so
every request after the first finds its binding in memory: the common case) and `new` (a
new conversation id on every request: each one is looked up in Redis before it is routed,
the worst case). Redis cost per request comes from the server's own counters (`INFO stats`:
commands processed, bytes in and out) around each `shared` batch, minus what the idle proxy
sends meanwhile (its heartbeat, measured before the rounds).

Prints a table; writes bench/results/shared_state.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.client import Connection  # noqa: E402
from bench.overhead import Target  # noqa: E402
from bench.procs import (  # noqa: E402
    FakeUpstreamProcess,
    bench_accounts,
    client_headers,
    machine,
    message_body,
    percentile,
    raise_open_files_limit,
    start_teamclaude,
    work_dir,
    write_results,
)
from teamclaude.urls import split_host_port  # noqa: E402
from tests.redis_server import RedisServer, redis_server_binary  # noqa: E402

TARGETS = ("direct", "alone", "shared")
WORKLOADS = (("warm", 1), ("warm", 16), ("new", 1), ("new", 16))


def redis_sizes(server: RedisServer) -> dict[str, Any]:
    """Keys and memory per kind of key (`MEMORY USAGE`, sampled up to 200 keys a kind)."""
    client = server.client()
    kinds: dict[str, list[int]] = {}
    count: dict[str, int] = {}
    for key in client.scan_iter(match="teamclaude:*", count=1000):
        kind = key.decode().split(":")[1]
        count[kind] = count.get(kind, 0) + 1
        if len(kinds.setdefault(kind, [])) < 200:
            kinds[kind].append(int(client.memory_usage(key, samples=0) or 0))
    return {
        "used_memory_bytes": client.info("memory")["used_memory"],
        "kinds": {kind: {"keys": count[kind], "bytes_per_key": round(statistics.mean(sizes))}
                  for kind, sizes in sorted(kinds.items()) if sizes},
    }


def redis_counters(server: RedisServer) -> tuple[int, int, int]:
    stats = server.client().info("stats")
    # The INFO call itself is one command with a few bytes each way: negligible per batch.
    return stats["total_commands_processed"], stats["total_net_input_bytes"], stats["total_net_output_bytes"]


async def run_batch(target: Target, kind: str, concurrency: int, requests: int, batch: int) -> tuple[list[float], int]:
    connections = await target.connections(concurrency)
    account = bench_accounts(1)[0]
    body = message_body(False)
    per_worker = max(1, requests // concurrency)
    latencies: list[float] = []
    errors = 0

    async def worker(index: int) -> None:
        nonlocal errors
        connection = connections[index]
        for n in range(per_worker):
            session = f"warm-{index}" if kind == "warm" else f"new-{batch}-{index}-{n}"
            if connection.closed:
                connection = connections[index] = await Connection.open(target.host, target.port)
            response = await connection.request("POST", "/v1/messages", client_headers(account, session), body,
                                                keep_body=False)
            if response.status != 200 or not response.complete:
                errors += 1
                continue
            latencies.append(response.latency)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return latencies, errors


async def measure(targets: list[Target], redis: RedisServer, rounds: int, per_batch: dict[int, int]) -> dict[str, Any]:
    batch = 0
    for target in targets:  # warm-up
        for kind, concurrency in WORKLOADS:
            batch += 1
            await run_batch(target, kind, concurrency, 4 * concurrency, batch)
    idle_before = redis_counters(redis)
    idle_started = time.monotonic()
    await asyncio.sleep(3.0)
    idle_after = redis_counters(redis)
    idle_s = time.monotonic() - idle_started
    idle_rate = [(a - b) / idle_s for a, b in zip(idle_after, idle_before, strict=True)]
    cells: dict[tuple[str, int, str], list[list[float]]] = {}
    errors: dict[tuple[str, int, str], int] = {}
    redis_cost: dict[tuple[str, int], list[float]] = {}
    for round_index in range(rounds):
        order = targets[round_index % len(targets):] + targets[: round_index % len(targets)]
        for kind, concurrency in WORKLOADS:
            for target in order:
                batch += 1
                before, started = redis_counters(redis), time.monotonic()
                latencies, failed = await run_batch(target, kind, concurrency, per_batch[concurrency], batch)
                after, took = redis_counters(redis), time.monotonic() - started
                cells.setdefault((kind, concurrency, target.name), []).append(latencies)
                errors[(kind, concurrency, target.name)] = errors.get((kind, concurrency, target.name), 0) + failed
                if target.name == "shared" and latencies:
                    net = [max(0.0, (a - b) - rate * took) / len(latencies)
                           for a, b, rate in zip(after, before, idle_rate, strict=True)]
                    cost = redis_cost.setdefault((kind, concurrency), [0.0, 0.0, 0.0, 0.0])
                    for i in range(3):
                        cost[i] += net[i] * len(latencies)
                    cost[3] += len(latencies)
        print(f"  round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
    summary: dict[str, Any] = {"idle_per_s": {"commands": idle_rate[0], "bytes_in": idle_rate[1], "bytes_out": idle_rate[2]}}
    for kind, concurrency in WORKLOADS:
        direct = cells[(kind, concurrency, "direct")]
        row: dict[str, Any] = {}
        for name in ("alone", "shared"):
            mine = cells[(kind, concurrency, name)]
            added = [percentile(m, 0.5) - percentile(d, 0.5) for m, d in zip(mine, direct, strict=True) if m and d]
            added99 = [percentile(m, 0.99) - percentile(d, 0.99) for m, d in zip(mine, direct, strict=True) if m and d]
            row[name] = {"added_p50_ms": 1000 * statistics.median(added), "added_p99_ms": 1000 * statistics.median(added99),
                         "errors": errors[(kind, concurrency, name)]}
        pairs = [percentile(s, 0.5) - percentile(a, 0.5) for s, a in
                 zip(cells[(kind, concurrency, "shared")], cells[(kind, concurrency, "alone")], strict=True) if s and a]
        row["shared_minus_alone_p50_ms"] = 1000 * statistics.median(pairs)
        row["shared_minus_alone_rounds_ms"] = [round(1000 * p, 3) for p in pairs]
        total = redis_cost[(kind, concurrency)]
        row["redis_per_request"] = {"commands": total[0] / total[3], "bytes_in": total[1] / total[3],
                                    "bytes_out": total[2] / total[3]}
        summary[f"{kind}_c{concurrency}"] = row
    return summary


def table(summary: dict[str, Any]) -> str:
    header = (f"{'workload':<10} {'alone +p50':>11} {'shared +p50':>12} {'shared-alone p50':>17} "
              f"{'alone +p99':>11} {'shared +p99':>12} {'cmds/req':>9} {'B in/req':>9} {'B out/req':>10} {'errors':>7}")
    lines = [header, "-" * len(header)]
    for name, row in summary.items():
        if name == "idle_per_s":
            continue
        cost = row["redis_per_request"]
        lines.append(
            f"{name:<10} {row['alone']['added_p50_ms']:>9.2f}ms {row['shared']['added_p50_ms']:>10.2f}ms "
            f"{row['shared_minus_alone_p50_ms']:>15.2f}ms {row['alone']['added_p99_ms']:>9.2f}ms "
            f"{row['shared']['added_p99_ms']:>10.2f}ms {cost['commands']:>9.1f} {cost['bytes_in']:>9.0f} "
            f"{cost['bytes_out']:>10.0f} {row['alone']['errors'] + row['shared']['errors']:>7}")
    idle = summary["idle_per_s"]
    lines.append(f"idle proxy: {idle['commands']:.1f} commands/s, {idle['bytes_in']:.0f} B/s in, "
                 f"{idle['bytes_out']:.0f} B/s out (heartbeat; subtracted above)")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_open_files_limit()
    binary = redis_server_binary()
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    accounts = bench_accounts(args.accounts)
    with work_dir("tc-bench-shared-") as tmp, tempfile.TemporaryDirectory() as redis_dir:
        root = Path(tmp)
        redis = RedisServer(binary, Path(redis_dir)).start()
        fake = FakeUpstreamProcess(accounts, root)
        fake.start()
        alone = shared = None
        try:
            alone, _ = start_teamclaude(root / "alone", fake.url, accounts)
            shared, _ = start_teamclaude(root / "shared", fake.url, accounts, shared_state=redis.url)
            fake_host, fake_port = split_host_port(fake.url)
            targets = [Target("direct", fake_host, int(fake_port), None)]
            for name, proxy in (("alone", alone), ("shared", shared)):
                assert proxy.process is not None and proxy.port is not None
                targets.append(Target(name, "127.0.0.1", proxy.port, proxy.process.pid))
            started = time.perf_counter()
            summary = await measure(targets, redis, args.rounds, {1: args.requests_c1, 16: args.requests_c16})
            elapsed = time.perf_counter() - started
            sizes = redis_sizes(redis)
            for target in targets:
                await target.close()
        finally:
            for proxy in (alone, shared):
                if proxy is not None:
                    proxy.stop()
            fake.stop()
            redis.stop()
    return {
        "benchmark": "shared_state",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["bench/shared_state.py", *sys.argv[1:]]),
        "python": sys.version.split()[0],
        "machine": machine(),
        "accounts": args.accounts,
        "rounds": args.rounds,
        "elapsed_s": round(elapsed, 1),
        "workloads": summary,
        "redis_sizes": sizes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds and requests (< 1 min)")
    parser.add_argument("--rounds", type=int, help="rounds (default 6; quick 2)")
    parser.add_argument("--requests-c1", type=int, help="requests per batch at concurrency 1 (default 200; quick 50)")
    parser.add_argument("--requests-c16", type=int, help="requests per batch at concurrency 16 (default 640; quick 160)")
    parser.add_argument("--accounts", type=int, default=4, help="accounts in the pool")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 6)
    args.requests_c1 = args.requests_c1 or (50 if args.quick else 200)
    args.requests_c16 = args.requests_c16 or (160 if args.quick else 640)
    result = asyncio.run(run(args))
    print(table(result["workloads"]))
    sizes = result["redis_sizes"]
    print(f"redis memory at the end: {sizes['used_memory_bytes'] / 1e6:.1f} MB; " + ", ".join(
        f"{kind}: {v['keys']} keys x {v['bytes_per_key']} B" for kind, v in sizes["kinds"].items()))
    print(f"{result['rounds']} rounds, {result['accounts']} accounts, {result['elapsed_s']} s")
    print(f"wrote {write_results('shared_state', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
