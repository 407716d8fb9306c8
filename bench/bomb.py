"""Issue 12 item 7: peak RSS of the proxy and the slowest gap of a concurrent stream while
compressed request bodies that inflate to 1 GiB are sent (keyed to /v1/messages, and with no
key to the pass-through /v1/oauth/token).

    .venv/bin/python bench/bomb.py [--inflated-mib 1024]

Prints one JSON line and writes it to bench/results/bomb.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from teamclaude.fakeupstream import FakeUpstream  # noqa: E402
from tests.e2e.bodies import MIB, bomb_headers, gzip_bomb, peak_rss_mib, send_raw, stream_alongside  # noqa: E402
from tests.e2e.harness import call, message_body, oauth_account, start_proxy, write_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inflated-mib", type=int, default=1024)
    args = parser.parse_args()
    alice = oauth_account("alice")
    bomb = gzip_bomb(args.inflated_mib * MIB)
    result: dict = {"inflated_mib": args.inflated_mib, "wire_kib": len(bomb) // 1024}
    with tempfile.TemporaryDirectory() as root, FakeUpstream([alice]) as fake:
        cfg = write_config(Path(root), fake.url, [alice], oauth_token_url=fake.url + "/v1/oauth/token")
        with start_proxy(cfg) as proxy:
            assert proxy.process is not None
            call(proxy.url, "POST", "/v1/messages", message_body())
            result["rss_before_mib"] = round(peak_rss_mib(proxy.process.pid))
            for path, key in (("/v1/messages", True), ("/v1/oauth/token", False)):
                with stream_alongside(proxy.url, 400, 25, join_s=300) as gaps:
                    began = time.perf_counter()
                    status, _ = send_raw(proxy.url, path, bomb, bomb_headers() if key else bomb_headers(key=None), timeout=300)
                    took = time.perf_counter() - began
                result[path] = {
                    "status": status, "answer_s": round(took, 2),
                    "slowest_gap_ms": round(max(gaps[1:]) * 1000), "peak_rss_mib": round(peak_rss_mib(proxy.process.pid)),
                }
    line = json.dumps(result)
    print(line)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "bomb.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
