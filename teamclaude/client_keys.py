"""Per-client keys (`teamclaude keys`, behaviour §3.2): one key per person or machine. Pure.

A client key is random (`tck-` + 32 URL-safe characters, 192 bits) and only its SHA-256 is
stored. A presented key is hashed and looked up by that hash: the lookup's timing depends on
the hash alone, which tells nothing about any stored key, so no constant-time comparison is
needed there (the proxy key, stored as itself, is compared with `hmac.compare_digest`).

Records come from the accounts file's `client_keys:` list today; `Keyring` takes records
from any number of sources (the file first), so a shared store can add its own later.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CLIENT_KEY_PREFIX = "tck-"
NAME_MAX = 64
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
FIELDS = ("name", "sha256", "created_at", "max_concurrent")


class BadClientKey(ValueError):
    """A bad name or record. `field` names the record's field at fault (None: the record)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, repr=False)
class ClientKey:
    """One client key as stored: its name, the SHA-256 of the key, when it was made (epoch
    ms) and its optional limit of requests in flight. `extra`: fields this version does not
    know, carried through unchanged."""

    name: str
    sha256: str
    created_at: int
    max_concurrent: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "sha256": self.sha256, "created_at": self.created_at}
        if self.max_concurrent is not None:
            out["max_concurrent"] = self.max_concurrent
        out.update(self.extra)
        return out

    def __repr__(self) -> str:
        return f"ClientKey(name={self.name!r}, created_at={self.created_at}, max_concurrent={self.max_concurrent})"


def check_name(name: Any) -> str:
    """`name` when it is a valid client name: letters, digits, `-`, `_`, `.`, at most 64."""
    if not isinstance(name, str) or not name:
        raise BadClientKey("a client key needs a 'name' (letters, digits, '-', '_', '.')", "name")
    if len(name) > NAME_MAX or not _NAME.fullmatch(name):
        shown = name if len(name) <= 40 and name.isprintable() else repr(name[:37]) + "..."
        raise BadClientKey(
            f"client name '{shown}' is not allowed: use letters, digits, '-', '_' and '.', at most {NAME_MAX} characters",
            "name",
        )
    return name


def check_max_concurrent(value: Any) -> int | None:
    """A limit of requests in flight: a positive integer, or None for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadClientKey(f"'max_concurrent' must be a positive integer, got {_show(value)}", "max_concurrent")
    return value


def key_hash(key: str) -> str:
    """The stored form of a key: its SHA-256, lowercase hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_key() -> str:
    return CLIENT_KEY_PREFIX + secrets.token_urlsafe(24)  # 24 bytes -> 32 characters


def create(name: str, max_concurrent: int | None, now_ms: int) -> tuple[str, ClientKey]:
    """A new key for `name` and the record that stores it (without the key itself)."""
    key = new_key()
    return key, ClientKey(check_name(name), key_hash(key), now_ms, check_max_concurrent(max_concurrent))


def parse_record(values: Mapping[str, Any]) -> ClientKey:
    """A record read from a file or another store; `BadClientKey` names the field at fault."""
    name = check_name(values.get("name"))
    digest = values.get("sha256")
    if not isinstance(digest, str) or not _HEX_SHA256.fullmatch(digest):
        raise BadClientKey(f"client key '{name}': 'sha256' must be 64 lowercase hex digits "
                           "(the key's hash, as 'teamclaude keys add' writes it)", "sha256")
    created = values.get("created_at")
    if isinstance(created, bool) or not isinstance(created, int) or not 0 <= created < 2**63:
        raise BadClientKey(f"client key '{name}': 'created_at' must be epoch milliseconds, got {_show(created)}",
                           "created_at")
    try:
        limit = check_max_concurrent(values.get("max_concurrent"))
    except BadClientKey as exc:
        raise BadClientKey(f"client key '{name}': {exc}", exc.field) from None
    extra = {key: value for key, value in values.items() if key not in FIELDS}
    return ClientKey(name, digest, created, limit, extra)


@dataclass(frozen=True)
class Holder:
    """Who presented an accepted key: `client` None is the proxy key."""

    client: ClientKey | None

    @property
    def name(self) -> str | None:
        return self.client.name if self.client is not None else None


PROXY_HOLDER = Holder(None)


class Keyring:
    """The keys the proxy accepts now: the proxy key and the client keys of `records`
    (merged in order: the first record with a name wins)."""

    def __init__(self, proxy_key: str, records: Iterable[ClientKey] = ()) -> None:
        self._proxy_key = proxy_key.encode("utf-8", "surrogateescape")
        self._by_name: dict[str, ClientKey] = {}
        for record in records:
            self._by_name.setdefault(record.name, record)
        self._by_hash = {record.sha256: Holder(record) for record in self._by_name.values()}

    @property
    def clients(self) -> list[ClientKey]:
        return list(self._by_name.values())

    def holder(self, key: str) -> Holder | None:
        """Who `key` belongs to, or None when it is no accepted key."""
        if not key:
            return None
        raw = key.encode("utf-8", "surrogateescape")
        if self._proxy_key and hmac.compare_digest(raw, self._proxy_key):
            return PROXY_HOLDER
        if not self._by_hash:
            return None
        return self._by_hash.get(hashlib.sha256(raw).hexdigest())


def _show(value: Any) -> str:
    text = f"'{value}'" if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
