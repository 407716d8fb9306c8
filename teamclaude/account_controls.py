"""Operator controls on one account, kept in the accounts file: disable, enable, priority.

One implementation for every way in: the CLI (`teamclaude disable|enable|priority`), the
Deck's keys, the local endpoints (`POST /teamclaude/accounts/NAME/...`) and the mitmproxy
commands (`teamclaude.disable` ...). Each is a locked read-modify-write of the accounts file
(`AccountsStore.update`), so a running proxy, the CLI and the Deck never lose each other's
writes; the proxy applies the file when it notices the change (or at once, when it made it).

Priority (behaviour §5.2): lower goes first among accounts the pace rule finds equally good
(within `pace_tie_band`); it never overrides the pace line, the 5h rail or the caps.
"""

from __future__ import annotations

from dataclasses import dataclass

from teamclaude.accounts_store import Account, AccountsDoc, AccountsStore
from teamclaude.credentials import UnknownAccount

# Wide enough for any ordering a person means, small enough to stay readable.
PRIORITY_LIMIT = 1_000_000


class BadPriority(ValueError):
    """A priority that is not an integer within ±PRIORITY_LIMIT."""


@dataclass(frozen=True)
class Change:
    account: str
    changed: bool  # False: the account already was so (the file is not rewritten)
    message: str


def parse_priority(text: str | int) -> int:
    """A priority from the command line, a key press or JSON (an int, or its digits)."""
    if isinstance(text, bool):
        raise BadPriority("the priority must be an integer, like 0, 1 or -1 (lower goes first)")
    try:
        value = text if isinstance(text, int) else int(str(text).strip())
    except ValueError:
        raise BadPriority(f"the priority must be an integer (lower goes first), got {str(text)[:20]!r}") from None
    if not -PRIORITY_LIMIT <= value <= PRIORITY_LIMIT:
        raise BadPriority(f"the priority must be between {-PRIORITY_LIMIT} and {PRIORITY_LIMIT}")
    return value


def set_disabled(store: AccountsStore, name: str, disabled: bool | None) -> Change:
    """Disable (no new request is sent to it; requests in flight finish) or enable `name`;
    `None` turns it the other way (the Deck's key). Raises `UnknownAccount` for a name the
    file does not have."""

    def mutate(doc: AccountsDoc) -> Change:
        account = _named(doc, name)
        wanted = not account.disabled if disabled is None else disabled
        changed = account.disabled != wanted
        account.disabled = wanted
        verb = "disabled" if wanted else "enabled"
        return Change(name, changed, f"'{name}' {verb}" if changed else f"'{name}' was already {verb}")

    return store.update(mutate)


def set_priority(store: AccountsStore, name: str, priority: int) -> Change:
    """Set the routing priority of `name` (lower first among equally good accounts)."""

    def mutate(doc: AccountsDoc) -> Change:
        account = _named(doc, name)
        changed = account.priority != priority
        account.priority = priority
        return Change(name, changed, f"'{name}' priority {priority}" + ("" if changed else " (unchanged)"))

    return store.update(mutate)


def _named(doc: AccountsDoc, name: str) -> Account:
    account = doc.get(name)
    if account is None:
        raise UnknownAccount(name)
    return account
