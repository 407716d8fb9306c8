"""`teamclaude service install|uninstall`: run the proxy as a systemd user service.

The unit runs this environment's `teamclaude server` with the settings file's absolute path in
`TEAMCLAUDE_CONFIG`; its text comes from `systemd_unit`. Nothing here runs systemctl: the
commands to run are printed (there may be no user manager where this runs, e.g. over ssh
without lingering, or in a container).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rich.console import Console

from teamclaude.atomic import atomic_write
from teamclaude.cli_common import CommandError
from teamclaude.paths import config_path, display_path
from teamclaude.settings import load_settings
from teamclaude.systemd_unit import MARKER, UNIT_NAME, UnitError, render, unit_path

SERVICE = UNIT_NAME.removesuffix(".service")


def proxy_command(extra: Sequence[str], executable: str | None = None) -> list[str]:
    """`teamclaude server [-- extra]` with this environment's entry point, by absolute path
    (the interpreter with `-m teamclaude.cli` when the entry point is not beside it)."""
    python = Path(executable or sys.executable)
    script = python.parent / "teamclaude"
    command = [str(script)] if script.is_file() else [str(python), "-m", "teamclaude.cli"]
    return [*command, "server", *(["--", *extra] if extra else [])]


def service_environment(settings_path: Path, env: Mapping[str, str]) -> dict[str, str]:
    """What the service needs beyond the user manager's own environment: the settings file,
    unbuffered output (log lines reach the journal as they happen) and, when set here, the
    state directory, so the Deck and `teamclaude status` read the file the service writes."""
    environment = {"TEAMCLAUDE_CONFIG": str(settings_path), "PYTHONUNBUFFERED": "1"}
    if env.get("XDG_STATE_HOME"):
        environment["XDG_STATE_HOME"] = os.path.abspath(env["XDG_STATE_HOME"])
    return environment


def cmd_install(args: argparse.Namespace, out: Console) -> int:
    settings_path = Path(os.path.abspath(Path(args.config).expanduser() if args.config else config_path()))
    if not settings_path.is_file():
        login = "teamclaude login"
        if settings_path != Path(os.path.abspath(config_path())):
            login = f"TEAMCLAUDE_CONFIG={shlex.quote(str(settings_path))} {login}"
        raise CommandError(
            f"no settings file at {display_path(settings_path)} yet: run {login} to create it "
            "(it adds the first account), or name one with --config PATH"
        )
    load_settings(settings_path)  # a broken file is refused now, not in a restart loop later
    extra = args.mitm_args[1:] if args.mitm_args[:1] == ["--"] else args.mitm_args
    try:
        text = render(proxy_command(extra), service_environment(settings_path, os.environ))
    except UnitError as exc:
        raise CommandError(f"cannot write the unit: {exc}") from None
    if args.print:
        sys.stdout.write(text)
        return 0
    path = unit_path(os.environ)
    updated = path.exists()
    if updated and not _ours(path):
        raise CommandError(f"{display_path(path)} was not written by teamclaude: move it away first")
    try:
        atomic_write(path, text.encode("utf-8"), mode=0o644)
    except OSError as exc:
        raise CommandError(f"{display_path(path)}: cannot write the unit: {exc.strerror or exc}") from None
    say = _say(out)
    say(f"{'Updated' if updated else 'Wrote'} {display_path(path)}: teamclaude server with {display_path(settings_path)}.")
    if updated:
        say("If it is running, apply the change:")
        say(f"  systemctl --user daemon-reload && systemctl --user restart {SERVICE}")
    say("Start it now and at every login:")
    say(f"  systemctl --user daemon-reload && systemctl --user enable --now {SERVICE}")
    say("Keep it running while you are logged out, and start it at boot:")
    say("  loginctl enable-linger $USER")
    say(f"Its log: journalctl --user -u {SERVICE} -f")
    return 0


def cmd_uninstall(args: argparse.Namespace, out: Console) -> int:
    path = unit_path(os.environ)
    say = _say(out)
    if not path.exists():
        say(f"No unit at {display_path(path)}: nothing to remove.")
        return 0
    if not _ours(path):
        raise CommandError(f"{display_path(path)} was not written by teamclaude: left as it is")
    # What `systemctl --user disable` removes, so the order of the two steps does not matter.
    link = path.parent / "default.target.wants" / UNIT_NAME
    try:
        if link.is_symlink() and Path(os.path.abspath(link.parent / os.readlink(link))) == path:
            link.unlink()
        path.unlink()
    except OSError as exc:
        raise CommandError(f"{display_path(path)}: cannot remove the unit: {exc.strerror or exc}") from None
    say(f"Removed {display_path(path)}. Stop the running service and let systemd forget it:")
    say(f"  systemctl --user stop {SERVICE}; systemctl --user daemon-reload")
    return 0


def _ours(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            return file.readline().startswith(MARKER)
    except OSError as exc:
        raise CommandError(f"{display_path(path)}: cannot read it: {exc.strerror}") from None


def _say(out: Console) -> Callable[[str], None]:
    """Plain lines: a path may hold `[` (rich markup) and must never be wrapped."""
    return lambda line: out.print(line, markup=False, highlight=False, soft_wrap=True)
