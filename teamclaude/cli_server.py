"""`teamclaude server [--web] [-- MITMPROXY ARGS]`: the proxy, as mitmdump (or mitmweb) with
the installed addon and an explicit reverse mode toward the settings' upstream.

The mode is on mitmproxy's command line, so the one listener is the configured one from the
first instant on every Python (the addon's own choice of mode in `configure` is the fallback
for a bare `mitmdump -s teamclaude_addon.py`). The process is replaced by mitmproxy's, so
signals and the exit status are mitmproxy's own.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from teamclaude import startup
from teamclaude.proxyproc import addon_path, mitmproxy_command
from teamclaude.settings import Settings, load_settings


def config_option(extra: Sequence[str]) -> Path | None:
    """The settings file named in mitmproxy arguments (`--set teamclaude_config=FILE`)."""
    found = None
    for before, arg in zip(["", *extra], extra, strict=False):
        value = arg.removeprefix("--set=") if arg.startswith("--set=") else arg if before == "--set" else ""
        if value.startswith("teamclaude_config="):
            found = Path(value.split("=", 1)[1]).expanduser()
    return found


def server_command(settings: Settings, extra: Sequence[str], *, web: bool) -> list[str]:
    """The mitmproxy command line for `teamclaude server` (a settings file named in `extra`
    is the one used; naming it twice would make mitmproxy skip the script)."""
    command = [*mitmproxy_command("mitmweb" if web else "mitmdump"), "-s", str(addon_path())]
    if config_option(extra) is None:
        command += ["--set", f"teamclaude_config={settings.path}"]
    if not any(arg == "--mode" or arg.startswith("--mode=") or arg in ("-m",) for arg in extra):
        [mode] = startup.plan(
            startup.DEFAULT_MODES, upstream=settings.upstream, listen_host=settings.listen_host,
            port=settings.port, listen_host_option="", web_without_token=False,
        ).modes
        command += ["--mode", mode, "--set", "connection_strategy=lazy"]
    return command + list(extra)


def cmd_server(args: argparse.Namespace, out: Console) -> int:
    extra = args.mitm_args[1:] if args.mitm_args[:1] == ["--"] else args.mitm_args
    settings = load_settings(config_option(extra))  # a bad file stops here, before mitmproxy starts
    command = server_command(settings, extra, web=args.web)
    os.execv(command[0], command)
    return 0  # not reached
