"""The real Deck on the real state file of a proxy in a shared pool: two real proxies on one
real redis-server, the Deck in a pseudo-terminal. It shows the pool in step, which proxy
serves a session, then DEGRADED once Redis is killed."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from teamclaude.fakeupstream import FakeUpstream
from tests.deck.ptyrun import PtyProcess
from tests.e2e.harness import call, message_body, oauth_account, proxy_status, start_proxy, write_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SESSION_HEADER = "x-claude-code-session-id"


def wait_until(condition: Callable[[], Any], what: str, within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.05)
    return value


def test_the_deck_shows_the_pool_in_step_then_degraded(tmp_path, redis_server):
    with ExitStack() as stack:
        fake = stack.enter_context(FakeUpstream(accounts=[oauth_account("alice"), oauth_account("bob")]))
        proxies = []
        for index in range(2):
            cfg = write_config(tmp_path / f"machine-{index}", fake.url, [fake.account("alice"), fake.account("bob")],
                               oauth_token_url=f"{fake.url}/v1/oauth/token", shared_state=redis_server.url)
            proxies.append((cfg, stack.enter_context(start_proxy(cfg))))
        (here_cfg, here), (_, there) = proxies
        for proxy, session in ((here, "both0001-aaaa"), (there, "both0001-aaaa"), (there, "only0002-bbbb")):
            status, _, body = call(proxy.url, "POST", "/v1/messages", message_body(), {SESSION_HEADER: session})
            assert status == 200, body

        def pool_view() -> dict[str, Any] | None:
            shared = proxy_status(here)["shared"]
            sessions = [{c["session"] for c in i["conversations"]} for i in shared["instances"]]
            complete = shared["healthy"] and sorted(sessions, key=len) == [{"both0001-aaaa"},
                                                                           {"both0001-aaaa", "only0002-bbbb"}]
            return shared if complete else None
        shared = wait_until(pool_view, "both proxies and their sessions in the first proxy's pool view")
        tags = [f"{os.uname().nodename.split('.')[0]}:{i['pid']}" for i in shared["instances"]]

        env = dict(os.environ, CLAUDE_CONFIG_DIR=str(tmp_path / "claude"), TEAMCLAUDE_CONFIG=str(here_cfg.config),
                   XDG_STATE_HOME=str(tmp_path / "xdg-state"), TERM="xterm-256color")
        for variable in ("COLUMNS", "LINES"):
            env.pop(variable, None)
        deck = PtyProcess([sys.executable, "-m", "deck", "--state", str(here_cfg.state)], env, 200, 40, cwd=REPO)
        stack.callback(deck.close)
        assert deck.read_until(b"in step"), deck.output[-3000:]
        assert deck.read_until(b"(1 not here)"), deck.output[-3000:]  # the session only the other proxy serves
        # The session both proxies serve names both (in the order the pool lists them).
        both = (f"via {tags[0]},{tags[1]}".encode(), f"via {tags[1]},{tags[0]}".encode())
        wait_until(lambda: deck.read_until(b"via ", timeout=1) and any(tag in deck.output for tag in both),
                   "the session's row naming both proxies")
        assert b"DEGRADED" not in deck.output

        redis_server.kill()
        assert deck.read_until(b"SHARED POOL DEGRADED for "), deck.output[-3000:]
        assert deck.read_until(b"serving from this proxy's own view"), deck.output[-3000:]
        assert deck.read_until(b"Connection"), deck.output[-3000:]  # the error, in short
        deck.send(b"q")
        assert deck.wait() == 0
        assert b"Traceback" not in deck.output
