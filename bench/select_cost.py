"""What one `Router.select` + `release` costs, by pool size.

    .venv/bin/python bench/select_cost.py              # 5, 50, 200 accounts
    .venv/bin/python bench/select_cost.py --accounts 50 --rounds 20000

Two cases per pool size: a warm bound conversation (its account keeps it: the common
request) and a new conversation (the full selection over every account). Every account is
proven, with 5h/7d windows at different points of their week, so all of them are usable
candidates. Prints microseconds per call (median of 5 runs) and writes JSON to
bench/results/select_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from routing.config import RoutingConfig  # noqa: E402
from routing.engine import Router  # noqa: E402
from routing.ratelimits import parse_ratelimit_headers  # noqa: E402
from routing.types import AccountSpec, RequestInfo  # noqa: E402
from routing.usage import Usage  # noqa: E402

T0 = 1_800_000_000.0
P = "anthropic-ratelimit-unified-"


def pool(n: int) -> Router:
    router = Router(RoutingConfig(), [AccountSpec(f"acct{i:03d}", "oauth") for i in range(n)])
    for i in range(n):
        headers = [
            (P + "5h-utilization", f"{0.1 + 0.5 * i / n:.3f}"), (P + "5h-reset", str(int(T0 + 3600))),
            (P + "5h-status", "allowed"),
            (P + "7d-utilization", f"{0.3 + 0.3 * i / n:.3f}"), (P + "7d-reset", str(int(T0 + 3.5 * 86400))),
            (P + "7d-status", "allowed"),
        ]
        router.observe(f"acct{i:03d}", 200, parse_ratelimit_headers(headers), T0)
    return router


def per_call_us(n: int, rounds: int, warm: bool) -> float:
    router = pool(n)
    usage = Usage(input_tokens=10, output_tokens=10)
    request = RequestInfo("/v1/messages", "claude-opus-4-5", True, "main")
    requests = [RequestInfo("/v1/messages", "claude-opus-4-5", True, f"s{i}") for i in range(rounds)]
    now = T0 + 1
    decision = router.select(request, now)
    assert decision is not None
    router.release(decision.ticket, now, usage, 200)
    started = time.perf_counter()
    for i in range(rounds):
        decision = router.select(request if warm else requests[i], now + i * 1e-3)
        router.release(decision.ticket, now + i * 1e-3, usage, 200)  # type: ignore[union-attr]
    return (time.perf_counter() - started) / rounds * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, action="append")
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "select_cost.json")
    args = parser.parse_args()
    results = []
    print(f"{'accounts':>8} {'warm bound µs':>14} {'new conversation µs':>20}")
    for n in args.accounts or [5, 50, 200]:
        warm = statistics.median(per_call_us(n, args.rounds, True) for _ in range(5))
        new = statistics.median(per_call_us(n, max(200, args.rounds // max(1, n // 10)), False) for _ in range(5))
        results.append({"accounts": n, "warm_bound_us": round(warm, 2), "new_conversation_us": round(new, 2)})
        print(f"{n:>8} {warm:>14.1f} {new:>20.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
