"""Many long SSE streams through teamclaude at once: all complete, none stalls.

    .venv/bin/python bench/concurrency.py             # full run: N = 50, 200, 500 (~1.5 min)
    .venv/bin/python bench/concurrency.py --quick     # N = 50, 200 for 6 s (< 1 min)
    .venv/bin/python bench/concurrency.py --direct --bare   # also without a proxy, and through
                                                            # the bare mitmproxy floor (~4 min)

N clients each open a keep-alive connection (starts spread over `--ramp` seconds) and ask
for one streamed message whose SSE events the fake upstream (its own process) sends every
`--interval-ms` for `--seconds`. Each client stamps every event when its terminating
blank line arrives. A stream's stall is the largest gap between consecutive events beyond
the upstream's own spacing (gap - interval); the table gives p50/p99/max of that per-stream
worst, and the p99 over every gap. A stream completes when it ends with status 200, clean
chunked framing and every event. The proxy's RSS is sampled every 0.5 s (peak shown) and
its CPU read from `/proc/<pid>/stat` (the fake's and this client's CPU are shown too: on a
small machine they compete with the proxy); a fresh proxy serves each N. `--direct` runs
the same streams straight against the fake first (what the machine, the fake and the client
cost on their own), `--bare` through mitmproxy with only `bench/bare_addon.py` (what
mitmproxy itself costs).

Prints a table; writes bench/results/concurrency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import pairwise
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

# Events the fake sends besides the text deltas: message_start, content_block_start, ping,
# content_block_stop, message_delta, message_stop (teamclaude/fake/messages.py).
_FRAME_EVENTS = 6


@dataclass
class StreamResult:
    ok: bool
    events: int
    first_event_s: float | None = None
    worst_excess_s: float = 0.0
    excesses: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class OpenStreams:
    now: int = 0
    peak: int = 0

    def opened(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)


@dataclass
class Plan:
    streams: int
    chunks: int
    interval_s: float
    ramp_s: float

    @property
    def expected_events(self) -> int:
        return self.chunks + _FRAME_EVENTS


async def one_stream(host: str, port: int, plan: Plan, index: int, headers: dict[str, str], body: bytes,
                     streams: OpenStreams) -> StreamResult:
    await asyncio.sleep(plan.ramp_s * index / max(1, plan.streams))
    connection = None
    try:
        connection = await Connection.open(host, port)
        streams.opened()
        timeout = plan.expected_events * plan.interval_s + 60
        response = await asyncio.wait_for(
            connection.request("POST", "/v1/messages", headers, body, keep_body=False, time_events=True), timeout
        )
    except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
        return StreamResult(False, 0, error=f"{type(exc).__name__}: {exc}")
    finally:
        if connection is not None:
            streams.now -= 1
            await connection.close()
    times = response.event_times
    excesses = [max(0.0, later - earlier - plan.interval_s) for earlier, later in pairwise(times)]
    ok = response.status == 200 and response.complete and len(times) == plan.expected_events
    return StreamResult(
        ok=ok,
        events=len(times),
        first_event_s=response.time_to_first_event,
        worst_excess_s=max(excesses, default=0.0),
        excesses=excesses,
        error=None if ok else f"status {response.status}, complete={response.complete}, {len(times)} events",
    )


async def sample_process(pid: int | None, every_s: float, peak_rss: list[float], stop: asyncio.Event) -> None:
    while pid is not None and not stop.is_set():
        peak_rss[0] = max(peak_rss[0], rss_mb(pid))
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except asyncio.TimeoutError:
            pass


async def run_streams(host: str, port: int, pid: int | None, fake_pid: int, plan: Plan) -> dict[str, Any]:
    account = bench_accounts(1)[0]
    body = message_body(stream=True, text="stream")
    streams = OpenStreams()
    peak_rss = [rss_mb(pid) if pid is not None else 0.0]
    rss_before = peak_rss[0]
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_process(pid, 0.5, peak_rss, stop))
    cpu_before = cpu_seconds(pid) if pid is not None else 0.0
    fake_cpu_before = cpu_seconds(fake_pid)
    own_cpu_before = time.process_time()
    started = time.perf_counter()
    tasks = []
    for index in range(plan.streams):
        headers = {
            **client_headers(account, f"bench-stream-{index:04d}"),
            "x-fake-chunks": str(plan.chunks),
            "x-fake-chunk-interval-ms": str(round(plan.interval_s * 1000)),
        }
        tasks.append(one_stream(host, port, plan, index, headers, body, streams))
    results: list[StreamResult] = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    stop.set()
    await sampler
    proxy_cpu = (cpu_seconds(pid) - cpu_before) if pid is not None else None
    worst = [r.worst_excess_s for r in results if r.ok]
    every_gap = [e for r in results if r.ok for e in r.excesses]
    first = [r.first_event_s for r in results if r.ok and r.first_event_s is not None]
    errors = sorted({r.error for r in results if r.error})
    ms = lambda values, q: round(1000 * percentile(values, q), 1) if values else None  # noqa: E731
    return {
        "streams": plan.streams,
        "completed": sum(r.ok for r in results),
        "peak_open": streams.peak,
        "stall_ms": {"p50": ms(worst, 0.5), "p99": ms(worst, 0.99), "max": ms(worst, 1.0)},
        "all_gaps_excess_p99_ms": ms(every_gap, 0.99),
        "first_event_ms": {"p50": ms(first, 0.5), "p99": ms(first, 0.99), "max": ms(first, 1.0)},
        "proxy_rss_mb": {"before": round(rss_before, 1), "peak": round(peak_rss[0], 1)} if pid is not None else None,
        "proxy_cpu_s": round(proxy_cpu, 2) if proxy_cpu is not None else None,
        "upstream_cpu_s": round(cpu_seconds(fake_pid) - fake_cpu_before, 2),
        "client_cpu_s": round(time.process_time() - own_cpu_before, 2),
        "elapsed_s": round(elapsed, 1),
        "errors": errors[:5],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    nofile = raise_open_files_limit()
    box = machine()
    accounts = bench_accounts(args.accounts)
    chunks = max(1, round(args.seconds * 1000 / args.interval_ms) - _FRAME_EVENTS + 1)
    rows: list[dict[str, Any]] = []
    with work_dir("tc-bench-concurrency-") as tmp:
        root = Path(tmp)
        fake = FakeUpstreamProcess(accounts, root)
        fake.start()
        try:
            fake_host, fake_port = split_host_port(fake.url)
            for count in args.streams:
                plan = Plan(count, chunks, args.interval_ms / 1000, args.ramp)
                if args.direct:
                    print(f"  {count} streams direct …", file=sys.stderr, flush=True)
                    row = await run_streams(fake_host, int(fake_port), None, fake.pid, plan)
                    rows.append({"target": "direct", **row})
                if args.bare:
                    print(f"  {count} streams through the bare mitmproxy floor …", file=sys.stderr, flush=True)
                    bare = BareProxyProcess(fake.url, f"Bearer {accounts[0].access_token}")
                    bare.start()
                    try:
                        row = await run_streams("127.0.0.1", bare.port, bare.pid, fake.pid, plan)
                    finally:
                        bare.stop()
                    rows.append({"target": "bare", **row})
                print(f"  {count} streams through teamclaude …", file=sys.stderr, flush=True)
                proxy, _ = start_teamclaude(root / f"teamclaude-{count}", fake.url, accounts)
                try:
                    assert proxy.process is not None and proxy.port is not None
                    row = await run_streams("127.0.0.1", proxy.port, proxy.process.pid, fake.pid, plan)
                finally:
                    proxy.stop()
                rows.append({"target": "teamclaude", **row})
        finally:
            fake.stop()
    return {
        "benchmark": "concurrency",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["bench/concurrency.py", *sys.argv[1:]]),
        "python": sys.version.split()[0],
        "machine": {**box, "load_average_after": machine()["load_average"]},
        "accounts": args.accounts,
        "seconds": args.seconds,
        "interval_ms": args.interval_ms,
        "chunks_per_stream": chunks,
        "ramp_s": args.ramp,
        "open_files_limit": nofile,
        "runs": rows,
    }


def table(result: dict[str, Any]) -> str:
    header = (f"{'N':>5} {'target':<11} {'done':>9} {'stall p50':>10} {'p99':>8} {'max':>8} {'gaps p99':>9} "
              f"{'1st ev p99':>10} {'RSS peak':>9} {'CPU s':>7} {'fake CPU':>8} {'client':>7}")
    lines = [header, "-" * len(header)]
    for row in result["runs"]:
        stall = row["stall_ms"]
        rss = f"{row['proxy_rss_mb']['peak']:.0f} MB" if row["proxy_rss_mb"] else "-"
        cpu = "-" if row["proxy_cpu_s"] is None else f"{row['proxy_cpu_s']:.1f}"
        lines.append(
            f"{row['streams']:>5} {row['target']:<11} {row['completed']:>4}/{row['streams']:<4} "
            f"{_ms(stall['p50']):>10} {_ms(stall['p99']):>8} {_ms(stall['max']):>8} {_ms(row['all_gaps_excess_p99_ms']):>9} "
            f"{_ms(row['first_event_ms']['p99']):>10} {rss:>9} {cpu:>7} {row['upstream_cpu_s']:>8.1f} {row['client_cpu_s']:>7.1f}"
        )
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 50, 200 for 6 s (< 1 min)")
    parser.add_argument("--streams", type=int, nargs="+", help="concurrent stream counts (default 50 200 500)")
    parser.add_argument("--seconds", type=float, help="length of each stream (default 20; quick 6)")
    parser.add_argument("--interval-ms", type=int, default=50, help="upstream spacing between SSE events")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which the streams start")
    parser.add_argument("--accounts", type=int, default=4, help="accounts in the pool")
    parser.add_argument("--direct", action="store_true", help="also run each N straight against the fake upstream")
    parser.add_argument("--bare", action="store_true", help="also run each N through the bare mitmproxy floor")
    args = parser.parse_args(argv)
    args.streams = args.streams or ([50, 200] if args.quick else [50, 200, 500])
    args.seconds = args.seconds or (6.0 if args.quick else 20.0)
    result = asyncio.run(run(args))
    print(table(result))
    for row in result["runs"]:
        if row["errors"]:
            print(f"  N={row['streams']} {row['target']}: {'; '.join(row['errors'])}")
    print(f"{result['chunks_per_stream']} text chunks per stream every {result['interval_ms']} ms "
          f"({result['seconds']:.0f} s), {result['accounts']} accounts, starts spread over {result['ramp_s']} s")
    print(f"wrote {write_results('concurrency', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
