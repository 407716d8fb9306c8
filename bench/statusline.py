"""How long `teamclaude statusline` takes, as Claude Code runs it (a new process with JSON on
stdin), next to the floor of any Python command: `python -c pass` in the same environment.

    .venv/bin/python bench/statusline.py [--runs 40]

Two setups: the usual one (the settings do not name a `state_file`: the state is read from
its default place without parsing the settings) and settings that name one (parsed, ~40 ms
more). Runs alternate between the commands so load on the machine lands on all of them;
prints the table and writes bench/results/statusline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CLAUDE_INPUT = json.dumps({"session_id": "s1", "model": {"id": "claude-sonnet-4-5", "display_name": "Sonnet"}})


def state(now: float) -> dict:
    window = lambda u, reset: {"utilization": u, "reset": now + reset, "status": "allowed"}  # noqa: E731
    accounts = [
        {"name": f"acct{i}@example.com", "kind": "oauth", "plan": "max" if i % 2 else "pro", "status": "ok",
         "windows": {"5h": window(0.1 * i, 3600 + i), "7d": window(0.05 * i, 86400 + i),
                     "7d_sonnet": window(0.02 * i, 86400)}}
        for i in range(8)
    ]
    sessions = [{"id": f"s{i}", "account": accounts[i % 8]["name"]} for i in range(500)]
    return {"version": 1, "seq": 1, "written_at": now + 3600, "accounts": accounts, "sessions": sessions}


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, input=CLAUDE_INPUT, capture_output=True, text=True, env=env, check=True)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        default_state = root / "xdg-state" / "teamclaude" / "state.json"
        default_state.parent.mkdir(parents=True)
        default_state.write_text(json.dumps(state(time.time())))
        (root / "usual.yaml").write_text("# state_file: ~/.local/state/teamclaude/state.json\nport: 3456\n")
        (root / "named.yaml").write_text(f"state_file: {default_state}\nport: 3456\n")
        base = {**os.environ, "HOME": str(root), "XDG_STATE_HOME": str(root / "xdg-state"), "NO_COLOR": "1"}
        statusline = [str(BIN / "teamclaude"), "statusline"]
        commands = {
            "python -c pass": ([str(BIN / "python"), "-c", "pass"], base),
            "statusline": (statusline, {**base, "TEAMCLAUDE_CONFIG": str(root / "usual.yaml")}),
            "statusline, state_file set": (statusline, {**base, "TEAMCLAUDE_CONFIG": str(root / "named.yaml")}),
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for argv, env in commands.values():
            timed(argv, env)  # warm the file cache
        for _ in range(args.runs):
            for name, (argv, env) in commands.items():
                samples[name].append(timed(argv, env))
    rows = {name: {"p50_ms": statistics.median(values), "min_ms": min(values),
                   "p90_ms": statistics.quantiles(values, n=10)[-1]} for name, values in samples.items()}
    print(f"{'command':28} {'min ms':>8} {'p50 ms':>8} {'p90 ms':>8}")
    for name, row in rows.items():
        print(f"{name:28} {row['min_ms']:8.1f} {row['p50_ms']:8.1f} {row['p90_ms']:8.1f}")
    out = Path(__file__).parent / "results" / "statusline.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": args.runs,
                               "cpus": os.cpu_count(), "load": os.getloadavg(), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
