"""Where the Deck finds the state file and the accounts file.

The settings loader (`teamclaude.settings`) is imported lazily: the Deck must keep working
(with the default paths) when settings cannot be loaded, and report why in one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Located:
    path: Path
    note: str | None = None  # why a default was used, when settings could not be read


def default_state_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME")
    root = Path(base) if base else Path(env.get("HOME") or Path.home()) / ".local" / "state"
    return root / "teamclaude" / "state.json"


def _settings_value(key: str) -> tuple[str | None, str | None]:
    """The settings value for `key` and a problem note; (None, None) when settings are absent."""
    try:
        from teamclaude.settings import load_settings
    except ImportError:
        return None, None
    try:
        settings = load_settings()
    except (ValueError, OSError) as exc:  # SettingsError is a ValueError
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        return None, f"settings not loaded ({first_line}); using defaults"
    value = getattr(settings, key, None)
    return (str(value) if value else None), None


def state_path(explicit: str | None) -> Located:
    """`--state PATH`, else the `state_file` setting, else the XDG default."""
    if explicit:
        return Located(Path(explicit).expanduser())
    value, note = _settings_value("state_file")
    if value:
        return Located(Path(value).expanduser())
    return Located(default_state_path(), note)


def accounts_path(from_state: str) -> Path | None:
    """The accounts file of the running proxy (named in its state), else the settings one.

    The state's path wins: it is the file whose proxy key the running proxy checks, also
    when the Deck watches a proxy started with other settings (e.g. the demo).
    """
    if from_state:
        return Path(from_state).expanduser()
    value, _ = _settings_value("accounts_file")
    return Path(value).expanduser() if value else None
