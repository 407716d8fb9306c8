"""Shared OAuth credentials in Redis (behaviour §7.3, "Several proxies"): the newest pair of
each account, a lease that lets one proxy of the pool refresh it at a time, and the event
that announces a new pair.

A refresh token is single use: when two proxies refresh the same account, the second one
revokes the pair the first just received, and the account is logged out everywhere. So a
proxy refreshes only while it holds the account's lease (`SET NX PX`, released by a
compare-and-delete, renewed while the token call runs), reads the pair from Redis inside the
lease, and writes the new pair with a compare-and-set on the rotation counter: a pair is
never replaced by an older one. Blocking calls with short timeouts: the proxy runs them in
worker threads (the refresh already runs in one). `CredentialManager` decides what to do
with what it reads here; nothing in this module touches files.

Every error is one `SharedUnavailable` line naming the Redis URL with its password masked;
no token is ever put into an error, a log line, an event or a repr.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from teamclaude.shared import names
from teamclaude.shared.connection import display_url, sync_client

logger = logging.getLogger(__name__)

# The lease outlives a token call by being renewed while it runs (oauth.py retries: up to
# 3 x 30 s + 2.5 s); a holder that dies stops renewing and its lease is gone within LEASE_MS.
LEASE_MS = 15_000
RENEW_EVERY_S = 5.0
# How long a proxy waits for another one's refresh before serving without it.
WAIT_MARGIN_S = 5.0
POLL_S = 0.05
# The pair hash lives this long after its last write: an account nobody used for a month
# starts again from the proxies' own files (first use seeds Redis).
PAIR_TTL_S = 30 * 86400

_ROTATION = re.compile(r"[1-9][0-9]*")
_INTEGER = re.compile(r"-?[0-9]+")
_FIELDS = ("rotation", "access_token", "refresh_token", "expires_at", "obtained_at", "by")

# Write the pair only if the rotation is still the one the writer read (0: no pair yet, or
# one `parse_pair` refuses: the same checks, so a malformed hash is overwritten, not fought).
_CAS = """
local f = redis.call('HMGET', KEYS[1], 'rotation', 'access_token', 'obtained_at', 'expires_at')
local current = 0
if f[1] and string.match(f[1], '^[1-9]%d*$') and f[2] and f[2] ~= '' and f[3] and string.match(f[3], '^%-?%d+$')
   and (not f[4] or f[4] == '' or string.match(f[4], '^%-?%d+$')) then
  current = tonumber(f[1])
end
if current ~= tonumber(ARGV[1]) then return {0, current} end
redis.call('HSET', KEYS[1], 'rotation', ARGV[2], 'access_token', ARGV[3], 'refresh_token', ARGV[4],
           'expires_at', ARGV[5], 'obtained_at', ARGV[6], 'by', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return {1, tonumber(ARGV[2])}
"""
# Delete / extend the lease only while it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class SharedUnavailable(Exception):
    """Redis did not answer (or refused us). One line naming the URL, password masked."""


@dataclass(frozen=True, repr=False)
class SharedPair:
    """The pair Redis holds for an account, and which rotation of it this is."""

    rotation: int
    access_token: str
    refresh_token: str | None
    expires_at: int | None  # epoch milliseconds
    obtained_at: int  # epoch milliseconds, as received by `by`
    by: str  # instance id of the proxy that received it

    def __repr__(self) -> str:
        return f"SharedPair(rotation={self.rotation}, obtained_at={self.obtained_at}, by={self.by!r})"

    def status(self) -> dict[str, Any]:
        """What the state file shows (never a token)."""
        return {"rotation": self.rotation, "by": self.by}


@dataclass(frozen=True)
class Lease:
    key: str  # the Redis key of the lease
    owner: str  # "<instance id>/<random>": which proxy, and which attempt of it


def parse_pair(raw: dict[bytes, bytes]) -> SharedPair | None:
    """A pair from HGETALL; None when absent or malformed (then it is overwritten by the next
    refresh, never used)."""
    fields = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
    rotation, obtained, expires = fields.get("rotation", ""), fields.get("obtained_at", ""), fields.get("expires_at") or ""
    access = fields.get("access_token") or ""
    if not (_ROTATION.fullmatch(rotation) and _INTEGER.fullmatch(obtained) and access
            and (not expires or _INTEGER.fullmatch(expires))):
        return None  # the checks of _CAS, which then takes this hash for "no pair"
    rotation_n, obtained_at, expires_at = int(rotation), int(obtained), int(expires) if expires else None
    return SharedPair(rotation_n, access, fields.get("refresh_token") or None, expires_at, obtained_at,
                      fields.get("by", ""))


class SharedTokens:
    """The pool's OAuth pairs in Redis, for one proxy (`instance_id`)."""

    def __init__(self, url: str, instance_id: str, client: redis.Redis | None = None) -> None:
        self.url = url
        self.instance_id = instance_id
        self._client = client if client is not None else sync_client(url)
        self._cas = self._client.register_script(_CAS)
        self._release = self._client.register_script(_RELEASE)
        self._renew = self._client.register_script(_RENEW)

    @property
    def where(self) -> str:
        return display_url(self.url)

    def close(self) -> None:
        self._client.close()

    @contextmanager
    def _talking(self, doing: str) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise SharedUnavailable(f"shared state {self.where}: {doing} failed ({type(exc).__name__})") from None

    # ---- the pair ----

    def read(self, account_key: str) -> SharedPair | None:
        with self._talking("reading a token pair"):
            raw = self._client.hgetall(names.token(account_key))
        return parse_pair(raw)  # type: ignore[arg-type]

    def rotations(self, account_keys: Iterable[str]) -> dict[str, int | None]:
        """The rotation of each account's pair (None: no pair), in one round trip."""
        keys = list(account_keys)
        with self._talking("reading rotations"):
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.hget(names.token(key), "rotation")
            answers = pipe.execute()
        return {key: _int_or_none(answer) for key, answer in zip(keys, answers, strict=True)}

    def write(self, account_key: str, *, expected: int, rotation: int, access_token: str,
              refresh_token: str | None, expires_at: int | None, obtained_at: int) -> int | None:
        """Store a pair as `rotation` if the hash is still at `expected` (0: none). Returns
        `rotation`, or None when someone wrote another rotation meanwhile (nothing changed)."""
        args: list[str | int] = [expected, rotation, access_token, refresh_token or "",
                "" if expires_at is None else expires_at, obtained_at, self.instance_id, PAIR_TTL_S * 1000]
        with self._talking("writing a token pair"):
            answer = self._cas(keys=[names.token(account_key)], args=args)
        return rotation if answer[0] else None

    def announce(self, account_key: str, rotation: int) -> None:
        """Tell the other proxies a new pair is in Redis (no token in the event)."""
        event = {"type": "token", "account": account_key, "rotation": rotation, "by": self.instance_id}
        with self._talking("publishing a token event"):
            self._client.publish(names.EVENTS, json.dumps(event, separators=(",", ":")))

    # ---- the refresh lease ----

    def take_lease(self, account_key: str) -> Lease | None:
        """The account's refresh lease, or None when another proxy (or attempt) holds it."""
        lease = Lease(names.refresh_lease(account_key), f"{self.instance_id}/{secrets.token_hex(8)}")
        with self._talking("taking the refresh lease"):
            taken = self._client.set(lease.key, lease.owner, nx=True, px=LEASE_MS)
        return lease if taken else None

    def release(self, lease: Lease) -> None:
        """Give the lease back if it is still ours; a Redis that is gone lets it expire."""
        try:
            self._release(keys=[lease.key], args=[lease.owner])
        except redis.RedisError as exc:
            logger.warning("teamclaude: shared state %s: cannot release a refresh lease (%s); it expires "
                           "within %d s", self.where, type(exc).__name__, LEASE_MS // 1000)

    def holder(self, account_key: str) -> str | None:
        """Who holds the account's lease ("<instance id>/<attempt>"), None when nobody."""
        with self._talking("reading the refresh lease"):
            owner = self._client.get(names.refresh_lease(account_key))
        return owner.decode(errors="replace") if isinstance(owner, bytes) else None

    @contextmanager
    def renewing(self, lease: Lease) -> Iterator[None]:
        """Keep `lease` alive while the block runs (a token call may take its retries)."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(RENEW_EVERY_S):
                try:
                    if not self._renew(keys=[lease.key], args=[lease.owner, LEASE_MS]):
                        return  # expired and maybe taken: the rotation check guards the write
                except redis.RedisError:
                    continue  # Redis away: the lease may lapse; the write's CAS still guards

        thread = threading.Thread(target=renew, name="teamclaude-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def wait_for_holder(self, account_key: str, rotation: int | None, deadline: float) -> str:
        """While another proxy holds the lease: poll until the pair's rotation moves past
        `rotation` ("rotated"), the lease is gone without a new pair ("free": its holder
        gave up or died), or `deadline` (time.monotonic) passes ("timeout")."""
        token_key, lease_key = names.token(account_key), names.refresh_lease(account_key)
        while True:
            with self._talking("waiting for another proxy's refresh"):
                pipe = self._client.pipeline(transaction=False)
                pipe.hget(token_key, "rotation")
                pipe.exists(lease_key)
                current, held = pipe.execute()
            now_rotation = _int_or_none(current)
            if now_rotation is not None and now_rotation != rotation:
                return "rotated"
            if not held:
                return "free"
            if time.monotonic() >= deadline:
                return "timeout"
            time.sleep(POLL_S)


def wait_limit_s() -> float:
    """How long a proxy waits for another one's refresh: a dead holder's lease lapses first."""
    return LEASE_MS / 1000 + WAIT_MARGIN_S


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
