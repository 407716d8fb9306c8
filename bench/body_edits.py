"""CPU the two body edits cost per request: the metadata.user_id UUID splice and the unpaired
tool-block check, on Claude Code-shaped bodies of growing size.

    .venv/bin/python bench/body_edits.py

Bodies: a conversation of N turns (assistant text + tool_use, user tool_result with a few KB
of output), compact JSON, `metadata.user_id` in the JSON form, as Claude Code sends them.
`user_id` is `rewrite_account_uuid` (one parse of the body at C speed plus the splice; run
on every attempt); `tool_pairs` is `repair` on a well-formed body (one `json.loads` plus a
pass over the blocks; run once per request; nothing re-serialized). Median of 30 runs.

Prints a table; writes bench/results/body_edits.json.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from teamclaude.tool_pairs import repair
from teamclaude.user_id import rewrite_account_uuid

RUNS = 30
FOREIGN = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
MINE = "11111111-2222-4333-8444-555555555555"


def body(turns: int) -> bytes:
    messages: list[dict] = [{"role": "user", "content": "fix the failing test"}]
    for n in range(turns):
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": "Let me look at that. " * 5},
            {"type": "tool_use", "id": f"toolu_{n:04d}", "name": "Bash", "input": {"command": f"cat file{n}.py"}},
        ]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{n:04d}", "content": "def f(x):\n    return x\n" * 150},
        ]})
    user_id = json.dumps({"device_id": "ab" * 32, "account_uuid": FOREIGN, "session_id": MINE}, separators=(",", ":"))
    return json.dumps({"model": "claude-sonnet-4-5", "messages": messages, "system": [{"type": "text", "text": "x" * 20000}],
                       "tools": [{"name": f"t{i}", "input_schema": {"type": "object"}} for i in range(20)],
                       "metadata": {"user_id": user_id}, "max_tokens": 32000, "stream": True},
                      separators=(",", ":")).encode()


def median_ms(action) -> float:
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        action()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> None:
    rows = []
    for turns in (10, 100, 400):
        data = body(turns)
        assert rewrite_account_uuid(data, MINE).status == "rewritten" and repair(data).body is data
        rows.append({"turns": turns, "body_kib": round(len(data) / 1024),
                     "user_id_ms": round(median_ms(lambda data=data: rewrite_account_uuid(data, MINE)), 2),
                     "tool_pairs_ms": round(median_ms(lambda data=data: repair(data)), 2)})
    print(f"{'turns':>6} {'body KiB':>9} {'user_id ms':>11} {'tool_pairs ms':>14}")
    for row in rows:
        print(f"{row['turns']:>6} {row['body_kib']:>9} {row['user_id_ms']:>11} {row['tool_pairs_ms']:>14}")
    out = Path(__file__).parent / "results" / "body_edits.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
