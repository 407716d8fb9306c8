import hashlib

import pytest

from teamclaude.client_keys import (
    CLIENT_KEY_PREFIX, PROXY_HOLDER, BadClientKey, ClientKey, Keyring, check_max_concurrent, check_name, create,
    key_hash, new_key, parse_record,
)


def test_new_keys_are_random_prefixed_and_url_safe():
    keys = {new_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert key.startswith(CLIENT_KEY_PREFIX) and len(key) == len(CLIENT_KEY_PREFIX) + 32
        assert key[4:].replace("-", "").replace("_", "").isalnum()


def test_create_stores_only_the_hash():
    key, record = create("alice-laptop", 3, 1_700_000_000_000)
    assert record == ClientKey("alice-laptop", hashlib.sha256(key.encode()).hexdigest(), 1_700_000_000_000, 3)
    assert key not in repr(record) and record.sha256 not in repr(record)
    assert key not in str(record.to_dict())
    assert record.to_dict() == {"name": "alice-laptop", "sha256": key_hash(key), "created_at": 1_700_000_000_000,
                                "max_concurrent": 3}


@pytest.mark.parametrize("name", ["a", "ci.build-01", "A_b", "x" * 64])
def test_good_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "has space", "slash/", "ünï", "new\nline", None, 3])
def test_bad_names_are_refused_naming_the_rule(name):
    with pytest.raises(BadClientKey) as info:
        check_name(name)
    assert info.value.field == "name" and "\n" not in str(info.value)


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "2"])
def test_bad_limits(value):
    with pytest.raises(BadClientKey, match="positive integer"):
        check_max_concurrent(value)
    assert check_max_concurrent(None) is None and check_max_concurrent(4) == 4


def test_parse_record_names_the_field_at_fault_and_keeps_unknown_fields():
    good = {"name": "ci", "sha256": "0" * 64, "created_at": 1, "max_concurrent": 2, "note": "x"}
    assert parse_record(good) == ClientKey("ci", "0" * 64, 1, 2)
    assert parse_record(good).extra == {"note": "x"}
    for field, value in (("sha256", "0" * 63), ("sha256", "A" * 64), ("created_at", -1), ("created_at", True),
                         ("max_concurrent", 0), ("name", "a b")):
        with pytest.raises(BadClientKey) as info:
            parse_record({**good, field: value})
        assert info.value.field == field


def test_keyring_tells_the_proxy_key_from_client_keys_and_refuses_the_rest():
    alice_key, alice = create("alice", None, 1)
    bob_key, bob = create("bob", 1, 2)
    keys = Keyring("tc-proxy", [alice, bob])
    assert keys.holder("tc-proxy") is PROXY_HOLDER and PROXY_HOLDER.name is None
    assert keys.holder(alice_key).name == "alice" and keys.holder(bob_key).client == bob
    for wrong in ("", "tc-prox", alice_key + " ", alice.sha256, bob_key.upper()):
        assert keys.holder(wrong) is None
    assert Keyring("", [alice]).holder("") is None
    assert Keyring("tc-proxy").holder(alice_key) is None  # removed: no longer accepted


def test_records_from_several_sources_merge_by_name_the_first_wins():
    file_key, from_file = create("alice", None, 1)
    other_key, from_elsewhere = create("alice", 5, 2)
    _, carol = create("carol", None, 3)
    keys = Keyring("tc-proxy", [from_file, *[from_elsewhere, carol]])
    assert [c.name for c in keys.clients] == ["alice", "carol"]
    assert keys.holder(file_key).client == from_file and keys.holder(other_key) is None
