"""The processes a benchmark runs side by side, and what the kernel says they cost.

Each server is its own process so its CPU time can be read from the kernel's accounting
(`/proc/<pid>/stat`, every thread included) and never mixes with the load generator's:
the fake upstream, the bare mitmproxy floor (`bench/bare_addon.py`) and teamclaude itself.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from teamclaude.fakeupstream import FakeAccount  # noqa: E402
from teamclaude.proxyproc import ProxyProcess, mitmproxy_command  # noqa: E402
from tests.e2e.harness import PROXY_KEY, ConfigDir, oauth_account, write_config  # noqa: E402

BARE_ADDON = Path(__file__).resolve().parent / "bare_addon.py"
RESULTS = Path(__file__).resolve().parent / "results"

# Budgets so large that no benchmark moves an account's utilization off zero: routing
# stays in its steady state and the fake never answers 429.
_BIG_BUDGET = {"five_hour_budget": 10**15, "seven_day_budget": 10**16}

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_FAKE_URL = re.compile(r"FAKE_UPSTREAM_URL=(\S+)")
_BARE_LISTENING = re.compile(r"listening at \[?([0-9a-fA-F.:]+?)\]?:(\d+)")


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; child processes inherit it. Returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (not its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Resident set size now, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _LineWatcher:
    """A child process whose output is read on a thread until a line matches."""

    def __init__(self, args: Sequence[str], pattern: re.Pattern[str], env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self._pattern = pattern
        self._env = {**os.environ, **(env or {})}
        self.output: list[str] = []
        self.match: re.Match[str] | None = None
        self._found = threading.Event()
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> re.Match[str]:
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=self._env, start_new_session=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        self._found.wait(timeout)
        if self.match is None:
            self.stop()
            raise RuntimeError(f"{self.args[0]} did not start:\n" + "".join(self.output[-30:]))
        return self.match

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if self.match is None:
                self.match = self._pattern.search(line)
                if self.match:
                    self._found.set()
        self._found.set()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class FakeUpstreamProcess(_LineWatcher):
    """`python -m teamclaude.fakeupstream` with the given accounts, keeping no request log."""

    def __init__(self, accounts: Sequence[FakeAccount], workdir: Path) -> None:
        accounts_file = workdir / "fake-accounts.json"
        accounts_file.write_text(json.dumps([dataclasses.asdict(a) for a in accounts]))
        accounts_file.chmod(0o600)
        super().__init__(
            [sys.executable, "-m", "teamclaude.fakeupstream", "--port", "0", "--no-record",
             "--accounts-json", str(accounts_file)],
            _FAKE_URL,
        )
        self.url = ""

    def start(self, timeout: float = 30.0) -> re.Match[str]:
        match = super().start(timeout)
        self.url = match.group(1)
        return match


class BareProxyProcess(_LineWatcher):
    """mitmdump with only `bench/bare_addon.py`, in reverse mode toward `upstream`."""

    def __init__(self, upstream: str, authorization: str) -> None:
        super().__init__(
            [*mitmproxy_command(), "-s", str(BARE_ADDON), "--mode", f"reverse:{upstream}@127.0.0.1:0",
             "--set", "connection_strategy=lazy", "--set", "flow_detail=0"],
            _BARE_LISTENING,
            env={"BARE_AUTHORIZATION": authorization},
        )
        self.port = 0

    def start(self, timeout: float = 30.0) -> re.Match[str]:
        match = super().start(timeout)
        self.port = int(match.group(2))
        return match


def bench_accounts(count: int) -> list[FakeAccount]:
    return [oauth_account(f"acct{i}", **_BIG_BUDGET) for i in range(count)]


def start_teamclaude(root: Path, upstream: str, accounts: Sequence[FakeAccount],
                     **settings: object) -> tuple[ProxyProcess, ConfigDir]:
    """The real proxy (`mitmdump -s teamclaude_addon.py`) with its own config directory."""
    cfg = write_config(root, upstream, accounts, **settings)
    proxy = ProxyProcess(cfg.config, ["--set", "flow_detail=0"], env=cfg.env()).start()
    return proxy, cfg


def client_headers(account: FakeAccount, session_id: str | None = None) -> dict[str, str]:
    """The same headers go to every target: the fake accepts the account's own bearer token
    directly, the bare floor swaps it, teamclaude takes the proxy key and swaps the token."""
    headers = {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "oauth-2025-04-20,interleaved-thinking-2025-05-14",
        "authorization": f"Bearer {account.access_token}",
        "x-teamclaude-key": PROXY_KEY,
        "user-agent": "teamclaude-bench/1",
    }
    if session_id is not None:
        headers["x-claude-code-session-id"] = session_id
    return headers


def message_body(stream: bool, text: str = "hello") -> bytes:
    return json.dumps({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    }).encode()


def work_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=prefix)


def machine() -> dict[str, object]:
    """What the numbers ran on: CPUs and the load average (other work on the box adds noise)."""
    return {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def write_results(name: str, document: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 < fraction <= 1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered) - 1e-9)))
    return ordered[rank - 1]
