"""Account UUIDs: recorded ones are used, missing ones are looked up once and written down."""

from __future__ import annotations

import asyncio

import pytest

from teamclaude.account_uuids import RETRY_AFTER_S, AccountUuids
from teamclaude.accounts_store import Account, AccountsDoc, AccountsStore
from teamclaude.fakeupstream import FakeUpstream
from teamclaude.settings import Settings

from .conftest import ALICE_ACCESS, ALICE_REFRESH

KNOWN = "11111111-2222-4333-8444-555555555555"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def seeded(settings: Settings, **alice: object) -> AccountsStore:
    store = AccountsStore(settings.accounts_file)

    def seed(doc: AccountsDoc) -> None:
        doc.accounts = [Account(name="alice", type="oauth", access_token=ALICE_ACCESS, refresh_token=ALICE_REFRESH,
                                **alice),  # type: ignore[arg-type]
                        Account(name="bob", type="apikey", api_key="sk-ant-api03-bob-key")]

    store.update(seed)
    return store


def profile_calls(fake: FakeUpstream) -> int:
    return len([r for r in fake.requests if r.path == "/api/oauth/profile"])


async def test_a_recorded_uuid_is_used_without_a_call(fake: FakeUpstream, settings: Settings) -> None:
    store = seeded(settings, id=KNOWN)
    uuids = AccountUuids(store, settings)
    assert await uuids.uuid(store.read().get("alice")) == (KNOWN, None)
    assert profile_calls(fake) == 0


async def test_a_missing_uuid_is_looked_up_once_and_written_down(fake: FakeUpstream, settings: Settings) -> None:
    store = seeded(settings)
    uuids = AccountUuids(store, settings)
    alice = store.read().get("alice")
    answers = await asyncio.gather(*(uuids.uuid(alice) for _ in range(5)))
    expected = fake.account("alice").uuid
    assert answers == [(expected, None)] * 5
    assert await uuids.uuid(alice) == (expected, None)
    assert profile_calls(fake) == 1
    on_disk = store.read().get("alice")
    assert (on_disk.id, on_disk.email, on_disk.plan) == (expected, "alice@example.com", "max")
    assert on_disk.refresh_token == ALICE_REFRESH


async def test_a_failed_lookup_is_retried_only_later(fake: FakeUpstream, settings: Settings) -> None:
    store = seeded(settings)
    clock = Clock()
    uuids = AccountUuids(store, settings, clock=clock)
    wrong = Account(name="alice", type="oauth", access_token="sk-ant-oat01-wrong")
    uuid, why = await uuids.uuid(wrong)
    assert uuid is None and "HTTP 401" in why and "sk-ant" not in why
    assert (await uuids.uuid(wrong))[0] is None
    assert profile_calls(fake) == 1
    clock.now += RETRY_AFTER_S
    assert await uuids.uuid(store.read().get("alice")) == (fake.account("alice").uuid, None)
    assert profile_calls(fake) == 2


async def test_no_lookup_for_api_keys_bad_ids_or_no_token(fake: FakeUpstream, settings: Settings) -> None:
    uuids = AccountUuids(seeded(settings), settings)
    for account, reason in (
        (Account(name="bob", type="apikey", api_key="k"), "API-key account"),
        (Account(name="carol", type="oauth", id="not-a-uuid", access_token="t"), "not a UUID"),
        (Account(name="dave", type="oauth", refresh_token="r"), "no access token"),
    ):
        uuid, why = await uuids.uuid(account)
        assert uuid is None and reason in why
    assert profile_calls(fake) == 0


async def test_a_cancelled_caller_does_not_stop_the_lookup(fake: FakeUpstream, settings: Settings) -> None:
    store = seeded(settings)
    uuids = AccountUuids(store, settings)
    alice = store.read().get("alice")
    first = asyncio.ensure_future(uuids.uuid(alice))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await uuids.uuid(alice) == (fake.account("alice").uuid, None)
    assert profile_calls(fake) == 1
