"""The account UUID in metadata.user_id: only that one value changes, byte for byte."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teamclaude.user_id import UUID, has_user_id, rewrite_account_uuid

MINE = "11111111-2222-4333-8444-555555555555"
FOREIGN = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
DEVICE = "0123456789abcdef" * 4
SESSION = "cccccccc-dddd-4eee-8fff-000000000000"
MARK = "@@user-id-goes-here@@"


def json_form(account: str = FOREIGN, **extra: str) -> str:
    return json.dumps({"device_id": DEVICE, "account_uuid": account, "session_id": SESSION, **extra},
                      separators=(",", ":"))


def legacy_form(account: str = FOREIGN) -> str:
    return f"user_{DEVICE}_account_{account}_session_{SESSION}"


def claude_code_body(user_id: str) -> bytes:
    return json.dumps({
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"my account is {FOREIGN}"}]}],
        "system": [{"type": "text", "text": "You are Claude Code"}],
        "metadata": {"user_id": user_id},
        "max_tokens": 32000, "stream": True,
    }, separators=(",", ":"), ensure_ascii=False).encode()


def split_at_user_id(document: dict, **dump_options) -> tuple[bytes, bytes]:
    """The bytes before and after the user_id value of `document` serialized."""
    text = json.dumps(document, **dump_options)
    marker = json.dumps(MARK, ensure_ascii=dump_options.get("ensure_ascii", True))
    assert text.count(marker) == 1
    prefix, suffix = text.split(marker)
    return prefix.encode(), suffix.encode()


@pytest.mark.parametrize("form, expected", [
    (json_form(), json_form(MINE)),
    (legacy_form(), legacy_form(MINE)),
    (legacy_form(""), legacy_form(MINE)),  # Claude Code without an OAuth login of its own
    (json_form(""), json_form(MINE)),
    (" " + json.dumps({"account_uuid": FOREIGN, "session_id": SESSION}, indent=2),
     " " + json.dumps({"account_uuid": MINE, "session_id": SESSION}, indent=2)),
])
def test_the_account_uuid_becomes_the_serving_accounts(form: str, expected: str) -> None:
    result = rewrite_account_uuid(claude_code_body(form), MINE)
    assert result.status == "rewritten"
    assert result.body == claude_code_body(expected)
    assert FOREIGN.encode() in result.body  # the UUID in the message text stays


def test_already_right_or_absent_is_the_same_object() -> None:
    for body, status in ((claude_code_body(json_form(MINE)), "same"),
                         (b'{"model":"m","messages":[]}', "absent"),
                         (b'{"metadata":{}}', "absent"),
                         (b'{"metadata":null,"user_id":"x"}', "absent"),
                         (b'{"messages":[{"metadata":{"user_id":"user_ab_account__session_x"}}]}', "absent")):
        result = rewrite_account_uuid(body, MINE)
        assert (result.status, result.body is body) == (status, True)


@pytest.mark.parametrize("user_id", [
    "", "someone", "user_xyz_account_1_session_2", legacy_form() + "_extra", "user__account__session_",
    json.dumps({"device_id": DEVICE, "session_id": SESSION}),  # no account_uuid
    json.dumps({"account_uuid": 7}), json.dumps({"account_uuid": None}),
    '{"account_uuid":"x"', '{"account_uuid":"x"} trailing', "[]",
])
def test_an_unknown_form_is_left_alone(user_id: str) -> None:
    body = claude_code_body(user_id)
    assert rewrite_account_uuid(body, MINE) == type(rewrite_account_uuid(body, MINE))(body, "malformed")


@pytest.mark.parametrize("body", [
    b'{"metadata":{"user_id":7}}', b'{"metadata":{"user_id":null}}', b'{"metadata":{"user_id":{"account_uuid":"x"}}}',
])
def test_a_user_id_that_is_not_a_string_is_malformed(body: bytes) -> None:
    assert rewrite_account_uuid(body, MINE).status == "malformed"


def test_one_unknown_user_id_among_duplicates_leaves_the_body_alone() -> None:
    body = ('{"metadata":{"user_id":' + json.dumps(json_form()) + ',"user_id":"junk"}}').encode()
    result = rewrite_account_uuid(body, MINE)
    assert (result.status, result.body) == ("malformed", body)


def test_every_duplicate_is_rewritten_whichever_the_api_reads() -> None:
    body = ('{"metadata":{"user_id":' + json.dumps(json_form()) + '},"x":1,'
            '"metadata":{"user_id":' + json.dumps(legacy_form()) + '}}').encode()
    result = rewrite_account_uuid(body, MINE)
    assert result.body == body.replace(FOREIGN.encode(), MINE.encode())


def test_escaped_key_names_and_escapes_inside_the_value() -> None:
    value = json.dumps(json_form(), ensure_ascii=True).replace('"{', '"\\u007b', 1)
    body = ('{"meta\\u0064ata" : {"user\\u005fid":' + value + '}, "t":"' + FOREIGN + '"}').encode()
    result = rewrite_account_uuid(body, MINE)
    assert result.status == "rewritten"
    document = json.loads(result.body)
    assert json.loads(document["metadata"]["user_id"]) == json.loads(json_form(MINE))
    assert result.body.endswith(b', "t":"' + FOREIGN.encode() + b'"}')


def test_non_ascii_elsewhere_keeps_its_bytes() -> None:
    def body(account: str) -> bytes:
        return claude_code_body(json_form(account, note="é")).replace(b"Claude Code", "Claude Cödé ✓".encode())

    assert rewrite_account_uuid(body(FOREIGN), MINE).body == body(MINE)


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[1,2]", b'"user_id"', b'{"metadata":{"user_id":"x"}', b'{"metadata":{"user_id":"x"}} x',
    b'\xff{"metadata":{"user_id":"x"}}', b'{"metadata":{"user_id":"x"},}', b"[" * 100_000 + b'"user_id"',
    b'{"metadata":' + b"[" * 100_000 + b"]" * 100_000 + b',"user_id":1}',
])
def test_bodies_that_are_not_one_json_object_are_left_alone(body: bytes) -> None:
    result = rewrite_account_uuid(body, MINE)
    assert (result.status, result.body is body) == ("absent", True)
    assert has_user_id(body) is False


def test_the_new_uuid_must_be_a_uuid() -> None:
    with pytest.raises(ValueError):
        rewrite_account_uuid(claude_code_body(json_form()), "x_session_y")


def test_has_user_id() -> None:
    assert has_user_id(claude_code_body("anything"))
    assert not has_user_id(b'{"model":"m"}')


# ---- properties ----

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
uuids = st.uuids().map(str)
user_ids = st.one_of(
    st.builds(lambda a, d, s: json.dumps({"device_id": d, "account_uuid": a, "session_id": s}), uuids | st.just(""),
              st.text(), st.text()),
    st.builds(lambda a, d, s: f"user_{d}_account_{a}_session_{s}", uuids | st.just(""),
              st.text("0123456789abcdef", min_size=1), uuids),
    st.text(),
)
dump_options = st.fixed_dictionaries({
    "ensure_ascii": st.booleans(),
    "separators": st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]),
})


@given(before=st.dictionaries(st.text(max_size=8).filter(lambda k: k != "metadata"), json_values, max_size=4),
       after=st.dictionaries(st.text(max_size=8).filter(lambda k: k != "metadata"), json_values, max_size=4),
       metadata_extra=st.dictionaries(st.text(max_size=8).filter(lambda k: k != "user_id"), json_values, max_size=3),
       user_id=user_ids, account=uuids, options=dump_options)
def test_only_the_user_id_value_ever_changes(before, after, metadata_extra, user_id, account, options) -> None:
    document = {**before, "metadata": {**metadata_extra, "user_id": MARK}, **{k: v for k, v in after.items() if k not in before}}
    prefix, suffix = split_at_user_id(document, **options)
    body = prefix + json.dumps(user_id, ensure_ascii=options["ensure_ascii"]).encode() + suffix
    result = rewrite_account_uuid(body, account)
    if result.status != "rewritten":
        assert result.body is body
        return
    assert result.body.startswith(prefix) and result.body.endswith(suffix)
    new_user_id = json.loads(result.body[len(prefix):len(result.body) - len(suffix)])
    if user_id.startswith("{"):
        old_fields, new_fields = json.loads(user_id), json.loads(new_user_id)
        assert list(new_fields) == list(old_fields)
        assert new_fields == {**old_fields, "account_uuid": account}
    else:
        device = user_id.split("_account_")[0]
        session = user_id.split("_session_")[1]
        assert new_user_id == f"{device}_account_{account}_session_{session}"


@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps({"metadata": {"user_id": v}}).encode()))
def test_any_bytes_are_safe(body: bytes) -> None:
    result = rewrite_account_uuid(body, MINE)
    if result.status != "rewritten":
        assert result.body is body
    else:
        assert UUID.fullmatch(MINE) and MINE.encode() in result.body


def test_real_uuids_match_the_pattern() -> None:
    assert UUID.fullmatch(str(uuid.uuid4()))
