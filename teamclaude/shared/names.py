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


def bench(account: str, family: str | None) -> str:
    """String (JSON until/reason): a bench of an account or one model family; PX to its end."""
    return f"{PREFIX}bench:{account}:{family or '*'}"


BENCH_PATTERN = PREFIX + "bench:*"


def window(account: str) -> str:
    """String (JSON): the newest rate-limit headers any proxy saw for an account."""
    return f"{PREFIX}window:{account}"


WINDOW_PATTERN = PREFIX + "window:*"


def binding(conversation_key: str) -> str:
    """String "ACCOUNT\\tLAST_USED": which account serves a conversation."""
    return f"{PREFIX}bind:{conversation_key}"


def inflight(account: str) -> str:
    """Sorted set: in-flight leases on an account, member INSTANCE:TICKET, score its expiry."""
    return f"{PREFIX}inflight:{account}"


def usage(kind: str, name: str) -> str:
    """Hash: requests, tokens, cost_micro_usd of an account (kind "account") or a client."""
    return f"{PREFIX}usage:{kind}:{name}"


INSTANCES = PREFIX + "instances"  # sorted set: instance id, score last heartbeat


def instance(instance_id: str) -> str:
    """String (JSON): what one proxy last reported about itself."""
    return f"{PREFIX}instance:{instance_id}"


# Hash: client name -> its record (JSON, the key's hash only), as `teamclaude keys` writes it.
CLIENTS = PREFIX + "clients"
