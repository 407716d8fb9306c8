"""Unpaired tool blocks: only provably unpaired ones go, a well-formed body keeps its bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teamclaude import tool_pairs
from teamclaude.tool_pairs import repair


def use(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"command": "ls"}}


def result(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}


def text(words: str) -> dict[str, Any]:
    return {"type": "text", "text": words}


def user(*blocks: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


def body(*messages: Any, **extra: Any) -> bytes:
    return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": list(messages), **extra},
                      separators=(",", ":"), ensure_ascii=False).encode()


def messages_of(data: bytes) -> list[Any]:
    return json.loads(data)["messages"]


def test_a_well_formed_conversation_is_the_same_bytes() -> None:
    data = body(user(text("hi")), assistant(text("let me look"), use("t1"), use("t2")),
                user(result("t1"), result("t2"), text("and?")), assistant(text("done")), user(text("thanks")))
    fixed = repair(data)
    assert fixed.body is data and fixed.notes == ()


def test_a_tool_use_without_its_result_in_the_next_message_is_removed() -> None:
    data = body(user(text("hi")), assistant(text("running"), use("t1"), use("t2")),
                user(result("t1"), text("[Request interrupted by user]")))
    fixed = repair(data)
    assert messages_of(fixed.body) == [user(text("hi")), assistant(text("running"), use("t1")),
                                       user(result("t1"), text("[Request interrupted by user]"))]
    assert fixed.notes == ("removed tool_use t2 from messages[1]: no tool_result for it in the next message",)


def test_a_tool_result_without_its_use_in_the_message_before_is_removed() -> None:
    data = body(user(text("hi")), assistant(text("no tools")), user(result("gone"), text("go on")))
    fixed = repair(data)
    assert messages_of(fixed.body) == [user(text("hi")), assistant(text("no tools")), user(text("go on"))]
    assert fixed.notes == ("removed tool_result for gone from messages[2]: no such tool_use in the message before",)


def test_a_tool_result_in_the_first_message_is_removed() -> None:
    fixed = repair(body(user(result("t0"), text("summary of the compacted conversation"))))
    assert messages_of(fixed.body) == [user(text("summary of the compacted conversation"))]


def test_a_result_two_messages_later_does_not_pair() -> None:
    data = body(user(text("hi")), assistant(use("t1")), user(text("wait")), assistant(text("ok")), user(result("t1")))
    fixed = repair(data)
    assert messages_of(fixed.body) == [user(text("hi")), user(text("wait")), assistant(text("ok"))]
    assert fixed.notes == (
        "removed tool_use t1 from messages[1]: no tool_result for it in the next message",
        "removed tool_result for t1 from messages[4]: no such tool_use in the message before",
        "dropped messages[1]: nothing left in it",
        "dropped messages[4]: nothing left in it",
    )


def test_string_content_answers_nothing() -> None:
    data = body({"role": "user", "content": "hi"}, assistant(use("t1")), {"role": "user", "content": "never mind"})
    assert messages_of(repair(data).body) == [{"role": "user", "content": "hi"}, {"role": "user", "content": "never mind"}]


def test_pairs_across_a_split_turn_are_not_provably_broken() -> None:
    # If the API merges consecutive messages of one role, these pair: leave them.
    data = body(user(text("hi")), assistant(use("t1")), assistant(use("t2")),
                user(result("t1")), user(result("t2")))
    assert repair(data).body is data


def test_a_final_tool_use_and_junk_neighbours_are_left_alone() -> None:
    for data in (body(user(text("hi")), assistant(use("t1"))),
                 body(user(text("hi")), assistant(use("t1")), "junk", user(text("x"))),
                 body(user(text("hi")), {"role": "system", "content": []}, user(result("t1"))),
                 body(user(text("hi")), assistant(use("t1")), {"role": "user", "content": {"type": "text"}})):
        assert repair(data).body is data


def test_junk_blocks_and_odd_ids_stay() -> None:
    data = body(user(text("hi")), assistant("junk", 7, {"type": "tool_use", "id": 5}, use("t1")),
                user(None, {"type": "tool_result"}, text("no result")))
    fixed = repair(data)
    assert messages_of(fixed.body)[1] == assistant("junk", 7, {"type": "tool_use", "id": 5})
    assert messages_of(fixed.body)[2] == user(None, {"type": "tool_result"}, text("no result"))


def test_key_order_and_other_fields_survive_a_repair() -> None:
    data = json.dumps({"z": 1, "messages": [user(text("é")), assistant(use("t1")), user(text("x"))],
                       "a": {"n": 1.5, "big": 2**70}, "metadata": {"user_id": "u"}}, ensure_ascii=False).encode()
    fixed = json.loads(repair(data).body)
    assert list(fixed) == ["z", "messages", "a", "metadata"]
    assert fixed["a"] == {"n": 1.5, "big": 2**70} and fixed["messages"][0] == user(text("é"))


@pytest.mark.parametrize("data", [
    b"", b"[]", b"not json tool_", b'{"messages":"tool_use"}', b'{"messages":[]} tool_', b"\xfftool_",
    b'{"messages":' + b"[" * 100_000 + b"]" * 100_000 + b',"x":"tool_"}',
])
def test_non_conversations_are_left_alone(data: bytes) -> None:
    assert repair(data).body is data


def test_nan_in_the_body_is_not_re_serialized_into_invalid_json() -> None:
    data = body(user(text("hi")), assistant(use("t1")), user(text("x"))).replace(b'"max_tokens":64', b'"max_tokens":NaN')
    fixed = repair(data)
    assert fixed.body is data and "could not be re-serialized" in fixed.notes[0]


def test_a_lone_surrogate_stays_escaped() -> None:
    data = body(user(text("hi")), assistant(use("t1")), user(text("x"))).replace(b'"hi"', b'"\\ud800"')
    fixed = repair(data)
    assert json.loads(fixed.body)["messages"][0] == user(text("\ud800"))


def test_huge_bodies_are_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    data = body(user(text("hi")), assistant(use("t1")), user(text("x")))
    monkeypatch.setattr(tool_pairs, "MAX_BODY_BYTES", len(data) - 1)
    assert repair(data).body is data


def test_many_removals_have_a_bounded_note_list() -> None:
    data = body(user(text("hi")), assistant(*[use(f"t{n}") for n in range(100)]), user(text("x")))
    notes = repair(data).notes
    assert len(notes) == tool_pairs.MAX_NOTES + 1 and notes[-1] == "… and 81 more"  # 100 blocks, 1 message


# ---- properties ----

ids = st.sampled_from(["t1", "t2", "t3", "t4"])
blocks = st.one_of(ids.map(use), ids.map(result), st.just(text("x")), st.just("junk"), st.just({"type": "tool_use"}))
messages = st.one_of(
    st.builds(lambda role, content: {"role": role, "content": content}, st.sampled_from(["user", "assistant"]),
              st.lists(blocks, max_size=4) | st.just("plain")),
    st.just("junk"), st.just({"role": "system", "content": []}),
)


def paired_conversation(turns: list[int]) -> list[dict[str, Any]]:
    conversation = [user(text("start"))]
    for n, count in enumerate(turns):
        names = [f"t{n}-{k}" for k in range(count)]
        conversation.append(assistant(text("step"), *map(use, names)))
        conversation.append(user(*map(result, names)) if names else user(text("go on")))
    return conversation


def is_well_paired(conversation: list[Any]) -> bool:
    """The strict rule on conversations that `repair` changed (no junk around the pairs)."""
    again = repair(body(*conversation))
    return again.notes == ()


@given(st.lists(st.integers(0, 3), max_size=6))
def test_well_formed_bodies_are_never_touched(turns: list[int]) -> None:
    data = body(*paired_conversation(turns))
    assert repair(data).body is data


@given(st.lists(messages, max_size=8))
def test_repair_only_removes_tool_blocks_and_is_stable(conversation: list[Any]) -> None:
    data = body(*conversation)
    fixed = repair(data)
    if not fixed.notes:
        assert fixed.body is data
        return
    after = messages_of(fixed.body)
    assert is_well_paired(after)

    def kept(items: list[Any]) -> list[Any]:
        """Everything but tool blocks, in order."""
        out = []
        for message in items:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                out += [b for b in content if not (isinstance(b, dict) and b.get("type") in ("tool_use", "tool_result")
                                                   and isinstance(b.get("id", b.get("tool_use_id")), str))]
            else:
                out.append(message)
        return out

    assert kept(after) == kept(conversation)
    assert all(not isinstance(m, dict) or m.get("content") != [] or m in conversation for m in after)
