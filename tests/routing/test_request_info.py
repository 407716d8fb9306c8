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
