"""`kill -9` during token refreshes: how often is the newest refresh token lost?

The real proxy (mitmdump + addon) serves one OAuth account of the fake Anthropic API whose
tokens live 60 s while the proxy refreshes 3600 s before expiry, so every request refreshes
and rotates the single-use refresh token. Client threads keep requests going; after a random
moment the proxy's process group gets SIGKILL. The proxy is then started again on the same
files (at start it recovers what a killed refresh left behind) and the accounts file must
hold the refresh token the fake upstream accepts now; a request through the restarted proxy
must then succeed. A kill counts as *lost* when it does not.

Lost kills are split by whether the proxy had surely received the newest pair (its access
token reached the upstream in a request, or its refresh token was in some file the proxy
wrote — journal, temp file) or maybe not: killed between the upstream rotating the token and
the journal line being written (the answer in flight, being parsed): no program can keep a
pair it has not read yet.

    .venv/bin/python bench/kill9.py                # 20 kills (~1-2 min)
    .venv/bin/python bench/kill9.py --kills 5 --seed 3

Prints one line per kill and a summary; writes JSON to bench/results/kill9.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from teamclaude.accounts_store import AccountsDoc, AccountsError, AccountsStore
from teamclaude.fakeupstream import FakeUpstream
from tests.e2e.harness import (
    ConfigDir,
    call,
    message_body,
    oauth_account,
    start_proxy,
    write_config,
)

RESULTS = Path(__file__).resolve().parent / "results"
TOKEN_PATH = "/v1/oauth/token"
CLIENTS = 4


@dataclass
class Kill:
    round: int
    delay_s: float
    refreshes: int  # token calls the upstream answered during the round
    lost: bool  # the accounts file lacked the upstream's current refresh token after restart
    received: bool  # the newest pair was used upstream or written to some file before the kill
    in_temp_files: bool  # the lost refresh token sat in a leftover temp file
    temp_files_left: int  # `.accounts.yaml.*.tmp` files in the directory after the restart
    served_after_restart: bool


def _temp_files(cfg: ConfigDir) -> list[Path]:
    return sorted(cfg.accounts.parent.glob(f".{cfg.accounts.name}.*.tmp"))


def _traffic(proxy_url: str, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            call(proxy_url, "POST", "/v1/messages", message_body())
        except OSError:
            return  # the proxy is gone


def _reseed(cfg: ConfigDir, access_token: str, refresh_token: str) -> None:
    """Put the upstream's current pair into the file, so the next round can refresh."""

    def change(doc: AccountsDoc) -> None:
        alice = doc.get("alice")
        assert alice is not None
        alice.access_token, alice.refresh_token, alice.expires_at = access_token, refresh_token, 0

    AccountsStore(cfg.accounts).update(change)


def run(kills: int, seed: int, root: Path, echo: bool = True) -> list[Kill]:
    rng = random.Random(seed)
    alice = oauth_account("alice")
    outcomes: list[Kill] = []
    with FakeUpstream([alice], token_ttl_s=60) as fake:
        cfg = write_config(
            root, fake.url, [alice], oauth_token_url=fake.url + TOKEN_PATH, refresh_skew_s=3600, hold_budget_s=2,
        )
        _reseed(cfg, alice.access_token or "", alice.refresh_token or "")
        for round_ in range(kills):
            proxy = start_proxy(cfg)
            stop = threading.Event()
            threads = [threading.Thread(target=_traffic, args=(proxy.url, stop)) for _ in range(CLIENTS)]
            calls_before = len(fake.token_calls)
            delay = rng.uniform(0.3, 1.5)
            try:
                for thread in threads:
                    thread.start()
                time.sleep(delay)
                assert proxy.process is not None
                os.killpg(proxy.process.pid, signal.SIGKILL)
                proxy.process.wait(10)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(30)
                proxy.stop()
            newest = fake.account("alice")
            received = any(
                (v == f"Bearer {newest.access_token}")
                for r in fake.requests if r.path == "/v1/messages" for k, v in r.headers if k.lower() == "authorization"
            )
            in_temp = any(newest.refresh_token in p.read_text(errors="replace") for p in _temp_files(cfg))
            on_disk = any(newest.refresh_token in p.read_text(errors="replace")
                          for p in cfg.accounts.parent.iterdir() if p.is_file())
            received = received or on_disk
            with start_proxy(cfg) as restarted:  # recovers what the killed refresh left behind
                try:
                    saved = AccountsStore(cfg.accounts).read().get("alice")
                    lost = saved is None or saved.refresh_token != newest.refresh_token
                except AccountsError:
                    lost = True
                served = call(restarted.url, "POST", "/v1/messages", message_body())[0] == 200
            left = len(_temp_files(cfg))
            outcome = Kill(round_, round(delay, 3), len(fake.token_calls) - calls_before, lost, received,
                           in_temp and lost, left, served)
            outcomes.append(outcome)
            if echo:
                print(f"kill {round_ + 1:2d}: after {delay:.2f}s, {outcome.refreshes:3d} refreshes: "
                      f"{'LOST' if lost else 'kept'}"
                      f"{' (pair had been received)' if lost and received else ''}"
                      f"{' (pair in a temp file)' if outcome.in_temp_files else ''}"
                      f", served after restart: {served}, temp files left: {left}", flush=True)
            if lost or not served:
                current = fake.account("alice")
                _reseed(cfg, current.access_token or "", current.refresh_token or "")
            fake.clear_requests()
    return outcomes


def summary(outcomes: list[Kill]) -> dict[str, int]:
    return {
        "kills": len(outcomes),
        "lost": sum(k.lost for k in outcomes),
        "lost_after_receiving": sum(k.lost and k.received for k in outcomes),
        "lost_with_pair_in_temp_file": sum(k.in_temp_files for k in outcomes),
        "not_served_after_restart": sum(not k.served_after_restart for k in outcomes),
        "temp_files_left": outcomes[-1].temp_files_left if outcomes else 0,
        "refreshes": sum(k.refreshes for k in outcomes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="teamclaude-kill9-") as tmp:
        outcomes = run(args.kills, args.seed, Path(tmp))
    result = summary(outcomes)
    print(json.dumps(result))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kill9.json").write_text(json.dumps({"summary": result, "kills": [asdict(k) for k in outcomes]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
