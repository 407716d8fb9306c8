from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from teamclaude import credentials, oauth
from teamclaude.accounts_store import Account, AccountsDoc, AccountsStore
from teamclaude.credentials import (
    CredentialManager,
    NeedsLogin,
    OAuthError,
    UnknownAccount,
)
from teamclaude.fakeupstream import FakeUpstream
from teamclaude.settings import Settings
from tests.tasks import cancel_and_wait

from .conftest import ALICE_ACCESS, ALICE_REFRESH, with_settings

FORK = multiprocessing.get_context("fork")


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oauth, "RETRY_DELAYS_S", (0.0, 0.0))


def ms(seconds_from_now: float) -> int:
    return int((time.time() + seconds_from_now) * 1000)


def make_store(settings: Settings, *, expires_in_s: float, **fields: object) -> AccountsStore:
    store = AccountsStore(settings.accounts_file)
    alice = Account(name="alice", type="oauth", id="alice-uuid", access_token=ALICE_ACCESS,
                    refresh_token=ALICE_REFRESH, expires_at=ms(expires_in_s), **fields)
    key = Account(name="bob", type="apikey", api_key="sk-ant-api03-bob-key")

    def seed(doc: AccountsDoc) -> None:
        doc.accounts = [alice, key]

    store.update(seed)
    return store


def manager_for(store: AccountsStore, settings: Settings) -> CredentialManager:
    manager = CredentialManager(store, settings)
    manager.reload(store.read())
    return manager


async def test_valid_token_is_returned_without_a_call(fake: FakeUpstream, settings: Settings) -> None:
    manager = manager_for(make_store(settings, expires_in_s=3600), settings)
    account = await manager.fresh("alice")
    assert account.access_token == ALICE_ACCESS
    assert (await manager.fresh("bob")).api_key == "sk-ant-api03-bob-key"
    assert fake.token_calls == []
    with pytest.raises(UnknownAccount):
        await manager.fresh("nobody")


async def test_fifty_concurrent_callers_share_one_refresh(fake: FakeUpstream, settings: Settings) -> None:
    store = make_store(settings, expires_in_s=60)  # within the 300 s skew
    manager = manager_for(store, settings)
    results = await asyncio.gather(*(manager.fresh("alice") for _ in range(50)))
    assert len(fake.token_calls) == 1
    tokens = {a.access_token for a in results}
    assert len(tokens) == 1 and ALICE_ACCESS not in tokens
    on_disk = store.read().get("alice")
    assert on_disk.access_token == results[0].access_token
    assert on_disk.refresh_token == fake.account("alice").refresh_token != ALICE_REFRESH
    assert on_disk.expires_at > ms(3600)
    assert store.read().get("bob").api_key == "sk-ant-api03-bob-key"  # other entries kept
    assert (await manager.fresh("alice")).access_token == results[0].access_token
    assert len(fake.token_calls) == 1


async def test_cancelled_caller_does_not_stop_the_refresh(fake: FakeUpstream, settings: Settings) -> None:
    store = make_store(settings, expires_in_s=60)
    manager = manager_for(store, settings)
    first = asyncio.create_task(manager.fresh("alice"))
    await asyncio.sleep(0)  # the refresh task has started
    first.cancel()
    second = await manager.fresh("alice")
    assert len(fake.token_calls) == 1
    assert store.read().get("alice").refresh_token == fake.account("alice").refresh_token
    assert second.access_token != ALICE_ACCESS


async def test_invalid_grant_marks_needs_login(fake: FakeUpstream, settings: Settings) -> None:
    oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice")  # used elsewhere
    manager = manager_for(make_store(settings, expires_in_s=60), settings)
    with pytest.raises(NeedsLogin, match="account 'alice' needs a new login") as info:
        await manager.fresh("alice")
    assert "sk-ant" not in str(info.value)
    assert manager.needs_login == {"alice"}
    calls = len(fake.token_calls)
    with pytest.raises(NeedsLogin):
        await manager.fresh("alice")
    assert len(fake.token_calls) == calls


async def test_new_credentials_in_the_file_clear_needs_login(fake: FakeUpstream, settings: Settings) -> None:
    store = make_store(settings, expires_in_s=60)
    manager = manager_for(store, settings)
    manager.needs_login.add("alice")
    manager.reload(store.read())
    assert manager.needs_login == {"alice"}  # same credentials: still needs a login
    fresh_pair = oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice")

    def relogin(doc: AccountsDoc) -> None:
        alice = doc.get("alice")
        alice.access_token, alice.refresh_token = fresh_pair.access_token, fresh_pair.refresh_token
        alice.expires_at = fresh_pair.expires_at

    store.update(relogin)
    manager.reload(store.read())
    assert manager.needs_login == set()
    assert (await manager.fresh("alice")).access_token == fresh_pair.access_token


async def test_pair_rotated_by_another_process_is_adopted(fake: FakeUpstream, settings: Settings) -> None:
    store = make_store(settings, expires_in_s=60)
    manager = manager_for(store, settings)  # holds the stale pair in memory
    theirs = oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice")

    def other_process(doc: AccountsDoc) -> None:
        alice = doc.get("alice")
        alice.access_token, alice.refresh_token = theirs.access_token, theirs.refresh_token
        alice.expires_at = theirs.expires_at

    store.update(other_process)
    account = await manager.fresh("alice")
    assert account.access_token == theirs.access_token
    assert len(fake.token_calls) == 1  # only the other process's refresh
    assert manager.needs_login == set()


async def test_force_refreshes_once_per_ten_seconds(fake: FakeUpstream, settings: Settings) -> None:
    manager = manager_for(make_store(settings, expires_in_s=3600), settings)
    first = await manager.fresh("alice", force=True)
    assert first.access_token != ALICE_ACCESS and len(fake.token_calls) == 1
    again = await manager.fresh("alice", force=True)
    assert again.access_token == first.access_token and len(fake.token_calls) == 1


async def test_missing_refresh_token_in_answer_keeps_the_old_one(fake: FakeUpstream, settings: Settings) -> None:
    fake.omit_refresh_token_in_response = True
    store = make_store(settings, expires_in_s=60)
    account = await manager_for(store, settings).fresh("alice")
    assert account.access_token != ALICE_ACCESS
    assert store.read().get("alice").refresh_token == ALICE_REFRESH


async def test_endpoint_down_keeps_a_still_valid_token(fake: FakeUpstream, settings: Settings) -> None:
    fake.inject("alice", "503", count=3, path="/v1/oauth/token")
    account = await manager_for(make_store(settings, expires_in_s=60), settings).fresh("alice")
    assert account.access_token == ALICE_ACCESS
    assert len(fake.token_calls) == 3


async def test_endpoint_down_with_expired_token_raises(fake: FakeUpstream, settings: Settings) -> None:
    fake.inject("alice", "503", count=3, path="/v1/oauth/token")
    manager = manager_for(make_store(settings, expires_in_s=-10), settings)
    with pytest.raises(OAuthError, match="HTTP 503") as info:
        await manager.fresh("alice")
    assert not isinstance(info.value, NeedsLogin)
    assert manager.needs_login == set()


def write_claude_credentials(path: Path, access: str, refresh: str, expires_at: int) -> None:
    path.write_text(json.dumps({"claudeAiOauth": {
        "accessToken": access, "refreshToken": refresh, "expiresAt": expires_at, "subscriptionType": "max",
    }}))


async def test_imported_account_takes_the_source_tokens_when_refused(
    fake: FakeUpstream, settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / ".credentials.json"
    claude_code = oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice")  # Claude Code rotated
    write_claude_credentials(source, claude_code.access_token, claude_code.refresh_token, ms(8 * 3600))
    store = make_store(settings, expires_in_s=60, source=str(source))
    account = await manager_for(store, settings).fresh("alice")
    assert account.access_token == claude_code.access_token
    assert store.read().get("alice").refresh_token == claude_code.refresh_token
    assert [c.status for c in fake.token_calls] == [200, 400]  # Claude Code's, then our refused one


async def test_imported_account_refreshes_with_an_expiring_source_pair(
    fake: FakeUpstream, settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / ".credentials.json"
    claude_code = oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice")
    write_claude_credentials(source, claude_code.access_token, claude_code.refresh_token, ms(30))
    store = make_store(settings, expires_in_s=60, source=str(source))
    account = await manager_for(store, settings).fresh("alice")
    assert account.access_token not in (ALICE_ACCESS, claude_code.access_token)
    assert store.read().get("alice").refresh_token == fake.account("alice").refresh_token
    assert [c.status for c in fake.token_calls] == [200, 400, 200]


async def test_imported_account_with_unchanged_source_needs_login(
    fake: FakeUpstream, settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / ".credentials.json"
    write_claude_credentials(source, ALICE_ACCESS, ALICE_REFRESH, ms(60))
    oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice")
    manager = manager_for(make_store(settings, expires_in_s=60, source=str(source)), settings)
    with pytest.raises(NeedsLogin):
        await manager.fresh("alice")


async def test_refresh_idle_refreshes_only_due_accounts(fake: FakeUpstream, settings: Settings) -> None:
    store = make_store(settings, expires_in_s=3600)
    manager = manager_for(store, settings)
    assert await manager.refresh_idle() == {}
    assert await manager.refresh_idle(now=time.time() + 3500) == {"alice": None}
    assert len(fake.token_calls) == 1
    assert store.read().get("alice").refresh_token == fake.account("alice").refresh_token


async def test_refresh_idle_reports_failures(fake: FakeUpstream, settings: Settings) -> None:
    oauth.refresh(settings.oauth_token_url, ALICE_REFRESH, account_name="alice")
    manager = manager_for(make_store(settings, expires_in_s=60), settings)
    outcome = await manager.refresh_idle()
    assert list(outcome) == ["alice"] and "needs a new login" in (outcome["alice"] or "")
    assert await manager.refresh_idle() == {}  # needs-login accounts are left alone


async def test_reload_keeps_our_newer_refresh(fake: FakeUpstream, settings: Settings) -> None:
    store = make_store(settings, expires_in_s=60)
    manager = manager_for(store, settings)
    stale_doc = store.read()
    refreshed = await manager.fresh("alice")
    manager.reload(stale_doc)  # a watcher read the file before our write
    assert (await manager.fresh("alice")).access_token == refreshed.access_token
    doc = store.read()
    doc.accounts = [a for a in doc.accounts if a.name != "alice"]
    manager.reload(doc)
    with pytest.raises(UnknownAccount):
        await manager.fresh("alice")


def _refresh_then_die(accounts_file: str, settings: Settings) -> None:
    store = AccountsStore(Path(accounts_file))
    real_update = store.update

    def update_then_die(mutate):  # type: ignore[no-untyped-def]
        result = real_update(mutate)
        os.kill(os.getpid(), signal.SIGKILL)  # persisted, never used
        return result

    store.update = update_then_die  # type: ignore[method-assign]
    manager = CredentialManager(store, settings)
    manager.reload(store.read())
    asyncio.run(manager.fresh("alice"))


def test_killed_right_after_persisting_a_new_process_works(fake: FakeUpstream, settings: Settings) -> None:
    store = make_store(settings, expires_in_s=60)
    child = FORK.Process(target=_refresh_then_die, args=(str(store.path), settings))
    child.start()
    child.join(timeout=30)
    if child.is_alive():  # stuck: killed here so that no child outlives the test
        child.kill()
        child.join(timeout=10)
        raise AssertionError("the refreshing child neither persisted the pair nor died within 30 s")
    assert child.exitcode == -signal.SIGKILL
    on_disk = store.read().get("alice")
    assert on_disk.refresh_token == fake.account("alice").refresh_token != ALICE_REFRESH
    assert oauth.fetch_profile(settings.oauth_profile_url, on_disk.access_token).email == "alice@example.com"

    def expire(doc: AccountsDoc) -> None:
        doc.get("alice").expires_at = ms(10)

    store.update(expire)
    account = asyncio.run(manager_for(store, settings).fresh("alice"))
    assert account.refresh_token == fake.account("alice").refresh_token
    assert [c.status for c in fake.token_calls] == [200, 200]


# ---- the accounts file cannot be written (a real full or read-only file system) ----


def small_fs_settings(settings: Settings, small_fs) -> Settings:
    return with_settings(settings, accounts_file=small_fs.path / "accounts.yaml")


async def wait_saved(manager: CredentialManager, name: str) -> None:
    while manager.account_state(name)["token_unsaved"] is not None:
        await asyncio.sleep(0.01)


async def test_background_refresh_on_a_full_disk_keeps_serving_and_saves_when_space_returns(
    fake: FakeUpstream, settings: Settings, small_fs, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(credentials, "SAVE_RETRY_DELAYS_S", (0.05,))
    settings = small_fs_settings(settings, small_fs)
    store = make_store(settings, expires_in_s=60)  # inside the 300 s skew: due for a refresh
    manager = manager_for(store, settings)
    small_fs.fill()

    assert await manager.refresh_idle() == {"alice": None}  # no traffic: the background refresher

    rotated = fake.account("alice")
    assert rotated.refresh_token != ALICE_REFRESH
    serving = await manager.fresh("alice")
    assert (serving.access_token, serving.refresh_token) == (rotated.access_token, rotated.refresh_token)
    unsaved = manager.account_state("alice")["token_unsaved"]
    assert unsaved is not None and "No space left on device" in unsaved["error"]
    assert str(store.path) in unsaved["error"]
    assert store.read().get("alice").refresh_token == ALICE_REFRESH  # the file could not take it
    assert ALICE_REFRESH not in json.dumps(manager.account_state("alice"))
    assert rotated.refresh_token not in json.dumps(manager.account_state("alice"))

    background = asyncio.get_running_loop().create_task(manager.run_background(interval_s=3600))
    try:
        await asyncio.sleep(0.2)  # some retries fail while the disk is still full
        assert manager.account_state("alice")["token_unsaved"]["attempts"] >= 1
        small_fs.free()
        await asyncio.wait_for(wait_saved(manager, "alice"), 10)
    finally:
        await cancel_and_wait(background, "the background refresher")
    assert store.read().get("alice").refresh_token == rotated.refresh_token
    assert not store.journal.path.exists()

    restarted = manager_for(store, settings)  # a restart reads the saved pair and can refresh it
    assert (await restarted.fresh("alice", force=True)).refresh_token == fake.account("alice").refresh_token
    assert [call.status for call in fake.token_calls] == [200, 200]


async def test_refresh_on_a_read_only_file_system_keeps_the_pair_until_it_is_writable_again(
    fake: FakeUpstream, settings: Settings, small_fs,
) -> None:
    settings = small_fs_settings(settings, small_fs)
    store = make_store(settings, expires_in_s=60)
    manager = manager_for(store, settings)
    small_fs.read_only()

    account = await manager.fresh("alice")

    rotated = fake.account("alice")
    assert account.refresh_token == rotated.refresh_token != ALICE_REFRESH
    assert "Read-only file system" in manager.account_state("alice")["token_unsaved"]["error"]
    assert not await manager.save_unsaved(force=True)
    small_fs.read_write()
    assert await manager.save_unsaved(force=True)
    assert store.read().get("alice").refresh_token == rotated.refresh_token
    assert manager.account_state("alice")["token_unsaved"] is None


async def test_a_pair_the_journal_took_survives_a_crash_before_the_file_is_written(
    fake: FakeUpstream, settings: Settings,
) -> None:
    store = make_store(settings, expires_in_s=60)
    manager = manager_for(store, settings)
    real_update = store.update

    def crash_after_mutate(mutate):  # the process "dies" between the journal and the file
        def mutate_then_die(doc):
            mutate(doc)
            raise OSError(28, "No space left on device")
        return real_update(mutate_then_die)

    store.update = crash_after_mutate  # type: ignore[method-assign]
    await manager.fresh("alice")
    store.update = real_update  # type: ignore[method-assign]
    rotated = fake.account("alice")
    assert store.read().get("alice").refresh_token == ALICE_REFRESH
    assert [p.refresh_token for p in store.journal.entries()] == [rotated.refresh_token]
    assert oct(os.stat(store.journal.path).st_mode & 0o777) == "0o600"

    assert AccountsStore(store.path).recover() == ["alice"]  # what a restart does
    assert store.read().get("alice").refresh_token == rotated.refresh_token
    assert not store.journal.path.exists()


async def test_on_refresh_hears_each_outcome(fake: FakeUpstream, settings: Settings) -> None:
    heard: list[tuple[str, str]] = []
    store = make_store(settings, expires_in_s=60)
    stale = manager_for(store, settings)  # still holds the pair the other one rotates
    manager = manager_for(store, settings)
    for listening in (stale, manager):
        listening.on_refresh = lambda name, outcome: heard.append((name, outcome))
    await asyncio.gather(*(manager.fresh("alice") for _ in range(5)))
    assert heard == [("alice", "refreshed")]
    await stale.fresh("alice")
    assert heard[1:] == [("alice", "adopted")]
    dead = manager_for(make_store(settings, expires_in_s=60), settings)  # ALICE_REFRESH was used above
    dead.on_refresh = lambda name, outcome: heard.append((name, outcome))
    with pytest.raises(NeedsLogin):
        await dead.fresh("alice")
    assert heard[2:] == [("alice", "needs_login")]
    fake.inject(None, "503", count=3, path="/v1/oauth/token")
    down = manager_for(make_store(settings, expires_in_s=-10), settings)
    down.on_refresh = lambda name, outcome: heard.append((name, outcome))
    with pytest.raises(OAuthError):
        await down.fresh("alice")
    assert heard[3:] == [("alice", "failed")]
