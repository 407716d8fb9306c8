"""Latency and CPU the proxy adds per request, against a direct connection and the bare floor.

    .venv/bin/python bench/overhead.py            # full run (~3 min)
    .venv/bin/python bench/overhead.py --quick    # smoke run (< 1 min)

Three targets serve the same requests from the same fake upstream (its own process, no
artificial delay): `direct` (the fake itself), `bare` (mitmdump with `bench/bare_addon.py`,
which only swaps the credential and streams SSE: the floor a mitmproxy addon can reach)
and `teamclaude` (the real proxy with several accounts). Both proxies run with
`flow_detail=0`: mitmdump printing every flow is not teamclaude's cost.

Round by round, every workload runs against the three targets in a rotating order, so
machine noise lands on all of them alike. Workloads: small non-streaming messages (latency
to the last body byte) and streaming ones (time to the first complete SSE event), each at
concurrency 1 and 32 (one keep-alive TCP_NODELAY connection per worker, one Claude Code
session id per worker). Added latency is the proxy's percentile minus the direct
percentile of the same round; the table shows the median over rounds. CPU per 1000
requests is the proxy process's own user+system time (all threads, `/proc/<pid>/stat`)
while its batches ran.

Prints a table; writes bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.client import Connection  # noqa: E402
from bench.procs import (  # noqa: E402
    BareProxyProcess,
    FakeUpstreamProcess,
    bench_accounts,
    client_headers,
    cpu_seconds,
    message_body,
    percentile,
    raise_open_files_limit,
    rss_mb,
    start_teamclaude,
    work_dir,
    machine,
    write_results,
)
from teamclaude.urls import split_host_port  # noqa: E402

TARGETS = ("direct", "bare", "teamclaude")


@dataclass(frozen=True)
class Workload:
    name: str
    stream: bool
    concurrency: int

    @property
    def label(self) -> str:
        return f"{'SSE first event' if self.stream else 'JSON message'} c={self.concurrency}"


WORKLOADS = (
    Workload("json_c1", False, 1),
    Workload("json_c32", False, 32),
    Workload("sse_c1", True, 1),
    Workload("sse_c32", True, 32),
)


@dataclass
class Samples:
    """One (workload, target) cell: latencies per round and CPU over all its batches."""

    rounds: list[list[float]] = field(default_factory=list)
    cpu_s: float = 0.0
    requests: int = 0
    errors: int = 0


class Target:
    """Where requests go, with a pool of open connections per concurrency level."""

    def __init__(self, name: str, host: str, port: int, pid: int | None) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.pid = pid
        self._pools: dict[int, list[Connection]] = {}

    async def connections(self, count: int) -> list[Connection]:
        pool = self._pools.setdefault(count, [])
        for index, connection in enumerate(pool):
            if connection.closed:
                pool[index] = await Connection.open(self.host, self.port)
        while len(pool) < count:
            pool.append(await Connection.open(self.host, self.port))
        return pool

    def cpu(self) -> float:
        return cpu_seconds(self.pid) if self.pid is not None else 0.0

    async def close(self) -> None:
        for pool in self._pools.values():
            for connection in pool:
                await connection.close()


async def run_batch(target: Target, workload: Workload, requests: int, headers: list[dict[str, str]]) -> tuple[list[float], int]:
    """`requests` requests spread over `workload.concurrency` workers; (latencies, errors)."""
    connections = await target.connections(workload.concurrency)
    body = message_body(workload.stream)
    per_worker = max(1, requests // workload.concurrency)
    latencies: list[float] = []
    errors = 0

    async def worker(index: int) -> None:
        nonlocal errors
        connection = connections[index]
        for _ in range(per_worker):
            if connection.closed:
                connection = connections[index] = await Connection.open(target.host, target.port)
            response = await connection.request("POST", "/v1/messages", headers[index], body, keep_body=False)
            value = response.time_to_first_event if workload.stream else response.latency
            if response.status != 200 or not response.complete or value is None:
                errors += 1
                continue
            latencies.append(value)

    await asyncio.gather(*(worker(i) for i in range(workload.concurrency)))
    return latencies, errors


async def measure(targets: list[Target], workloads: list[Workload], rounds: int, per_batch: dict[int, int],
                  warmup: int) -> dict[tuple[str, str], Samples]:
    account = bench_accounts(1)[0]
    headers = [client_headers(account, f"bench-session-{i:03d}") for i in range(max(w.concurrency for w in workloads))]
    for target in targets:
        for workload in workloads:
            await run_batch(target, workload, max(warmup, 2 * workload.concurrency), headers)
    cells = {(w.name, t.name): Samples() for w in workloads for t in targets}
    for round_index in range(rounds):
        order = targets[round_index % len(targets):] + targets[: round_index % len(targets)]
        for workload in workloads:
            for target in order:
                cell = cells[(workload.name, target.name)]
                before = target.cpu()
                latencies, errors = await run_batch(target, workload, per_batch[workload.concurrency], headers)
                cell.cpu_s += target.cpu() - before
                cell.rounds.append(latencies)
                cell.requests += len(latencies) + errors
                cell.errors += errors
        print(f"  round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
    return cells


def summarise(cells: dict[tuple[str, str], Samples], targets: list[Target], workloads: list[Workload]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for workload in workloads:
        direct = cells[(workload.name, "direct")]
        rows: dict[str, Any] = {}
        for target in targets:
            cell = cells[(workload.name, target.name)]
            everything = [v for r in cell.rounds for v in r]
            row: dict[str, Any] = {
                "requests": cell.requests,
                "errors": cell.errors,
                "p50_ms": 1000 * percentile(everything, 0.50) if everything else None,
                "p99_ms": 1000 * percentile(everything, 0.99) if everything else None,
            }
            if target.name != "direct":
                for q, key in ((0.50, "added_p50_ms"), (0.99, "added_p99_ms")):
                    per_round = [
                        percentile(mine, q) - percentile(base, q)
                        for mine, base in zip(cell.rounds, direct.rounds, strict=True)
                        if mine and base
                    ]
                    row[key] = 1000 * statistics.median(per_round) if per_round else None
                    row[key.replace("added", "added_rounds")] = [round(1000 * v, 3) for v in per_round]
                row["cpu_s_per_1000"] = 1000 * cell.cpu_s / cell.requests if cell.requests else None
            rows[target.name] = row
        bare, ours = rows.get("bare"), rows.get("teamclaude")
        if bare and ours:
            rows["ratio"] = {
                key: (ours[key] / bare[key]) if bare[key] and ours[key] is not None else None
                for key in ("added_p50_ms", "added_p99_ms", "cpu_s_per_1000")
            }
        summary[workload.name] = {"label": workload.label, **rows}
    return summary


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def table(summary: dict[str, Any]) -> str:
    header = f"{'workload':<22} {'target':<11} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} {'CPU s/1k':>9} {'errors':>6}"
    lines = [header, "-" * len(header)]
    for cell in summary.values():
        for name in TARGETS:
            row = cell[name]
            lines.append(
                f"{cell['label'] if name == 'direct' else '':<22} {name:<11} {_fmt(row['p50_ms']):>8} {_fmt(row['p99_ms']):>8} "
                f"{_fmt(row.get('added_p50_ms')):>8} {_fmt(row.get('added_p99_ms')):>8} "
                f"{_fmt(row.get('cpu_s_per_1000')):>9} {row['errors']:>6}"
            )
        ratio = cell.get("ratio")
        if ratio:
            lines.append(
                f"{'':<22} {'tc / bare':<11} {'':>8} {'':>8} {_fmt(ratio['added_p50_ms'], 'x'):>8} "
                f"{_fmt(ratio['added_p99_ms'], 'x'):>8} {_fmt(ratio['cpu_s_per_1000'], 'x'):>9}"
            )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_open_files_limit()
    box = machine()
    accounts = bench_accounts(args.accounts)
    with work_dir("tc-bench-overhead-") as tmp:
        root = Path(tmp)
        fake = FakeUpstreamProcess(accounts, root)
        fake.start()
        bare = BareProxyProcess(fake.url, f"Bearer {accounts[0].access_token}")
        proxy = None
        try:
            bare.start()
            proxy, _ = start_teamclaude(root / "teamclaude", fake.url, accounts)
            assert proxy.process is not None and proxy.port is not None
            fake_host, fake_port = split_host_port(fake.url)
            targets = [
                Target("direct", fake_host, int(fake_port), None),
                Target("bare", "127.0.0.1", bare.port, bare.pid),
                Target("teamclaude", "127.0.0.1", proxy.port, proxy.process.pid),
            ]
            started = time.perf_counter()
            workloads = [w for w in WORKLOADS if w.name in args.workloads]
            cells = await measure(targets, workloads, args.rounds, {1: args.requests_c1, 32: args.requests_c32}, args.warmup)
            elapsed = time.perf_counter() - started
            rss = {"bare": rss_mb(bare.pid), "teamclaude": rss_mb(proxy.process.pid)}
            for target in targets:
                await target.close()
        finally:
            if proxy is not None:
                proxy.stop()
            bare.stop()
            fake.stop()
    return {
        "benchmark": "overhead",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["bench/overhead.py", *sys.argv[1:]]),
        "python": sys.version.split()[0],
        "machine": {**box, "load_average_after": machine()["load_average"]},
        "accounts": args.accounts,
        "rounds": args.rounds,
        "requests_per_batch": {"c1": args.requests_c1, "c32": args.requests_c32},
        "elapsed_s": round(elapsed, 1),
        "rss_mb_at_end": rss,
        "workloads": summarise(cells, targets, workloads),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds and requests (< 1 min)")
    parser.add_argument("--rounds", type=int, help="rounds (default 8; quick 3)")
    parser.add_argument("--requests-c1", type=int, help="requests per batch at concurrency 1 (default 250; quick 60)")
    parser.add_argument("--requests-c32", type=int, help="requests per batch at concurrency 32 (default 1280; quick 320)")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up requests per target and workload")
    parser.add_argument("--accounts", type=int, default=4, help="accounts in the pool")
    parser.add_argument("--workloads", nargs="+", choices=[w.name for w in WORKLOADS], default=[w.name for w in WORKLOADS],
                        help="run only these workloads (e.g. while profiling)")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 8)
    args.requests_c1 = args.requests_c1 or (60 if args.quick else 250)
    args.requests_c32 = args.requests_c32 or (320 if args.quick else 1280)
    result = asyncio.run(run(args))
    print(table(result["workloads"]))
    print(f"{result['rounds']} rounds, {result['accounts']} accounts, {result['elapsed_s']} s; "
          f"proxy RSS at end: bare {result['rss_mb_at_end']['bare']:.0f} MB, teamclaude {result['rss_mb_at_end']['teamclaude']:.0f} MB")
    print(f"wrote {write_results('overhead', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
