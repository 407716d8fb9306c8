from __future__ import annotations

import multiprocessing
import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from routing.types import AccountSpec
from teamclaude import accounts_store
from teamclaude.accounts_store import (
    Account,
    AccountsDoc,
    AccountsError,
    AccountsStore,
    dump_accounts,
    merge_duplicates,
)
from teamclaude.client_keys import create
from teamclaude.token_journal import ReceivedPair

FORK = multiprocessing.get_context("fork")
CHILD_TIMEOUT_S = 30.0

SAMPLE = """\
# hand-written
proxy_key: tc-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
accounts:
  - name: alice@example.com
    type: oauth
    id: 6f1c-uuid
    nickname: Al
    access_token: sk-ant-oat01-secret-access
    refresh_token: sk-ant-ort01-secret-refresh
    expires_at: 1795000000000
    team_notes: {seat: 3}
  - name: ci-key
    type: apikey
    api_key: sk-ant-api03-secret-key
    priority: 2
    disabled: true
future_top_level: [1, 2]
"""

SECRETS = ("sk-ant-oat01-secret-access", "sk-ant-ort01-secret-refresh", "sk-ant-api03-secret-key", "tc-AAAA")


def store_with(tmp_path: Path, text: str) -> AccountsStore:
    path = tmp_path / "accounts.yaml"
    path.write_text(text)
    return AccountsStore(path)


def read_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(AccountsError) as info:
        store_with(tmp_path, text).read()
    message = str(info.value)
    assert "\n" not in message
    for secret in SECRETS:
        assert secret not in message
    return message


def test_missing_file_is_an_empty_document(tmp_path: Path) -> None:
    doc = AccountsStore(tmp_path / "accounts.yaml").read()
    assert doc.proxy_key is None and doc.accounts == [] and doc.extra == {}
    assert AccountsStore(tmp_path / "accounts.yaml").fingerprint() is None


def test_read_parses_known_and_keeps_unknown_fields(tmp_path: Path) -> None:
    doc = store_with(tmp_path, SAMPLE).read()
    alice, ci = doc.accounts
    assert alice.id == "6f1c-uuid" and alice.expires_at == 1795000000000
    assert list(alice.extra) == ["nickname", "team_notes"]
    assert ci.type == "apikey" and ci.priority == 2 and ci.disabled is True
    assert doc.extra == {"future_top_level": [1, 2]}
    assert ci.to_spec() == AccountSpec(name="ci-key", kind="apikey", priority=2, disabled=True)


def test_round_trip_keeps_unknown_fields_in_order_and_writes_0600(tmp_path: Path) -> None:
    store = store_with(tmp_path, SAMPLE)

    def touch(doc: AccountsDoc) -> None:
        doc.get("alice@example.com").plan = "max"

    store.update(touch)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    raw = yaml.safe_load(store.path.read_text())
    assert list(raw["accounts"][0]) == [
        "name", "type", "id", "plan", "access_token", "refresh_token", "expires_at", "nickname", "team_notes",
    ]
    assert raw["accounts"][0]["team_notes"] == {"seat": 3}
    assert raw["future_top_level"] == [1, 2]
    again = store.read()
    assert again.accounts[0].plan == "max"
    assert again.accounts[0].refresh_token == "sk-ant-ort01-secret-refresh"


def test_update_without_change_does_not_rewrite(tmp_path: Path) -> None:
    store = store_with(tmp_path, SAMPLE)
    before = store.fingerprint()
    assert store.update(lambda doc: len(doc.accounts)) == 2
    assert store.fingerprint() == before
    assert store.path.read_text() == SAMPLE


def test_repr_never_shows_secrets(tmp_path: Path) -> None:
    doc = store_with(tmp_path, SAMPLE).read()
    text = repr(doc) + repr(doc.accounts) + str(doc.accounts[0])
    for secret in SECRETS:
        assert secret not in text
    assert "access_token=<set>" in text and "proxy_key=<set>" in text


def test_ensure_proxy_key_generates_once(tmp_path: Path) -> None:
    store = AccountsStore(tmp_path / "accounts.yaml")
    key = store.ensure_proxy_key()
    assert key.startswith("tc-") and len(key) == 35
    assert all(c.isalnum() or c in "-_" for c in key[3:])
    assert store.ensure_proxy_key() == key
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_upsert_matches_by_id_then_name() -> None:
    doc = AccountsDoc(accounts=[
        Account(name="a", type="oauth", id="u1", refresh_token="r1"),
        Account(name="b", type="apikey", api_key="k"),
    ])
    doc.upsert(Account(name="renamed", type="oauth", id="u1", refresh_token="r2"))
    doc.upsert(Account(name="b", type="apikey", api_key="k2"))
    doc.upsert(Account(name="c", type="apikey", api_key="k3"))
    assert [(a.name, a.refresh_token or a.api_key) for a in doc.accounts] == [
        ("renamed", "r2"), ("b", "k2"), ("c", "k3"),
    ]


def test_merge_duplicates_keeps_newest_tokens() -> None:
    doc = AccountsDoc(accounts=[
        Account(name="old", type="oauth", id="uuid-1234-5678", refresh_token="r-old", expires_at=100),
        Account(name="other", type="apikey", api_key="k"),
        Account(name="new", type="oauth", id="uuid-1234-5678", refresh_token="r-new", expires_at=200),
    ])
    messages = merge_duplicates(doc)
    assert [a.name for a in doc.accounts] == ["new", "other"]
    assert doc.accounts[0].refresh_token == "r-new"
    assert len(messages) == 1 and "'old'" in messages[0] and "'new'" in messages[0]
    assert "r-new" not in messages[0] and "r-old" not in messages[0]
    assert merge_duplicates(doc) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accounts:\n  - name: bob\n    type: oath\n    api_key: sk-ant-api03-secret-key\n",
         "line 3: account 'bob' has type 'oath' (allowed: oauth, apikey)"),
        ("accounts:\n  - name: bob\n    api_key: x\n", "line 2: account 'bob' has no 'type'"),
        ("accounts:\n  - type: apikey\n    api_key: x\n", "account #1 needs a 'name'"),
        ("accounts:\n  - name: bob\n    type: apikey\n", "line 2: account 'bob' (apikey) has no 'api_key'"),
        ("accounts:\n  - name: bob\n    type: oauth\n    id: u\n", "account 'bob' (oauth) has neither 'refresh_token'"),
        ("accounts:\n  - name: bob\n    type: apikey\n    api_key: [sk-ant-api03-secret-key]\n",
         "line 4: account 'bob': 'api_key' must be a string"),
        ("accounts:\n  - name: bob\n    type: oauth\n    refresh_token: r\n    expires_at: soon\n",
         "line 5: account 'bob': 'expires_at' must be epoch milliseconds, got 'soon'"),
        ("accounts:\n  - name: bob\n    type: apikey\n    api_key: k\n    priority: high\n",
         "'priority' must be an integer"),
        ("accounts:\n  - name: bob\n    type: apikey\n    api_key: k\n"
         "  - name: bob\n    type: apikey\n    api_key: k\n",
         "line 5: account name 'bob' is used twice (also line 2)"),
        ("accounts: {name: bob}\n", "line 1: 'accounts' must be a list"),
        ("proxy_key: [tc-AAAA]\n", "'proxy_key' must be a string"),
        ("accounts:\n  - name: bob\n    name: bob\n", "line 3: account #1: 'name' is set twice"),
        ("accounts: [\n", "not valid YAML"),
        ("- a\n", "line 1: expected 'proxy_key:' and 'accounts:'"),
        ("client_keys:\n  - name: ci\n    sha256: nothex\n    created_at: 1\n",
         "line 3: client key 'ci': 'sha256' must be 64 lowercase hex digits"),
        ("client_keys:\n  - name: ci\n    sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n    created_at: 1\n    max_concurrent: 0\n",
         "line 5: client key 'ci': 'max_concurrent' must be a positive integer, got 0"),
        ("client_keys:\n  - name: c i\n    sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n    created_at: 1\n",
         "line 2: client name 'c i' is not allowed"),
        ("client_keys:\n  - sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n    created_at: 1\n", "line 2: a client key needs a 'name'"),
        ("client_keys:\n  - name: ci\n    sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n    created_at: soon\n",
         "line 4: client key 'ci': 'created_at' must be epoch milliseconds, got 'soon'"),
        ("client_keys:\n  - name: ci\n    sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n    created_at: 1\n"
         "  - name: ci\n    sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n    created_at: 2\n",
         "line 5: client key name 'ci' is used twice (also line 2)"),
        ("client_keys: {name: ci}\n", "line 1: 'client_keys' must be a list"),
        ("client_keys:\n  - ci\n", "line 2: client key #1 must be a mapping"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    message = read_error(tmp_path, text)
    assert message.startswith(str(tmp_path / "accounts.yaml"))
    assert expected in message


def test_update_refuses_to_write_an_invalid_document(tmp_path: Path) -> None:
    store = store_with(tmp_path, SAMPLE)

    def add_duplicate(doc: AccountsDoc) -> None:
        doc.accounts.append(Account(name="ci-key", type="apikey", api_key="sk-ant-api03-other"))

    with pytest.raises(AccountsError, match="'ci-key' is used twice") as info:
        store.update(add_duplicate)
    assert "sk-ant-api03-other" not in str(info.value)
    assert store.path.read_text() == SAMPLE


def _add_accounts(path: str, prefix: str, count: int) -> None:
    store = AccountsStore(Path(path))
    for i in range(count):
        store.update(lambda doc, i=i: doc.upsert(Account(name=f"{prefix}-{i}", type="apikey", api_key=f"k-{i}")))


def _end(children: list[Any]) -> None:
    """SIGKILL whichever forked child is still running (a failed test leaves none behind)."""
    for child in children:
        if child.is_alive():
            child.kill()
        child.join(timeout=10)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    store = AccountsStore(tmp_path / "accounts.yaml")
    store.ensure_proxy_key()
    writers = [FORK.Process(target=_add_accounts, args=(str(store.path), p, 50)) for p in ("p", "q")]
    for writer in writers:
        writer.start()
    reads = 0
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    try:
        while any(w.is_alive() for w in writers):
            assert time.monotonic() < deadline, f"the writers did not finish within {CHILD_TIMEOUT_S:g} s"
            store.read()  # raises if a reader ever sees a partial file
            reads += 1
    finally:
        _end(writers)
    for writer in writers:
        assert writer.exitcode == 0
    names = {a.name for a in store.read().accounts}
    assert names == {f"{p}-{i}" for p in ("p", "q") for i in range(50)}
    assert reads > 0
    assert sorted(os.listdir(tmp_path)) == ["accounts.yaml", "accounts.yaml.lock"]


def _write_then_hang(path: str, halfway: Any) -> None:
    real_write = os.write

    def half_then_hang(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        halfway.set()
        signal.pause()
        return 0

    os.write = half_then_hang  # this forked child only
    store = AccountsStore(Path(path))
    store.update(lambda doc: doc.upsert(Account(name="new", type="apikey", api_key="k")))


def test_kill_during_write_leaves_previous_file_intact(tmp_path: Path) -> None:
    store = store_with(tmp_path, SAMPLE)
    halfway = FORK.Event()
    child = FORK.Process(target=_write_then_hang, args=(str(store.path), halfway))
    child.start()
    try:
        assert halfway.wait(timeout=CHILD_TIMEOUT_S), "the writer did not reach the middle of its write"
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=CHILD_TIMEOUT_S)
    finally:
        _end([child])
    assert child.exitcode == -signal.SIGKILL
    assert store.path.read_text() == SAMPLE
    assert [a.name for a in store.read().accounts] == ["alice@example.com", "ci-key"]
    # The lock died with the process: the next writer proceeds.
    store.update(lambda doc: doc.upsert(Account(name="after", type="apikey", api_key="k")))
    assert store.read().get("after") is not None


# ---- leftovers of interrupted writes: the token journal and temp files ----


def _orphan(store: AccountsStore, text: str, tag: str) -> Path:
    """A temp file as `atomic_write` leaves it when the process dies before the rename."""
    orphan = store.path.with_name(f".{store.path.name}.{tag}.tmp")
    orphan.write_text(text)
    orphan.chmod(0o600)
    return orphan


def _alice(store: AccountsStore) -> Account:
    alice = store.read().get("alice@example.com")
    assert alice is not None
    return alice


def _rotated(store: AccountsStore, obtained_at: int, refresh: str) -> str:
    """The accounts file as a write would have left it, alice's pair rotated."""
    doc = store.read()
    alice = doc.get("alice@example.com")
    assert alice is not None
    alice.access_token, alice.refresh_token, alice.obtained_at = "sk-ant-oat01-new-access", refresh, obtained_at
    return dump_accounts(doc)


def test_a_complete_orphaned_temp_file_with_a_newer_pair_is_adopted_then_removed(tmp_path: Path) -> None:
    store = store_with(tmp_path, SAMPLE.replace("expires_at: 1795000000000", "expires_at: 1795000000000\n    obtained_at: 1000"))
    newer = _orphan(store, _rotated(store, 2000, "sk-ant-ort01-newer-refresh"), "aaaa")
    older = _orphan(store, _rotated(store, 500, "sk-ant-ort01-older-refresh"), "bbbb")
    cut = _orphan(store, _rotated(store, 3000, "sk-ant-ort01-cut-refresh")[:-40], "cccc")  # killed mid-write
    unrelated = tmp_path / ".other.yaml.dddd.tmp"
    unrelated.write_text("x")

    assert store.recover() == ["alice@example.com"]

    alice = _alice(store)
    assert (alice.refresh_token, alice.obtained_at) == ("sk-ant-ort01-newer-refresh", 2000)
    assert not any(p.exists() for p in (newer, older, cut))
    assert unrelated.exists()
    assert _alice(store).extra == {"nickname": "Al", "team_notes": {"seat": 3}}  # nothing else changed


def test_an_orphaned_temp_file_older_than_the_file_is_only_removed(tmp_path: Path) -> None:
    store = store_with(tmp_path, SAMPLE.replace("expires_at: 1795000000000", "expires_at: 1795000000000\n    obtained_at: 5000"))
    orphan = _orphan(store, _rotated(store, 4000, "sk-ant-ort01-older-refresh"), "aaaa")
    assert store.recover() == []
    assert _alice(store).refresh_token == "sk-ant-ort01-secret-refresh"
    assert not orphan.exists()


def test_journal_entries_are_adopted_by_any_write_and_a_removed_account_stays_removed(tmp_path: Path) -> None:
    store = store_with(tmp_path, SAMPLE)  # no obtained_at (an older version): expires_at decides
    key = _alice(store).key
    later = 1795000000000 + 1000
    store.journal.append(ReceivedPair(key, "alice@example.com", "sk-ant-oat01-j1", "sk-ant-ort01-j1", later, 100))
    store.journal.append(ReceivedPair(key, "alice@example.com", "sk-ant-oat01-j2", "sk-ant-ort01-j2", later + 1, 200))
    store.journal.append(ReceivedPair("name:gone", "gone", "sk-ant-oat01-g", "sk-ant-ort01-g", 2, 200))
    with store.journal.path.open("a") as journal:
        journal.write('{"key": "' + key + '", "name": "alice@example.com", "access_tok')  # a cut line

    store.update(lambda doc: doc.remove("ci-key"))  # a CLI write

    doc = store.read()
    assert (doc.get("alice@example.com").refresh_token, doc.get("alice@example.com").obtained_at) == ("sk-ant-ort01-j2", 200)
    assert [a.name for a in doc.accounts] == ["alice@example.com"]
    assert not store.journal.path.exists()


def test_a_write_that_fails_keeps_the_leftovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_with(tmp_path, SAMPLE)
    store.journal.append(ReceivedPair(_alice(store).key, "alice@example.com", "sk-ant-oat01-j", "sk-ant-ort01-j", 1795000001000, 100))
    orphan = _orphan(store, _rotated(store, 50, "sk-ant-ort01-orphan"), "aaaa")

    def no_space(path: Path, data: bytes, mode: int = 0o600) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(accounts_store, "atomic_write", no_space)
    with pytest.raises(OSError):
        store.recover()
    assert store.journal.path.exists() and orphan.exists()


def test_new_tokens_get_obtained_at_and_files_without_it_still_load(tmp_path: Path) -> None:
    store = store_with(tmp_path, SAMPLE)  # an older version's file: no obtained_at
    assert _alice(store).obtained_at is None

    def new_tokens(doc: AccountsDoc) -> None:
        doc.get("alice@example.com").access_token = "sk-ant-oat01-other"

    store.update(new_tokens)
    assert _alice(store).obtained_at is not None
    assert store.path.read_text().endswith("# end of accounts\n")
    assert "obtained_at" in read_error(tmp_path, SAMPLE.replace("expires_at: 1795000000000", "obtained_at: soon"))


def test_the_engine_is_told_each_accounts_plan_and_email():
    """The pool's quota weighs accounts by plan, and the state file shows both."""
    spec = Account(name="alice", type="oauth", email="alice@example.com", plan="max", priority=2).to_spec()
    assert (spec.name, spec.kind, spec.email, spec.plan, spec.priority) == ("alice", "oauth", "alice@example.com", "max", 2)


def test_client_keys_round_trip_with_unknown_fields_and_no_key_in_the_file(tmp_path: Path) -> None:
    store = store_with(tmp_path, SAMPLE + "client_keys:\n  - name: ci\n    sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n    created_at: 5\n    owner: ops\n")
    doc = store.read()
    assert [(k.name, k.sha256, k.created_at, k.max_concurrent, k.extra) for k in doc.client_keys] == [
        ("ci", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 5, None, {"owner": "ops"})]
    key, record = create("laptop", 2, 7)
    store.update(lambda d: d.client_keys.append(record))
    text = store.path.read_text()
    assert key not in text and record.sha256 in text and "owner: ops" in text and "future_top_level" in text
    assert [k.name for k in store.read().client_keys] == ["ci", "laptop"]
    assert store.read().client_keys[1] == record
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert record.sha256 not in repr(store.read())
