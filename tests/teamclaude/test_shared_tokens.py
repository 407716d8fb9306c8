"""Shared OAuth credentials (teamclaude.shared.tokens, CredentialManager in shared mode)
against a real redis-server and the fake token endpoint: each "proxy" is a CredentialManager
with its own accounts file, all on one Redis."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from teamclaude import credentials, oauth
from teamclaude.accounts_store import Account, AccountsDoc, AccountsStore
from teamclaude.credentials import CredentialManager, RefreshFailed
from teamclaude.fakeupstream import FakeUpstream, TokenCall
from teamclaude.settings import Settings
from teamclaude.shared import names, tokens
from teamclaude.shared.tokens import Lease, SharedTokens
from tests.redis_server import RedisServer

from .conftest import ALICE_ACCESS, ALICE_REFRESH, with_settings

KEY = "id:alice-uuid"
REFRESH = TokenCall("refresh_token", "alice", 200)


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oauth, "RETRY_DELAYS_S", (0.0, 0.0))


def ms(seconds_from_now: float) -> int:
    return int((time.time() + seconds_from_now) * 1000)


def proxy(tmp_path: Path, settings: Settings, redis_server: RedisServer, label: str, *,
          expires_in_s: float = -60, obtained_s_ago: float = 8 * 3600) -> CredentialManager:
    """One proxy of the pool: its own accounts file with alice's starting pair (received
    `obtained_s_ago`)."""
    mine = with_settings(settings, accounts_file=tmp_path / label / "accounts.yaml",
                         shared_state=redis_server.url)
    store = AccountsStore(mine.accounts_file)

    def seed(doc: AccountsDoc) -> None:
        doc.accounts = [Account(name="alice", type="oauth", id="alice-uuid", access_token=ALICE_ACCESS,
                                refresh_token=ALICE_REFRESH, expires_at=ms(expires_in_s),
                                obtained_at=ms(-obtained_s_ago))]

    store.update(seed)
    manager = CredentialManager(store, mine, instance_id=label)
    manager.reload(store.read())
    return manager


def on_disk(manager: CredentialManager) -> Account:
    account = manager.store.read().get("alice")
    assert account is not None
    return account


# ---- the Redis primitives ----


def test_the_lease_is_exclusive_and_only_its_owner_releases_it(redis_server: RedisServer) -> None:
    one, two = SharedTokens(redis_server.url, "one"), SharedTokens(redis_server.url, "two")
    lease = one.take_lease(KEY)
    assert lease is not None and lease.owner.startswith("one/")
    assert two.take_lease(KEY) is None
    assert one.take_lease(KEY) is None  # another attempt of the same proxy waits too
    two.release(Lease(lease.key, "two/stale-attempt"))  # compare-and-delete: not its lease
    assert two.holder(KEY) == lease.owner
    ttl = redis_server.client().pttl(names.refresh_lease(KEY))
    assert 0 < ttl <= tokens.LEASE_MS
    one.release(lease)
    assert two.holder(KEY) is None
    assert two.take_lease(KEY) is not None


def test_the_pair_is_written_only_over_the_rotation_read(redis_server: RedisServer) -> None:
    shared = SharedTokens(redis_server.url, "one")
    pair = {"access_token": "at-1", "refresh_token": "rt-1", "expires_at": 5, "obtained_at": 10}
    assert shared.write(KEY, expected=0, rotation=1, **pair) == 1
    # A writer that read "no pair" (or an older rotation) is refused: nothing changes.
    assert shared.write(KEY, expected=0, rotation=1, **{**pair, "access_token": "at-old"}) is None
    assert shared.write(KEY, expected=1, rotation=2, **{**pair, "access_token": "at-2"}) == 2
    assert shared.write(KEY, expected=1, rotation=2, **{**pair, "access_token": "at-stale"}) is None
    stored = shared.read(KEY)
    assert stored is not None
    assert (stored.rotation, stored.access_token, stored.by) == (2, "at-2", "one")
    assert "at-2" not in repr(stored)
    assert shared.rotations([KEY, "id:nobody"]) == {KEY: 2, "id:nobody": None}
    assert 0 < redis_server.client().ttl(names.token(KEY)) <= tokens.PAIR_TTL_S



@pytest.mark.parametrize("junk", [{"rotation": "abc"}, {"rotation": "1.5"}, {"rotation": " 3"},
                                  {"rotation": "3", "access_token": ""}, {"rotation": "3", "obtained_at": "soon"},
                                  {"rotation": "3", "expires_at": "never"}])
def test_a_malformed_pair_is_no_pair_to_its_reader_and_to_the_write(redis_server: RedisServer, junk: dict) -> None:
    shared = SharedTokens(redis_server.url, "one")
    good = {"rotation": "3", "access_token": "at-x", "obtained_at": "10", "expires_at": ""}
    redis_server.client().hset(names.token(KEY), mapping={**good, **junk})
    assert shared.read(KEY) is None
    pair = {"access_token": "at-1", "refresh_token": "rt-1", "expires_at": 5, "obtained_at": 10}
    assert shared.write(KEY, expected=0, rotation=1, **pair) == 1
    stored = shared.read(KEY)
    assert stored is not None and (stored.rotation, stored.access_token) == (1, "at-1")


# ---- refreshing as a pool ----


async def test_two_proxies_refreshing_at_once_make_one_token_call(
        tmp_path: Path, fake: FakeUpstream, settings: Settings, redis_server: RedisServer) -> None:
    first, second = (proxy(tmp_path, settings, redis_server, label) for label in ("first", "second"))
    fake.inject("alice", "token_delay", seconds=0.5)  # both are inside the refresh together
    events = redis_server.client().pubsub()
    events.subscribe(names.EVENTS)
    one, two = await asyncio.gather(first.fresh("alice"), second.fresh("alice"))

    assert fake.token_calls == [REFRESH]
    rotated = fake.account("alice")
    assert one.access_token == two.access_token == rotated.access_token != ALICE_ACCESS
    for manager in (first, second):  # the waiter adopted the winner's pair, into its own file
        assert (on_disk(manager).access_token, on_disk(manager).refresh_token) == (
            rotated.access_token, rotated.refresh_token)
    winner = next(m for m in (first, second) if m.shared_status["alice"]["by"] == m.instance_id)
    assert first.account_state("alice")["token_shared"] == {"rotation": 1, "by": winner.instance_id}
    assert second.account_state("alice")["token_shared"] == {"rotation": 1, "by": winner.instance_id}
    stored = SharedTokens(redis_server.url, "reader").read(KEY)
    assert stored is not None and stored.refresh_token == rotated.refresh_token
    assert redis_server.client().exists(names.refresh_lease(KEY)) == 0  # released
    message = _next_message(events)
    assert message == {"type": "token", "account": KEY, "rotation": 1, "by": winner.instance_id}


def _next_message(pubsub) -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None and message["type"] == "message":
            return json.loads(message["data"])
    raise AssertionError("no event published")


async def test_a_proxy_that_was_away_adopts_the_pool_pair_instead_of_its_dead_one(
        tmp_path: Path, fake: FakeUpstream, settings: Settings, redis_server: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "FORCE_MIN_INTERVAL_S", 0.0)
    first = proxy(tmp_path, settings, redis_server, "first")
    rotated = await first.fresh("alice")
    later = proxy(tmp_path, settings, redis_server, "later")  # still holds the starting pair
    assert (await later.fresh("alice")).access_token == rotated.access_token
    assert fake.token_calls == [REFRESH]
    assert on_disk(later).refresh_token == rotated.refresh_token
    # Another round: the second proxy's turn to refresh; the first adopts from its event.
    fake.expire_access_token("alice")
    again = await later.fresh("alice", force=True)
    assert again.access_token != rotated.access_token and len(fake.token_calls) == 2
    assert await first.adopt_shared(KEY) is True
    assert first.get("alice").access_token == again.access_token
    assert on_disk(first).refresh_token == fake.account("alice").refresh_token
    assert first.shared_status["alice"] == {"rotation": 2, "by": "later"}
    assert await first.adopt_shared(KEY) is False  # nothing newer


async def test_a_refused_refresh_token_makes_a_proxy_take_the_pool_pair(
        tmp_path: Path, fake: FakeUpstream, settings: Settings, redis_server: RedisServer) -> None:
    first = proxy(tmp_path, settings, redis_server, "first")
    rotated = await first.fresh("alice")
    # Its copy of the starting pair claims to be newer than the pool's (a clock ahead, a
    # file rewritten): it tries it, is refused, and takes the pool's pair rather than a login.
    ahead = proxy(tmp_path, settings, redis_server, "ahead", obtained_s_ago=-60)
    assert (await ahead.fresh("alice")).access_token == rotated.access_token
    assert fake.token_calls == [REFRESH, TokenCall("refresh_token", None, 400)]
    assert "alice" not in ahead.needs_login
    assert on_disk(ahead).refresh_token == rotated.refresh_token


async def test_after_a_401_a_newer_pool_pair_is_adopted_without_refreshing(
        tmp_path: Path, fake: FakeUpstream, settings: Settings, redis_server: RedisServer) -> None:
    first = proxy(tmp_path, settings, redis_server, "first")
    second = proxy(tmp_path, settings, redis_server, "second", expires_in_s=3600)
    rotated = await first.fresh("alice")
    # The second proxy still serves its valid old token; upstream refuses it: it takes the pool's.
    assert (await second.fresh("alice", force=True)).access_token == rotated.access_token
    assert fake.token_calls == [REFRESH]


async def test_a_401_for_the_token_sent_before_a_pool_pair_was_taken_spends_no_refresh(
        tmp_path: Path, fake: FakeUpstream, settings: Settings, redis_server: RedisServer) -> None:
    first = proxy(tmp_path, settings, redis_server, "first")
    second = proxy(tmp_path, settings, redis_server, "second", expires_in_s=3600)
    sent = second.get("alice")  # a request leaves with the old token
    rotated = await first.fresh("alice")
    assert await second.adopt_shared(KEY)  # the first proxy's token event arrives meanwhile
    # Upstream refuses the old token: the pool's pair, taken a moment ago, is the answer; a
    # refresh now would spend its single-use refresh token and rotate the pair under the pool.
    assert (await second.fresh("alice", force=True)).access_token == rotated.access_token != sent.access_token
    assert fake.token_calls == [REFRESH]


async def test_the_lease_of_a_dead_holder_is_taken_over_when_it_lapses(
        tmp_path: Path, fake: FakeUpstream, settings: Settings, redis_server: RedisServer) -> None:
    manager = proxy(tmp_path, settings, redis_server, "survivor")
    redis_server.client().set(names.refresh_lease(KEY), "dead-proxy/attempt", px=400)
    account = await manager.fresh("alice")
    assert account.access_token == fake.account("alice").access_token
    assert fake.token_calls == [REFRESH]
    assert manager.shared_status["alice"] == {"rotation": 1, "by": "survivor"}


async def test_the_lease_is_renewed_while_a_slow_token_call_runs(
        tmp_path: Path, fake: FakeUpstream, settings: Settings, redis_server: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "LEASE_MS", 300)
    monkeypatch.setattr(tokens, "RENEW_EVERY_S", 0.1)
    first, second = (proxy(tmp_path, settings, redis_server, label) for label in ("first", "second"))
    fake.inject("alice", "token_delay", seconds=1.2)  # four lease lifetimes
    slow = asyncio.ensure_future(first.fresh("alice"))
    await asyncio.to_thread(_token_call_arrives, fake)
    one, two = await asyncio.gather(slow, second.fresh("alice"))
    assert one.access_token == two.access_token == fake.account("alice").access_token
    assert fake.token_calls == [REFRESH]


async def test_a_holder_that_outlasts_the_wait_leaves_the_current_token_in_use(
        tmp_path: Path, fake: FakeUpstream, settings: Settings, redis_server: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "LEASE_MS", 300)
    monkeypatch.setattr(tokens, "WAIT_MARGIN_S", 0.0)
    manager = proxy(tmp_path, settings, redis_server, "waiter", expires_in_s=60)  # valid, inside the skew
    redis_server.client().set(names.refresh_lease(KEY), "slow-proxy/attempt", px=60_000)
    assert (await manager.fresh("alice")).access_token == ALICE_ACCESS
    assert "another proxy of the pool is refreshing it" in manager.refresh_errors["alice"]
    assert fake.token_calls == []


async def test_without_redis_nothing_is_refreshed_the_token_serves_until_it_expires(
        tmp_path: Path, fake: FakeUpstream, settings: Settings, redis_server: RedisServer) -> None:
    valid = proxy(tmp_path, settings, redis_server, "valid", expires_in_s=60)  # inside the 300 s skew
    expired = proxy(tmp_path, settings, redis_server, "expired")
    redis_server.kill()
    assert (await valid.fresh("alice")).access_token == ALICE_ACCESS
    with pytest.raises(RefreshFailed, match="no new one could be had"):
        await expired.fresh("alice")
    assert fake.token_calls == []
    assert "alice" not in valid.needs_login | expired.needs_login
    error = expired.refresh_errors["alice"]
    assert f"127.0.0.1:{redis_server.port}" in error and "not refreshed without the pool's lease" in error
    await expired.check_shared()
    assert "shared state redis://127.0.0.1" in expired.account_state("alice")["token_shared"]["error"]
    # Redis back (empty): the pool re-seeds it from a proxy's pair, one refresh.
    redis_server.restart()
    assert (await expired.fresh("alice")).access_token == fake.account("alice").access_token
    assert fake.token_calls == [REFRESH]
    assert expired.account_state("alice")["token_shared"] == {"rotation": 1, "by": "expired"}


async def test_a_pair_received_as_redis_died_is_kept_and_pushed_when_it_returns(
        tmp_path: Path, fake: FakeUpstream, settings: Settings, redis_server: RedisServer) -> None:
    manager = proxy(tmp_path, settings, redis_server, "lone")
    fake.inject("alice", "token_delay", seconds=1.0)
    refresh = asyncio.ensure_future(manager.fresh("alice"))
    await asyncio.to_thread(_token_call_arrives, fake)
    redis_server.kill()  # the lease is held and the token call in flight
    account = await refresh
    rotated = fake.account("alice")
    assert account.access_token == rotated.access_token
    assert on_disk(manager).refresh_token == rotated.refresh_token  # saved here all the same
    assert "pushed when it answers" in manager.account_state("alice")["token_shared"]["error"]

    redis_server.restart()  # empty
    await manager.check_shared()
    stored = SharedTokens(redis_server.url, "reader").read(KEY)
    assert stored is not None
    assert (stored.access_token, stored.refresh_token, stored.by) == (
        rotated.access_token, rotated.refresh_token, "lone")
    assert manager.account_state("alice")["token_shared"] == {"rotation": 1, "by": "lone"}
    assert fake.token_calls == [REFRESH]


@pytest.mark.parametrize("theirs_newer", [False, True])
async def test_a_pair_written_by_another_proxy_during_our_refresh_is_settled_by_age(
        tmp_path: Path, fake: FakeUpstream, settings: Settings, redis_server: RedisServer,
        theirs_newer: bool) -> None:
    manager = proxy(tmp_path, settings, redis_server, "stalled")
    fake.inject("alice", "token_delay", seconds=0.5)
    refresh = asyncio.ensure_future(manager.fresh("alice"))
    await asyncio.to_thread(_token_call_arrives, fake)
    # Our lease "lapsed" (a stalled machine) and another proxy wrote rotation 1 meanwhile.
    SharedTokens(redis_server.url, "other").write(
        KEY, expected=0, rotation=1, access_token="sk-ant-oat01-theirs", refresh_token="sk-ant-ort01-theirs",
        expires_at=ms(3600), obtained_at=ms(60 if theirs_newer else -60))
    account = await refresh
    stored = SharedTokens(redis_server.url, "reader").read(KEY)
    assert stored is not None
    ours = fake.account("alice").access_token
    winner = "sk-ant-oat01-theirs" if theirs_newer else ours
    assert (account.access_token, on_disk(manager).access_token, stored.access_token) == (winner, winner, winner)
    assert stored.rotation == (1 if theirs_newer else 2)


def _token_call_arrives(fake: FakeUpstream) -> None:
    deadline = time.monotonic() + 10
    while not any(r.path == "/v1/oauth/token" for r in fake.requests):
        assert time.monotonic() < deadline, "no token call arrived"
        time.sleep(0.02)


async def test_a_newer_pool_pair_clears_needs_login(
        tmp_path: Path, fake: FakeUpstream, settings: Settings, redis_server: RedisServer) -> None:
    first = proxy(tmp_path, settings, redis_server, "first")
    stale = proxy(tmp_path, settings, redis_server, "stale", expires_in_s=3600)
    await first.fresh("alice")
    stale.needs_login.add("alice")  # e.g. refused while Redis was restarted empty
    await stale.check_shared()
    assert "alice" not in stale.needs_login
    assert stale.get("alice").access_token == fake.account("alice").access_token
    assert fake.token_calls == [REFRESH]
