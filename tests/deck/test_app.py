import json
import os
import signal
import subprocess
import sys

import pytest

from deck.app import connect_url
from tests.deck.claude_home import build_fleet_home, copy_fixture
from tests.deck.ptyrun import PtyProcess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def deck_env(tmp_path):
    env = dict(os.environ)
    env.update({
        "CLAUDE_CONFIG_DIR": str(build_fleet_home(tmp_path / "claude")),
        "TEAMCLAUDE_CONFIG": str(tmp_path / "no-config.yaml"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "TERM": "xterm-256color",
    })
    for variable in ("COLUMNS", "LINES"):
        env.pop(variable, None)
    return env


@pytest.fixture
def deck(tmp_path, deck_env):
    state = copy_fixture("fleet.json", tmp_path)
    proc = PtyProcess([sys.executable, "-m", "deck", "--state", str(state)], deck_env, 100, 30, cwd=REPO)
    yield proc
    proc.close()


def test_q_quits_cleanly_and_restores_the_terminal(deck):
    assert deck.read_until(b"carol@example.com"), deck.output[-2000:]
    assert b"alice@example.com" in deck.output
    assert not deck.echo_enabled()  # cbreak mode while running
    deck.send(b"q")
    assert deck.wait() == 0
    assert deck.echo_enabled()
    assert b"Traceback" not in deck.output


def test_switch_selection_reports_the_outcome_in_the_activity_log(deck):
    assert deck.read_until(b"carol@example.com")
    deck.send(b"s")
    assert deck.read_until(b"Switch account")
    deck.send(b"j")
    deck.send(b"\r")
    # The fixture names an accounts file that does not exist: no proxy key, said plainly.
    assert deck.read_until(b"no proxy key"), deck.output[-3000:]
    deck.send(b"q")
    assert deck.wait() == 0


def test_ctrl_c_quits_cleanly(deck):
    assert deck.read_until(b"carol@example.com")
    deck.send(b"\x03")
    assert deck.wait() == 0
    assert deck.echo_enabled()
    assert b"Traceback" not in deck.output


def test_sigterm_restores_the_terminal(deck):
    assert deck.read_until(b"carol@example.com")
    deck.process.send_signal(signal.SIGTERM)
    assert deck.wait() == 128 + signal.SIGTERM
    assert deck.echo_enabled()


def test_once_prints_a_plain_summary(tmp_path, deck_env):
    state = copy_fixture("fleet.json", tmp_path)
    done = subprocess.run([sys.executable, "-m", "deck", "--state", str(state), "--once"],
                          env=deck_env, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "alice@example.com" in done.stdout and "\x1b[" not in done.stdout
    missing = subprocess.run([sys.executable, "-m", "deck", "--state", str(tmp_path / "none.json"), "--once"],
                             env=deck_env, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1
    assert "proxy not running" in missing.stdout


def test_bad_interval_is_a_one_line_error(deck_env):
    done = subprocess.run([sys.executable, "-m", "deck", "--interval", "0"],
                          env=deck_env, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--interval must be a positive number" in done.stderr and "Traceback" not in done.stderr


def test_connect_url():
    assert connect_url("http://127.0.0.1:3456") == "http://127.0.0.1:3456"
    assert connect_url("http://0.0.0.0:3456") == "http://127.0.0.1:3456"
    assert connect_url("127.0.0.1:9000") == "http://127.0.0.1:9000"
    assert connect_url("http://[::]:3456") == "http://[::1]:3456"  # "::" is bound IPv6-only
    assert connect_url("http://[::1]:3456") == "http://[::1]:3456"
    assert connect_url("http://:::3456") == "http://[::1]:3456"  # unbracketed, as the addon once wrote it
    assert connect_url("") == ""


@pytest.mark.parametrize("listen", ["http://:::3456", "http://[::1]:3456"])
def test_switch_with_an_ipv6_listen_address_does_not_crash(tmp_path, deck_env, listen):
    state = copy_fixture("fleet.json", tmp_path)
    document = json.loads(state.read_text())
    document["proxy"]["listen"] = listen
    state.write_text(json.dumps(document))
    proc = PtyProcess([sys.executable, "-m", "deck", "--state", str(state)], deck_env, 100, 30, cwd=REPO)
    try:
        assert proc.read_until(b"carol@example.com"), proc.output[-2000:]
        proc.send(b"s")
        assert proc.read_until(b"Switch account")
        proc.send(b"\r")
        assert proc.read_until(b"no proxy key"), proc.output[-3000:]  # the action ran; no crash
        proc.send(b"q")
        assert proc.wait() == 0
        assert b"Traceback" not in proc.output
    finally:
        proc.close()


class CountingBell:
    rings = 0

    def bell(self):
        self.rings += 1


def test_bell_rings_only_when_enabled_and_needs_you_changes(tmp_path):
    from deck.app import _ring_on_change
    from deck.controller import Ui
    from deck.fleet import Fleet
    from deck.statefile import Snapshot
    from deck.tree import Forest
    from deck.view import Frame

    def frame(needs):
        fleet = Fleet((), Forest((), frozenset()), (), (), 0, needs)
        return Frame(Snapshot(tmp_path, None, None), fleet, 0.0)

    console = CountingBell()
    seen = _ring_on_change(console, frame(1), Ui(bell=True), None)  # first frame: no ring
    seen = _ring_on_change(console, frame(1), Ui(bell=True), seen)
    assert console.rings == 0
    seen = _ring_on_change(console, frame(2), Ui(bell=True), seen)
    assert console.rings == 1
    _ring_on_change(console, frame(3), Ui(bell=False), seen)
    assert console.rings == 1
