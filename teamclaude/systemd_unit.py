"""The systemd user unit that runs the proxy (`teamclaude service install`): its text and its
place, from plain inputs (no I/O).

Quoting follows systemd.syntax(7) "Quoting" and systemd.service(5) "Command lines": every
word is double-quoted with `\\` and `"` backslash-escaped and `%` doubled (specifiers are
expanded in both `ExecStart=` and `Environment=`). In `ExecStart=` arguments `$` is doubled
too (`$FOO` would be replaced by a variable at start); the program's own path is never
expanded, so its `$` stays single. systemd refuses control characters in both places, and
quotes or a backslash in the program's path, so such a path is refused here with a clear
message instead.

Hardening: only settings a user manager can apply. `NoNewPrivileges=` is a prctl and `UMask=`
a plain umask; `LockPersonality=`, `RestrictRealtime=` and `RestrictSUIDSGID=` are seccomp
filters, which an unprivileged manager may install under no-new-privileges. Mount-namespace
settings (`PrivateTmp=`, `ProtectSystem=`, `ProtectHome=`) are left out: systemd before 253
silently ignores them in a user unit, and 253+ implies `PrivateUsers=yes` for them, which
stops the unit from starting wherever unprivileged user namespaces are off (a sysctl,
AppArmor's userns restriction). The proxy keeps nothing in /tmp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

UNIT_NAME = "teamclaude.service"
# The first line of every unit this module writes: `uninstall` removes only such a file.
MARKER = "# Written by `teamclaude service install`"

# mitmproxy shuts down cleanly on SIGINT (as on Ctrl-C): flows in flight are saved, the state
# file is written. A stop that takes longer than this is ended with SIGKILL.
STOP_TIMEOUT_S = 30
RESTART_DELAY_S = 5

# systemd refuses these in the program's path ("Executable name contains special characters").
_NOT_IN_PROGRAM_PATH = ("'", '"', "\\")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class UnitError(ValueError):
    """An input the unit file cannot express; `str()` names it."""


def unit_path(env: Mapping[str, str]) -> Path:
    """Where a user unit goes: `$XDG_CONFIG_HOME/systemd/user/`, else `~/.config/systemd/user/`."""
    base = env.get("XDG_CONFIG_HOME")
    root = Path(base) if base else Path(env.get("HOME") or Path.home()) / ".config"
    return root / "systemd" / "user" / UNIT_NAME


def render(command: Sequence[str], environment: Mapping[str, str]) -> str:
    """The unit text: `command` (an absolute program path, then its arguments) run with
    `environment` added. Neither may hold a secret: the unit file is world-readable."""
    if not command or not command[0].startswith("/"):
        raise UnitError(f"the program to run must be an absolute path, not {command[0] if command else '(none)'!r}")
    if any(char in command[0] for char in _NOT_IN_PROGRAM_PATH):
        raise UnitError(f"systemd runs no program whose path holds a quote or a backslash: {command[0]!r}")
    exec_start = " ".join([_word(command[0], what="the program path"),
                           *(_word(arg, what="an argument", dollars=True) for arg in command[1:])])
    lines = [
        MARKER + "; `teamclaude service uninstall` removes it.",
        "# No secret here: the proxy reads its keys and tokens from the accounts file beside its settings.",
        "[Unit]",
        "Description=teamclaude: pooled Claude accounts behind one proxy",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={exec_start}",
        *(f"Environment={_environment(name, value)}" for name, value in environment.items()),
        "# mitmproxy's clean shutdown, as on Ctrl-C",
        "KillSignal=SIGINT",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        "Restart=on-failure",
        f"RestartSec={RESTART_DELAY_S}",
        "# Files the proxy writes (accounts, token journal, state, request logs) are yours alone.",
        "UMask=0077",
        "NoNewPrivileges=yes",
        "LockPersonality=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "",
        "[Install]",
        "WantedBy=default.target",
    ]
    return "\n".join(lines) + "\n"


def _environment(name: str, value: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise UnitError(f"{name!r} is not an environment variable name")
    return _word(f"{name}={value}", what=f"the value of {name}")


def _word(text: str, *, what: str, dollars: bool = False) -> str:
    """`text` as one double-quoted systemd word."""
    bad = next((char for char in text if ord(char) < 0x20 or ord(char) == 0x7F), None)
    if bad is not None:
        raise UnitError(f"{what} holds a control character ({bad!r}), which a systemd unit cannot hold: {text!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnitError(f"{what} is not valid UTF-8, which a systemd unit requires: {text!r}") from None
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if dollars:
        text = text.replace("$", "$$")
    return f'"{text}"'
