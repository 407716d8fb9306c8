"""Does cancelling the shared-state task always stop it? Start `SharedState.run()` against a
real redis-server, cancel it at a random moment in its first 30 ms (while it connects, loads
its scripts, subscribes and resyncs: commands that redis-py sends through `asyncio.wait_for`),
and count the tasks still running 2 s later. On Python 3.11 `wait_for` can lose the
cancellation (CPython gh-86296); a task that runs on after it was cancelled hung CI.

    .venv/bin/python bench/cancel_race.py [--rounds 300]

Run it with 3.11 and with 3.12 to compare. To see the race the proxy guards against, run it
in a worktree of older code (`git worktree add /tmp/old 77e76a4~1`, copy this file to
/tmp/old/bench/, run it there): it measures the tree it sits in.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routing.config import RoutingConfig  # noqa: E402
from routing.engine import Router  # noqa: E402
from routing.types import AccountSpec  # noqa: E402
from teamclaude.shared import state  # noqa: E402
from tests.redis_server import RedisServer, redis_server_binary  # noqa: E402


async def count_runaways(url: str, rounds: int) -> int:
    runaways = 0
    chance = random.Random(1)
    for n in range(rounds):
        router = Router(RoutingConfig(), [AccountSpec("alice", "oauth"), AccountSpec("bob", "oauth")])
        shared = state.SharedState(url, router, time.time, lambda: None, instance_id=f"race-{n}")
        task = asyncio.create_task(shared.run())
        await asyncio.sleep(chance.uniform(0, 0.03))
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        runaways += not done  # left running: it stands for a heartbeat that outlives its proxy
    return runaways


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    binary = redis_server_binary()
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install -y redis-server)")
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(binary, Path(directory)).start()
        try:
            runaways = asyncio.run(count_runaways(server.url, args.rounds))
        finally:
            server.stop()
    print(f"Python {sys.version.split()[0]}, {state.__file__}: {args.rounds} cancellations, "
          f"{runaways} task(s) still running 2 s later")


if __name__ == "__main__":
    main()
