"""`teamclaude`: manage pooled Claude accounts and point Claude Code at the proxy (behaviour §12).

Command modules are imported only when their command runs: `teamclaude statusline` runs
after every Claude Code message and must not pay for rich, mitmproxy or the login code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from teamclaude import __version__

if TYPE_CHECKING:
    from rich.console import Console

Handler = Callable[[argparse.Namespace, "Console"], int]


def user_errors() -> tuple[type[Exception], ...]:
    """Failures the person can act on: printed as one line, exit 1, never a traceback."""
    from teamclaude.accounts_store import AccountsError
    from teamclaude.cli_common import CommandError
    from teamclaude.credentials import UnknownAccount
    from teamclaude.importer import ImportFailed
    from teamclaude.login import LoginError
    from teamclaude.oauth import OAuthError
    from teamclaude.settings import SettingsError

    return (SettingsError, AccountsError, CommandError, LoginError, ImportFailed, OAuthError, UnknownAccount)


def _lazy(target: str) -> Handler:
    """`module:function`, imported when the command runs."""
    module, name = target.split(":")

    def handler(args: argparse.Namespace, out: Console) -> int:
        return getattr(importlib.import_module(module), name)(args, out)

    return handler


def cmd_delegated(args: argparse.Namespace, out: Console) -> int:
    """`demo` and `deck` parse their own options; `main` hands them over before argparse."""
    return _delegate(args.command, args.rest)


def _service_help(args: argparse.Namespace, out: Console) -> int:
    """`teamclaude service` without an action: its help."""
    args.command_parser.print_help()
    return 0


def _delegate(command: str, rest: list[str]) -> int:
    return importlib.import_module(_DELEGATED[command]).main(_rest(rest))


def _rest(rest: list[str]) -> list[str]:
    return rest[1:] if rest[:1] == ["--"] else rest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teamclaude",
        description="Pool Claude accounts behind one local proxy for Claude Code.",
        epilog="Start the proxy with 'teamclaude server'. Settings: $TEAMCLAUDE_CONFIG "
               "or ~/.config/teamclaude/config.yaml.",
    )
    parser.add_argument("--version", action="version", version=f"teamclaude {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler, command_parser=sub)
        return sub

    server = command("server", _lazy("teamclaude.cli_server:cmd_server"), "run the proxy (mitmdump with the addon; teamclaude server -- MITMDUMP ARGS)")
    server.add_argument("--web", action="store_true", help="run mitmweb instead of mitmdump (flows in a browser)")
    server.add_argument("mitm_args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for mitmdump/mitmweb, after --")

    login = command("login", _lazy("teamclaude.cli_accounts:cmd_login"), "add a Claude subscription (browser sign-in) or, with --api, an API key")
    login.add_argument("--api", action="store_true", help="store an Anthropic Console API key (asked without echo)")
    login.add_argument("--name", help="the account's name (default: its email, or api-key-N)")

    imp = command("import", _lazy("teamclaude.cli_accounts:cmd_import"), "add the account Claude Code is logged into")
    imp.add_argument("--from", dest="source", metavar="PATH",
                     help="a Claude Code credentials file (default: ~/.claude/.credentials.json)")
    imp.add_argument("--name", help="the account's name (default: its email)")

    accounts = command("accounts", _lazy("teamclaude.cli_accounts:cmd_accounts"), "list accounts with plan, email and status")
    accounts.add_argument("-v", "--verbose", action="store_true", help="also show token expiry, org, id and source")

    remove = command("remove", _lazy("teamclaude.cli_accounts:cmd_remove"), "remove an account")
    remove.add_argument("name", help="the account's name (see 'teamclaude accounts')")

    disable = command("disable", _lazy("teamclaude.cli_accounts:cmd_disable"),
                      "send no new requests to an account (kept in the accounts file; requests in flight finish)")
    disable.add_argument("name", help="the account's name (see 'teamclaude accounts')")
    enable = command("enable", _lazy("teamclaude.cli_accounts:cmd_enable"), "let a disabled account serve again")
    enable.add_argument("name", help="the account's name (see 'teamclaude accounts')")
    priority = command("priority", _lazy("teamclaude.cli_accounts:cmd_priority"),
                       "set an account's priority: lower goes first among accounts equally good by the pace rule")
    priority.add_argument("name", help="the account's name (see 'teamclaude accounts')")
    priority.add_argument("priority", metavar="N", help="an integer, default 0 (negative numbers go before 0)")

    keys = command("keys", _lazy("teamclaude.cli_keys:cmd_keys"), "per-client keys: one key per person or machine")
    keys_commands = keys.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)
    keys_add = keys_commands.add_parser("add", help="make a new client key (shown once)")
    keys_add.add_argument("name", help="letters, digits, '-', '_', '.' (at most 64)")
    keys_add.add_argument("--max-concurrent", metavar="N", type=int,
                          help="at most N requests in flight for this client (more get a 429)")
    keys_commands.add_parser("list", help="list client keys (names, limits, usage; never the keys)")
    keys_remove = keys_commands.add_parser("remove", help="remove a client key (refused from then on)")
    keys_remove.add_argument("name", help="the client key's name (see 'teamclaude keys list')")
    for sub in keys_commands.choices.values():
        sub.set_defaults(command_parser=sub)

    command("env", _lazy("teamclaude.cli_proxy:cmd_env"), "print the shell exports that send Claude Code through the proxy")

    run = command("run", _lazy("teamclaude.cli_proxy:cmd_run"), "run Claude Code through the proxy (teamclaude run -- ARGS)")
    run.add_argument("claude_args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for claude")

    status = command("status", _lazy("teamclaude.cli_proxy:cmd_status"), "show the running proxy's accounts, windows and capacity")
    status.add_argument("--json", action="store_true", help="print the raw JSON")

    capacity = command("capacity", _lazy("teamclaude.cli_proxy:cmd_capacity"), "pool capacity verdict (exit 0 green, 10 yellow, 20 red or no proxy)")
    capacity.add_argument("--json", action="store_true", help="print JSON for scripts")

    api = command("api", _lazy("teamclaude.cli_proxy:cmd_api"), "GET an Anthropic API path with an account's fresh credentials")
    api.add_argument("path", help="e.g. /api/oauth/usage or /v1/models")
    api.add_argument("--account", metavar="NAME", help="which account (default: the first enabled one)")

    service = command("service", _service_help, "run the proxy as a systemd user service (install, uninstall)")
    service.epilog = ("Then: systemctl --user daemon-reload && systemctl --user enable --now teamclaude. "
                      "Running it for a team (TLS, Redis, keys): docs/deploy.md.")
    actions = service.add_subparsers(dest="action", metavar="ACTION")
    install = actions.add_parser(
        "install", help="write ~/.config/systemd/user/teamclaude.service and print the systemctl lines to run",
        description="Write a systemd user unit that runs 'teamclaude server' with this settings file, "
                    "then print the systemctl and loginctl lines to run. The unit holds no secret.")
    install.add_argument("--config", metavar="PATH", help="the settings file (default: $TEAMCLAUDE_CONFIG or ~/.config/teamclaude/config.yaml)")
    install.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    install.add_argument("mitm_args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for mitmdump, after -- (e.g. -- --set certs=*=cert.pem)")
    install.set_defaults(handler=_lazy("teamclaude.cli_service:cmd_install"), command_parser=install)
    uninstall = actions.add_parser("uninstall", help="remove the unit file (and its enable link)",
                                   description="Remove the unit 'teamclaude service install' wrote, and print how to stop the service.")
    uninstall.set_defaults(handler=_lazy("teamclaude.cli_service:cmd_uninstall"), command_parser=uninstall)

    deck = command("deck", cmd_delegated, "the live dashboard (same as teamclaude-deck)")
    deck.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    demo = command("demo", cmd_delegated, "try teamclaude with a fake upstream and three simulated accounts")
    demo.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    statusline = command("statusline", cmd_delegated,
                         "one line about the pool's quota, for Claude Code's statusLine setting (see README)")
    statusline.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    help_cmd = commands.add_parser("help", help="show help for teamclaude or one command")
    help_cmd.add_argument("topic", nargs="?", help="a command name")
    help_cmd.set_defaults(handler=None)
    return parser


# Commands that own their options: everything after the name is theirs (argparse's
# REMAINDER would refuse a first argument that starts with "--").
_DELEGATED = {"demo": "teamclaude.demo", "deck": "deck.app", "statusline": "teamclaude.statusline"}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in _DELEGATED:
        return _delegate(arguments[0], arguments[1:])
    parser = build_parser()
    args, unknown = parser.parse_known_args(arguments)
    if unknown:
        _refuse_unknown(parser, args, arguments, unknown)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "help":
        return _help(parser, args.topic)
    out = console()
    try:
        return args.handler(args, out)
    except user_errors() as exc:
        print(f"teamclaude: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("teamclaude: interrupted", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # A daemon thread may sit in input() (the login's paste prompt): at interpreter
        # shutdown it can hold the stdin lock and stall the exit. Nothing is left to clean up.
        os._exit(130)


def console() -> Console:
    """A rich console for command output. Outside a terminal (a pipe, a file) nothing is
    wrapped or cut at 80 columns: tables keep their natural width unless COLUMNS says."""
    import os

    from rich.console import Console

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=PLAIN_WIDTH)


# Wide enough that no table or line is ever wrapped when the output is not a terminal.
PLAIN_WIDTH = 10_000

# Commands that hand everything after `--` to another program.
_PASSES_ON = {"run": "claude", "server": "mitmdump"}


def _refuse_unknown(parser: argparse.ArgumentParser, args: argparse.Namespace, arguments: list[str],
                    unknown: list[str]) -> None:
    """Unknown options: the command's own usage (not the top-level one) and, for a command
    that passes options on, the same line with `--`. Exits 2 like argparse."""
    command_parser = getattr(args, "command_parser", None)
    if command_parser is None:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command in _PASSES_ON:
        import shlex

        rest = " ".join(shlex.quote(argument) for argument in arguments[1:])
        command_parser.error(
            f"{unknown[0]} is not an option of 'teamclaude {args.command}': options for "
            f"{_PASSES_ON[args.command]} go after --, as in: teamclaude {args.command} -- {rest}"
        )
    command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")


def _help(parser: argparse.ArgumentParser, topic: str | None) -> int:
    if topic is None:
        parser.print_help()
        return 0
    try:
        parser.parse_args([topic, "--help"])
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
