"""Where teamclaude keeps its files by default (behaviour §2)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP_DIR = "teamclaude"


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The settings file: `TEAMCLAUDE_CONFIG`, else the XDG config dir, else `~/.config`."""
    env = os.environ if env is None else env
    explicit = env.get("TEAMCLAUDE_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = env.get("XDG_CONFIG_HOME")
    root = Path(base) if base else _home(env) / ".config"
    return root / APP_DIR / "config.yaml"


def default_state_path(env: Mapping[str, str] | None = None) -> Path:
    """The Deck's state file: under `XDG_STATE_HOME`, else `~/.local/state`."""
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME")
    root = Path(base) if base else _home(env) / ".local" / "state"
    return root / APP_DIR / "state.json"


def display_path(path: Path) -> str:
    """`path` for messages, with the home directory shortened to `~`."""
    text = str(path)
    home = str(Path.home())
    if home not in ("", "/") and text.startswith(home + os.sep):
        return "~" + text[len(home):]
    return text


def fingerprint(path: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of a file, None when it cannot be read: poll it to notice edits."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)
