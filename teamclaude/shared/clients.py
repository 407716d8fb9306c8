"""Client keys shared by a pool's proxies (`teamclaude keys` with `shared_state` set).

`teamclaude keys add|remove` writes the record (name, the key's SHA-256, limit — never the
key) into one Redis hash as well as the local accounts file, so every proxy of the pool
accepts the key; proxies read the hash when they connect, when it changes (an event) and
every half minute. Records are configuration, not state: the hash's TTL (400 days) is
renewed by every write and by the proxies while they run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.exceptions import RedisError

from teamclaude.client_keys import BadClientKey, ClientKey, parse_record
from teamclaude.shared import names
from teamclaude.shared.connection import display_url, sync_client

CLIENTS_TTL_MS = 400 * 86400 * 1000
CHANGED_EVENT = json.dumps({"type": "clients", "by": "cli"})


class SharedKeysError(Exception):
    """The shared state could not be reached or changed; `str()` says which and why."""


def add(url: str, record: ClientKey) -> None:
    """Share a new client key; refused when the pool has a key of that name already."""
    with _connected(url) as client:
        if not client.hsetnx(names.CLIENTS, record.name, json.dumps(record.to_dict())):
            raise SharedKeysError(f"the pool already has a client key named '{record.name}' "
                                  f"(added on another machine): pick another name, or remove it first")
        client.pexpire(names.CLIENTS, CLIENTS_TTL_MS)
        client.publish(names.EVENTS, CHANGED_EVENT)


def remove(url: str, name: str) -> bool:
    """Unshare a client key: True when the pool had it."""
    with _connected(url) as client:
        removed = bool(client.hdel(names.CLIENTS, name))
        client.publish(names.EVENTS, CHANGED_EVENT)
        return removed


def read(url: str) -> list[ClientKey]:
    with _connected(url) as client:
        return parse_all(client.hgetall(names.CLIENTS))


def parse_all(raw: dict[Any, Any]) -> list[ClientKey]:
    """The records of the hash; one that does not parse is skipped (never trusted)."""
    records = []
    for value in raw.values():
        try:
            data = json.loads(value)
            if isinstance(data, dict):
                records.append(parse_record(data))
        except (ValueError, BadClientKey):
            continue
    return sorted(records, key=lambda r: r.name)


@contextmanager
def _connected(url: str) -> Iterator[redis.Redis]:
    """A short-lived client whose failures become one `SharedKeysError` line."""
    client = sync_client(url)
    try:
        yield client
    except (RedisError, OSError) as exc:
        raise SharedKeysError(f"cannot reach the shared state {display_url(url)} ({exc.__class__.__name__})") from None
    finally:
        client.close()
