import json

from routing.request_info import read_request

SID = "0b6f8a4e-1c2d-4e5f-9a8b-7c6d5e4f3a2b"


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_session_header_wins():
    info = read_request("/v1/messages", {"x-claude-code-session-id": SID}, body(model="claude-opus-4-5", stream=True))
    assert (info.session_id, info.model, info.stream, info.is_inference) == (SID, "claude-opus-4-5", True, True)


def test_session_from_json_user_id():
    user_id = json.dumps({"device_id": "d", "account_uuid": "a", "session_id": SID})
    info = read_request("/v1/messages", {}, body(model="m", metadata={"user_id": user_id}))
    assert info.session_id == SID and info.stream is False


def test_session_from_legacy_user_id():
    user_id = f"user_abc123_account_9f1e2d3c-aaaa-bbbb-cccc-123456789abc_session_{SID}"
    assert read_request("/v1/messages", {}, body(metadata={"user_id": user_id})).session_id == SID


def test_only_top_level_model_counts():
    payload = body(messages=[{"role": "user", "content": '{"model": "claude-haiku"}'}], max_tokens=5)
    assert read_request("/v1/messages", {}, payload).model is None


def test_garbage_bodies_and_ids_give_nothing():
    assert read_request("/v1/messages", {}, b"\xff\xfe not json").model is None
    assert read_request("/v1/messages", {}, b"[1,2]").session_id is None
    assert read_request("/v1/messages", {"x-claude-code-session-id": "x" * 500}, b"").session_id is None
    assert read_request("/v1/messages", {}, body(metadata={"user_id": "{broken"})).session_id is None
    deep = b"[" * 100000 + b"]" * 100000
    assert read_request("/v1/messages", {}, deep).model is None
    deep_user_id = '{"a":' + "[" * 100000
    assert read_request("/v1/messages", {}, body(metadata={"user_id": deep_user_id})).session_id is None


def test_non_inference_paths():
    assert not read_request("/v1/models", {}, b"").is_inference
    assert read_request("/v1/messages/count_tokens", {}, b"").is_inference


AGENT = "a1b2c3d4e5f6g7h8i"  # 17 characters, as Claude Code sends


def test_subagent_header_gives_its_own_conversation_in_the_session():
    headers = {"x-claude-code-session-id": SID, "x-claude-code-agent-id": AGENT,
               "x-claude-code-parent-agent-id": "p" * 17, "x-app": "cli-bg"}
    info = read_request("/v1/messages", headers, body(model="m"))
    assert (info.session_id, info.conversation, info.agent_id) == (SID, AGENT, AGENT)
    assert info.parent_agent_id == "p" * 17 and info.background
    main = read_request("/v1/messages", {"x-claude-code-session-id": SID, "x-app": "cli"}, body(model="m"))
    assert main.conversation is None and not main.background
    assert main.conversation_key == SID != info.conversation_key


def test_marked_subagent_without_header_is_told_apart_by_prompt_and_first_message():
    def sub(task: str, turns: int) -> bytes:
        messages = [{"role": "user", "content": [{"type": "text", "text": task}]}]
        messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}] * turns
        system = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2; cc_is_subagent=true"},
                  {"type": "text", "text": "You are an agent."}]
        return body(model="m", system=system, messages=messages)

    headers = {"x-claude-code-session-id": SID}
    first, later = (read_request("/v1/messages", headers, sub("find bugs", n)) for n in (0, 3))
    other = read_request("/v1/messages", headers, sub("write docs", 0))
    assert first.conversation is not None and first.conversation == later.conversation
    assert other.conversation not in (None, first.conversation)
    assert first.agent_id is None
    unmarked = body(model="m", system="You are Claude Code.", messages=[{"role": "user", "content": "hi"}])
    assert read_request("/v1/messages", headers, unmarked).conversation is None


def test_conversation_digest_reads_a_bounded_prefix_of_huge_or_odd_prompts():
    huge = "cc_is_subagent=true " + "x" * 5_000_000
    a = read_request("/v1/messages", {}, body(system=huge, messages=[{"role": "user", "content": "q"}]))
    b = read_request("/v1/messages", {}, body(system=huge + "tail", messages=[{"role": "user", "content": "q"}]))
    assert a.conversation is not None and a.conversation == b.conversation  # only the prefix counts
    late_mark = "y" * 200_000 + "cc_is_subagent=true"
    assert read_request("/v1/messages", {}, body(system=late_mark)).conversation is None
    for odd in ([1, None, {"type": 3}], {"text": 1}, 42, [{"text": "\ud800 cc_is_subagent=true"}]):
        info = read_request("/v1/messages", {}, body(system=odd, messages=[None, 5]))
        assert info.conversation is None or info.conversation.startswith("d-")


def test_garbage_agent_headers_are_ignored():
    for value in ("", " ", "x" * 500, "bad\x00id"):
        info = read_request("/v1/messages", {"x-claude-code-agent-id": value}, b"")
        assert info.agent_id is None and info.conversation is None
