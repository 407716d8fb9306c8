"""Redis key names of the shared state: one place, so every proxy of a pool agrees.

Accounts are named by their name in the accounts file (every proxy of a pool has the same
accounts file); OAuth credentials by `Account.key` (the account's UUID when known). Every
key is written with a TTL.
"""

from __future__ import annotations

PREFIX = "teamclaude:"
# Pub/sub channel: benches, freed capacity, new token pairs, ... (`teamclaude.shared.events`).
EVENTS = PREFIX + "events"


def token(account_key: str) -> str:
    """Hash: the newest OAuth pair of an account and its rotation counter."""
    return f"{PREFIX}token:{account_key}"


def refresh_lease(account_key: str) -> str:
    """String: the owner token of the proxy refreshing the account now (SET NX PX)."""
    return f"{PREFIX}lease:refresh:{account_key}"
