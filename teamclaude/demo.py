"""`teamclaude demo`: the real proxy in front of a fake Anthropic API with simulated accounts.

A new user sees rotation, benches and the Deck without owning an account. Everything lives
in a temporary directory that is removed at exit; nothing touches the user's own settings.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import yaml

from teamclaude.fakeupstream import FakeAccount, FakeUpstream, demo_accounts
from teamclaude.proxyproc import ProxyProcess
from teamclaude.urls import split_host_port

PREFERRED_PORT = 3456
MODELS = ("claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5")


def free_port(preferred: int) -> int:
    """`preferred` when it is free on 127.0.0.1, else any free port."""
    for candidate in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free port on 127.0.0.1")


def write_demo_config(directory: Path, upstream: str, port: int, accounts: list[FakeAccount]) -> tuple[Path, str]:
    """Settings and accounts files for the demo proxy; returns (settings path, proxy key)."""
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({
        "port": port,
        "upstream": upstream,
        "state_file": str(directory / "state.json"),
        "oauth_token_url": f"{upstream}/v1/oauth/token",
        "oauth_authorize_url": f"{upstream}/oauth/authorize",
        "oauth_profile_url": f"{upstream}/api/oauth/profile",
    }))
    proxy_key = "tc-" + secrets.token_urlsafe(24)[:32]
    entries = [
        {
            "name": account.name, "type": "oauth", "id": account.uuid, "email": account.email,
            "plan": account.plan, "access_token": account.access_token,
            "refresh_token": account.refresh_token, "expires_at": int((time.time() + 8 * 3600) * 1000),
        }
        for account in accounts
    ]
    accounts_file = directory / "accounts.yaml"
    accounts_file.write_text(yaml.safe_dump({"proxy_key": proxy_key, "accounts": entries}, sort_keys=False))
    accounts_file.chmod(0o600)
    return config, proxy_key


class Traffic:
    """Concurrent Claude Code-like sessions: streaming requests with a session id, a think
    time between turns, now and then a few subagents (`x-claude-code-agent-id`, same session
    id) working beside the main conversation. A session lasts a few minutes, then ends and a
    new one takes its place, so the Deck always shows as many sessions as the demo runs: each
    writes a transcript under `claude_dir` (where the Deck looks for live sessions) and
    removes it when it ends."""

    def __init__(self, proxy_url: str, proxy_key: str, sessions: int = 5, claude_dir: Path | None = None) -> None:
        self.host, port = split_host_port(proxy_url)
        self.port = port or 80
        self.proxy_key = proxy_key
        self.sessions = sessions
        self.transcripts = (claude_dir / "projects" / "teamclaude-demo") if claude_dir else None
        self.stopping = threading.Event()
        self.sent = 0
        self.errors = 0

    def start(self) -> None:
        if self.transcripts is not None:
            self.transcripts.mkdir(parents=True, exist_ok=True)
        for index in range(self.sessions):
            threading.Thread(target=self._session_loop, args=(index,), daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def _session_loop(self, index: int) -> None:
        rng = random.Random(index)
        # Staggered starts: the first answers teach the proxy each account's position
        # before most sessions pick one.
        if self.stopping.wait(1.5 * index):
            return
        while not self.stopping.is_set():
            session_id = str(uuid.uuid4())
            model = MODELS[index % 2]  # Opus and Sonnet main conversations
            try:
                for _ in range(rng.randint(25, 50)):
                    self._turn(session_id, None, model, rng)
                    if rng.random() < 0.03:
                        for _ in range(rng.randint(2, 3)):
                            agent = uuid.uuid4().hex[:17]
                            threading.Thread(target=self._subagent, args=(session_id, agent, rng.randrange(1 << 30)),
                                             daemon=True).start()
                    if self.stopping.wait(rng.uniform(2.0, 8.0)):
                        return
            finally:
                self._transcript(session_id, None)

    def _subagent(self, session_id: str, agent: str, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(rng.randint(1, 3)):
            if self.stopping.wait(rng.uniform(0.5, 2.0)):
                return
            self._one_request(session_id, agent, "claude-haiku-4-5", rng)

    def _turn(self, session_id: str, agent: str | None, model: str, rng: random.Random) -> None:
        self._transcript(session_id, "user")
        self._one_request(session_id, agent, model, rng)
        self._transcript(session_id, "assistant")

    def _transcript(self, session_id: str, kind: str | None) -> None:
        """Append a turn to the session's transcript (None: the session ended, remove it)."""
        if self.transcripts is None:
            return
        path = self.transcripts / f"{session_id}.jsonl"
        if kind is None:
            path.unlink(missing_ok=True)
            return
        stamp = datetime.now(UTC).isoformat()
        entry = {"type": kind, "timestamp": stamp, "sessionId": session_id,
                 "message": {"role": kind, "content": [{"type": "text", "text": "…"}]}}
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def _one_request(self, session_id: str, agent: str | None, model: str, rng: random.Random) -> None:
        prompt = f"demo subagent {agent}" if agent else f"demo agent {session_id[:8]}"
        body = json.dumps({
            "model": model, "max_tokens": 1024, "stream": True,
            "system": [{"type": "text", "text": prompt, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "x" * rng.randint(2000, 12000)}],
        })
        headers = {
            "content-type": "application/json", "anthropic-version": "2023-06-01",
            "x-teamclaude-key": self.proxy_key, "x-claude-code-session-id": session_id,
            "x-fake-chunks": str(rng.randint(5, 30)), "x-fake-chunk-interval-ms": "60",
            "x-fake-output-tokens": str(rng.randint(300, 3000)),
        }
        if agent is not None:
            headers["x-claude-code-agent-id"] = agent
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request("POST", "/v1/messages?beta=true", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            self.sent += 1
            self.errors += response.status >= 400
        except (OSError, http.client.HTTPException):  # the demo is stopping, or the proxy went away
            self.errors += 1
        finally:
            connection.close()


def _print_intro(fake: FakeUpstream, proxy: ProxyProcess, config: Path, accounts: list[FakeAccount],
                 claude_dir: Path | None) -> None:
    names = ", ".join(account.name for account in accounts)
    print(f"teamclaude demo: fake Anthropic API at {fake.url} with {len(accounts)} simulated accounts ({names})")
    print(f"proxy (mitmdump -s teamclaude_addon.py): {proxy.url}")
    print()
    print("Point a client or the Deck at it from another terminal:")
    print(f"  export TEAMCLAUDE_CONFIG={config}")
    print('  eval "$(teamclaude env)"   # ANTHROPIC_BASE_URL and the proxy key header')
    if claude_dir is not None:
        print(f"  export CLAUDE_CONFIG_DIR={claude_dir}   # the demo sessions' transcripts, for the Deck")
    print("  teamclaude deck            # live dashboard;  teamclaude status / capacity also work")
    print()
    sys.stdout.flush()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends the demo like Ctrl-C, so the proxy child and temp files are cleaned up."""
    raise KeyboardInterrupt


def _port(text: str) -> int:
    port = int(text) if text.isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="teamclaude demo", description=__doc__.splitlines()[0])
    parser.add_argument("--traffic", action="store_true", help="drive a few concurrent sessions so rotation is visible")
    parser.add_argument("--sessions", type=int, default=9, help="concurrent sessions with --traffic (default 9)")
    parser.add_argument("--port", type=_port, default=PREFERRED_PORT, help="proxy port (default 3456, or a free one)")
    parser.add_argument("--no-deck", action="store_true", help="do not show the Deck even on a terminal")
    args = parser.parse_args(argv)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    directory = Path(tempfile.mkdtemp(prefix="teamclaude-demo-"))
    accounts = demo_accounts(time.time())
    fake = FakeUpstream(accounts=accounts, chunk_interval_s=0.05).start()
    traffic: Traffic | None = None
    try:
        config, proxy_key = write_demo_config(directory, fake.url, free_port(args.port), accounts)
        with ProxyProcess(config, ["--set", "flow_detail=0"], env={"TEAMCLAUDE_CONFIG": str(config)}) as proxy:
            _print_intro(fake, proxy, config, accounts, directory / "claude" if args.traffic else None)
            if args.traffic:
                traffic = Traffic(proxy.url, proxy_key, args.sessions, directory / "claude")
                traffic.start()
            if sys.stdout.isatty() and not args.no_deck:
                from deck.app import main as deck_main

                os.environ["TEAMCLAUDE_CONFIG"] = str(config)
                os.environ["CLAUDE_CONFIG_DIR"] = str(directory / "claude")  # the demo sessions' transcripts
                return deck_main(["--state", str(directory / "state.json")])
            print("Running until Ctrl-C.", flush=True)
            while proxy.process is not None and proxy.process.poll() is None:
                time.sleep(0.5)
            print("the proxy stopped:\n" + "".join(proxy.output[-20:]), file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if traffic is not None:
            traffic.stop()
        fake.stop()
        shutil.rmtree(directory, ignore_errors=True)
