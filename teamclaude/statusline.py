"""`teamclaude statusline`: one line about the pool's quota for Claude Code's `statusLine`.

Claude Code runs the command after every message with a JSON object about the session on
stdin (`session_id`, `model.id`, …). This reads that object and the proxy's state file, and
prints one line: no network, no mitmproxy or rich import, so it starts in tens of
milliseconds. A missing or stale state file gives a short line saying so, never an error.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from deck.fmt import duration, short_account
from teamclaude.paths import config_path, default_state_path
from teamclaude.quota import PoolWindow, accounts_with_room, pool_members, pool_windows

# A state file not rewritten for this long: the proxy is not running (it rewrites every 2 s).
STALE_AFTER_S = 30.0
MODEL_WINDOW_LABEL = {"7d_sonnet": "sonnet", "7d_oi": "opus"}
_COLOURS = {"allowed": "32", "allowed_warning": "33", "rejected": "31"}
_MAX_STDIN = 1 << 20


_STATE_FILE_KEY = re.compile(r"^\s*state_file\s*:", re.MULTILINE)


def state_path() -> Path:
    """Where the proxy writes its state. The settings are parsed (yaml and validation cost
    about 40 ms, most of this command's time) only when they name a `state_file`."""
    settings = config_path()
    try:
        text = settings.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    if not _STATE_FILE_KEY.search(text):
        return default_state_path()
    from teamclaude.settings import load_settings

    return load_settings(settings).state_file


def read_client(stream: TextIO) -> tuple[str | None, str | None]:
    """(session id, model id) from Claude Code's JSON on stdin; anything else is ignored."""
    if stream.isatty():
        return None, None
    try:
        document = json.loads(stream.read(_MAX_STDIN) or "{}")
    except (ValueError, OSError, UnicodeDecodeError):
        return None, None
    if not isinstance(document, dict):
        return None, None
    session = document.get("session_id")
    model = document.get("model")
    model_id = model.get("id") if isinstance(model, dict) else model
    return (session if isinstance(session, str) else None,
            model_id if isinstance(model_id, str) else None)


def _paint(text: str, status: str, colour: bool) -> str:
    return f"\x1b[{_COLOURS.get(status, '0')}m{text}\x1b[0m" if colour else text


def _window(label: str, window: PoolWindow, now: float, colour: bool) -> str:
    assert window.utilization is not None
    text = _paint(f"{label} {round(window.utilization * 100)}%", window.status, colour)
    if window.reset is not None:
        text += f" ↻{duration(window.reset - now)}"
    return text


def _session_account(state: Mapping[str, Any], session: str | None) -> str | None:
    if session is None:
        return None
    for entry in state.get("sessions") or []:
        if isinstance(entry, dict) and entry.get("id") == session and isinstance(entry.get("account"), str):
            return entry["account"]
    return None


def render(state: Mapping[str, Any] | None, now: float, *, session: str | None = None,
           model: str | None = None, colour: bool = False) -> str:
    """The status line for this state (None: no state file)."""
    if state is None:
        return "teamclaude: no proxy state (start it with 'teamclaude server')"
    written = state.get("written_at")
    if not isinstance(written, (int, float)) or now - written > STALE_AFTER_S:
        age = f" (state {duration(now - written)} old)" if isinstance(written, (int, float)) else ""
        return f"teamclaude: proxy not running{age}"
    accounts = state.get("accounts") or []
    members = pool_members(accounts)
    if not members:
        return "teamclaude: no subscription account can serve (teamclaude accounts)"
    windows = pool_windows(members, now)
    parts = [_window(name, windows[name], now, colour) for name in ("5h", "7d") if windows[name].utilization is not None]
    for name, label in MODEL_WINDOW_LABEL.items():
        window = windows.get(name)
        if window is not None and window.utilization is not None and model is not None and label in model.lower():
            parts.append(_window(f"{label} 7d", window, now, colour))
    room = accounts_with_room(members, now, model)
    parts.append(_paint(f"{room}/{len(members)} free", "allowed" if room else "rejected", colour))
    account = _session_account(state, session)
    if account:
        parts.append(f"on {short_account(account)}")
    return "pool " + " · ".join(parts)


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    if argv and argv[0] in ("-h", "--help"):
        print("usage: teamclaude statusline\n\n" + (__doc__ or "").split("\n\n")[0], file=stdout)
        return 0
    session, model = read_client(stdin)
    try:
        state = json.loads(state_path().read_bytes())
    except FileNotFoundError:
        state = None
    except Exception as exc:  # noqa: BLE001 (a status line prints one line whatever happens)
        print(f"teamclaude: {' '.join(str(exc).split())[:200] or type(exc).__name__}", file=stdout)
        return 0
    colour = "NO_COLOR" not in os.environ
    print(render(state if isinstance(state, dict) else None, time.time(), session=session, model=model,
                 colour=colour), file=stdout)
    return 0
