"""The Deck against the real demo (fake upstream + real proxy): `s`, choose, Enter pins it."""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.deck.ptyrun import PtyProcess

REPO = Path(__file__).resolve().parents[2]
DEMO = "import sys; from teamclaude.demo import main; sys.exit(main(['--no-deck', '--port', '0']))"


class Demo:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", DEMO], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=REPO, start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")

    def wait_ready(self, timeout: float = 60.0) -> Path:
        """The demo's settings file, once it says the proxy is up."""
        config = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line == "":
                break
            found = re.search(r"export TEAMCLAUDE_CONFIG=(\S+)", line)
            if found:
                config = Path(found.group(1))
            if line.startswith("Running until Ctrl-C") and config is not None:
                return config
        pytest.fail("the demo did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # the demo stops its proxy and cleans up
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.drain.join(5)
        self.process.stdout.close()


@pytest.fixture
def demo():
    running = Demo()
    yield running
    running.stop()


def wait_for_file(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_switch_from_the_deck_pins_the_account_in_the_proxy(demo, tmp_path):
    config = demo.wait_ready()
    state = config.parent / "state.json"
    wait_for_file(state)
    env = dict(os.environ, TEAMCLAUDE_CONFIG=str(config), CLAUDE_CONFIG_DIR=str(tmp_path / "claude"),
               TERM="xterm-256color")
    deck = PtyProcess([sys.executable, "-m", "deck", "--state", str(state)], env, 100, 30, cwd=str(REPO))
    try:
        assert deck.read_until(b"linus"), deck.output[-2000:]
        deck.send(b"s")
        assert deck.read_until(b"Switch account")
        deck.send(b"j")  # from the first account (ada) to the second (grace)
        deck.send(b"\r")
        assert deck.read_until(b"current account pinned to grace"), deck.output[-3000:]
        # The proxy wrote the pin to its state file and the Deck shows it in the header.
        assert deck.read_until("pinned → grace".encode()), deck.output[-3000:]
        deck.send(b"q")
        assert deck.wait() == 0
    finally:
        deck.close()
