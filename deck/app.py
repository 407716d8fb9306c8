"""`teamclaude deck` / `python -m deck`: the live dashboard process (behaviour §10).

On a terminal: a full-screen view redrawn about four times a second, with keyboard
actions. Otherwise: a plain-text summary every `--interval` seconds. `--once` prints one
summary and exits (0 when a state file was read, 1 when not).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from types import FrameType

from rich.console import Console
from rich.live import Live

from deck import locate
from deck.actions import ActionRunner, Target
from deck.controller import Ui, handle_key
from deck.keys import parse_keys
from deck.locallog import LocalLog
from deck.model import State
from deck.monitor import Monitor
from deck.presence import PresenceTracker, claude_dir
from deck.statefile import StateReader
from deck.terminal import KeyboardInput
from deck.view import Frame, render, render_summary
from teamclaude.urls import connect_host, http_url, split_host_port

FRAME_S = 0.25
PLAIN_WIDTH = 100
SIGTERM_EXIT = 128 + signal.SIGTERM


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="teamclaude deck", description="Live view of the teamclaude proxy.")
    parser.add_argument("--state", metavar="PATH", help="state file to read (default: state_file from the settings)")
    parser.add_argument("--interval", type=float, default=5.0, metavar="S",
                        help="seconds between summaries when not on a terminal (default 5)")
    parser.add_argument("--once", action="store_true", help="print one plain summary and exit")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be a positive number of seconds")
    return args


def connect_url(listen: str) -> str:
    """The proxy's listen address as a URL to connect to (a wildcard host means this host)."""
    if not listen:
        return ""
    host, port = split_host_port(listen)
    return http_url(connect_host(host), port)


def action_target(state: State | None) -> Target:
    if state is None:
        return Target("", locate.accounts_path(""))
    return Target(connect_url(state.proxy.listen), locate.accounts_path(state.proxy.accounts_file))


class _StopOnSignal:
    """SIGTERM ends the loops cleanly (so the terminal is restored) instead of killing us."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: Callable | int | None = None

    def __enter__(self) -> _StopOnSignal:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    located = locate.state_path(args.state)
    notes = (located.note,) if located.note else ()
    monitor = Monitor(StateReader(located.path), PresenceTracker(claude_dir(), time.time), time.time)
    if args.once:
        frame = monitor.frame(notes=notes)
        console = _plain_console()
        console.print(render_summary(frame, console.width))
        return 0 if frame.snapshot.state is not None else 1
    try:
        with _StopOnSignal() as stop:
            if sys.stdout.isatty():
                _interactive(monitor, notes, stop.event)
            else:
                _plain(monitor, notes, args.interval, stop.event)
            return SIGTERM_EXIT if stop.event.is_set() else 0
    except KeyboardInterrupt:
        return 0


def _plain_console() -> Console:
    """Plain output is usually a log or a pipe: 100 columns unless COLUMNS says otherwise."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=PLAIN_WIDTH)
    return console


def _plain(monitor: Monitor, notes: tuple[str, ...], interval: float, stop: threading.Event) -> None:
    console = _plain_console()
    while True:
        console.print(render_summary(monitor.frame(notes=notes), console.width))
        console.print("─" * 20)
        console.file.flush()
        if stop.wait(interval):
            return


def _interactive(monitor: Monitor, notes: tuple[str, ...], stop: threading.Event) -> None:
    console = Console()
    log = LocalLog()
    runner = ActionRunner(log)
    ui = Ui()
    needs_you: int | None = None
    with ExitStack() as stack:  # unwinds Live (leave the alternate screen) before the keyboard
        keyboard = stack.enter_context(KeyboardInput(sys.stdin.fileno())) if sys.stdin.isatty() else None
        live = stack.enter_context(
            Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
        )
        frame = monitor.frame(ui, log.lines(), notes)
        while not ui.quit and not stop.is_set():
            live.update(render(frame, console.size.width, console.size.height), refresh=True)
            if keyboard is None:
                stop.wait(FRAME_S)
                data = b""
            else:
                try:
                    data = keyboard.read(FRAME_S)
                except EOFError:
                    return
            state = frame.snapshot.state
            names = [account.name for account in state.accounts] if state else []
            current = (state.pinned or state.current) if state else ""
            for key in parse_keys(data):
                ui, effect = handle_key(ui, key, names, current)
                if effect is not None:
                    runner.submit(effect, action_target(state))
            frame = monitor.frame(ui, log.lines(), notes)
            needs_you = _ring_on_change(console, frame, ui, needs_you)


def _ring_on_change(console: Console, frame: Frame, ui: Ui, before: int | None) -> int | None:
    now = frame.fleet.needs_you if frame.fleet is not None else None
    if ui.bell and before is not None and now is not None and now != before:
        console.bell()
    return now if now is not None else before
