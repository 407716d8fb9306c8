"""`teamclaude`: manage pooled Claude accounts and point Claude Code at the proxy (behaviour §12)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from rich.console import Console

from teamclaude import __version__
from teamclaude.accounts_store import AccountsError
from teamclaude.cli_accounts import cmd_accounts, cmd_import, cmd_login, cmd_remove
from teamclaude.cli_common import CommandError
from teamclaude.cli_proxy import cmd_api, cmd_capacity, cmd_env, cmd_run, cmd_status
from teamclaude.credentials import UnknownAccount
from teamclaude.importer import ImportFailed
from teamclaude.login import LoginError
from teamclaude.oauth import OAuthError
from teamclaude.settings import SettingsError

# Failures the person can act on: printed as one line, exit 1, never a traceback.
USER_ERRORS = (SettingsError, AccountsError, CommandError, LoginError, ImportFailed, OAuthError, UnknownAccount)

Handler = Callable[[argparse.Namespace, Console], int]


def cmd_delegated(args: argparse.Namespace, out: Console) -> int:
    """`demo` and `deck` parse their own options; `main` hands them over before argparse."""
    return _delegate(args.command, args.rest)


def _delegate(command: str, rest: list[str]) -> int:
    return importlib.import_module(_DELEGATED[command]).main(_rest(rest))


def _rest(rest: list[str]) -> list[str]:
    return rest[1:] if rest[:1] == ["--"] else rest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teamclaude",
        description="Pool Claude accounts behind one local proxy for Claude Code.",
        epilog="Start the proxy with 'mitmdump -s teamclaude_addon.py'. Settings: $TEAMCLAUDE_CONFIG "
               "or ~/.config/teamclaude/config.yaml.",
    )
    parser.add_argument("--version", action="version", version=f"teamclaude {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    login = command("login", cmd_login, "add a Claude subscription (browser sign-in) or, with --api, an API key")
    login.add_argument("--api", action="store_true", help="store an Anthropic Console API key (asked without echo)")
    login.add_argument("--name", help="the account's name (default: its email, or api-key-N)")

    imp = command("import", cmd_import, "add the account Claude Code is logged into")
    imp.add_argument("--from", dest="source", metavar="PATH",
                     help="a Claude Code credentials file (default: ~/.claude/.credentials.json)")
    imp.add_argument("--name", help="the account's name (default: its email)")

    accounts = command("accounts", cmd_accounts, "list accounts with plan, email and status")
    accounts.add_argument("-v", "--verbose", action="store_true", help="also show token expiry, org, id and source")

    remove = command("remove", cmd_remove, "remove an account")
    remove.add_argument("name", help="the account's name (see 'teamclaude accounts')")

    command("env", cmd_env, "print the shell exports that send Claude Code through the proxy")

    run = command("run", cmd_run, "run Claude Code through the proxy (teamclaude run -- ARGS)")
    run.add_argument("claude_args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for claude")

    status = command("status", cmd_status, "show the running proxy's accounts, windows and capacity")
    status.add_argument("--json", action="store_true", help="print the raw JSON")

    capacity = command("capacity", cmd_capacity, "pool capacity verdict (exit 0 green, 10 yellow, 20 red or no proxy)")
    capacity.add_argument("--json", action="store_true", help="print JSON for scripts")

    api = command("api", cmd_api, "GET an Anthropic API path with an account's fresh credentials")
    api.add_argument("path", help="e.g. /api/oauth/usage or /v1/models")
    api.add_argument("--account", metavar="NAME", help="which account (default: the first enabled one)")

    deck = command("deck", cmd_delegated, "the live dashboard (same as teamclaude-deck)")
    deck.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    demo = command("demo", cmd_delegated, "try teamclaude with a fake upstream and three simulated accounts")
    demo.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    help_cmd = commands.add_parser("help", help="show help for teamclaude or one command")
    help_cmd.add_argument("topic", nargs="?", help="a command name")
    help_cmd.set_defaults(handler=None)
    return parser


# Commands that own their options: everything after the name is theirs (argparse's
# REMAINDER would refuse a first argument that starts with "--").
_DELEGATED = {"demo": "teamclaude.demo", "deck": "deck.app"}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in _DELEGATED:
        return _delegate(arguments[0], arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "help":
        return _help(parser, args.topic)
    out = Console()
    try:
        return args.handler(args, out)
    except USER_ERRORS as exc:
        print(f"teamclaude: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("teamclaude: interrupted", file=sys.stderr)
        return 130


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
