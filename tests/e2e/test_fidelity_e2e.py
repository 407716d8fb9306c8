"""Claude Code fidelity end to end (issue 14): the serving account's UUID in metadata.user_id,
unpaired tool blocks removed, preconnects and telemetry answered without upstream."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
import yaml
from mitmproxy.io import FlowReader

from teamclaude.fakeupstream import FakeUpstream
from tests.e2e.harness import (
    PROXY_KEY,
    apikey_account,
    call,
    oauth_account,
    proxy_status,
    start_proxy,
    write_config,
)

ALICE_UUID = "a11ce000-0000-4000-8000-000000000001"
BOB_UUID = "b0b00000-0000-4000-8000-000000000002"
FOREIGN = "f0e1a000-0000-4000-8000-0000000000ff"
DEVICE = "0123456789abcdef" * 4
SESSION = "5e551000-0000-4000-8000-000000000003"


def json_user_id(account: str) -> str:
    return json.dumps({"device_id": DEVICE, "account_uuid": account, "session_id": SESSION}, separators=(",", ":"))


def legacy_user_id(account: str) -> str:
    return f"user_{DEVICE}_account_{account}_session_{SESSION}"


def claude_code_body(user_id: str) -> bytes:
    """Shaped like Claude Code's: compact, the foreign UUID also in the message text."""
    return json.dumps({
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"my account is {FOREIGN} ✓"}]}],
        "system": [{"type": "text", "text": "You are Claude Code"}],
        "metadata": {"user_id": user_id},
        "max_tokens": 64, "stream": False,
    }, separators=(",", ":"), ensure_ascii=False).encode()


def post(proxy_url: str, body: bytes, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return call(proxy_url, "POST", "/v1/messages", body, headers=headers)


def upstream_bodies(fake: FakeUpstream) -> list[tuple[str, int, bytes]]:
    return [(r.account, r.status, r.body) for r in fake.requests if r.path == "/v1/messages"]


@pytest.mark.parametrize("form", [json_user_id, legacy_user_id])
def test_each_attempt_carries_its_accounts_uuid_and_nothing_else_changes(tmp_path, form):
    accounts = [oauth_account("alice", uuid=ALICE_UUID), oauth_account("bob", uuid=BOB_UUID)]
    with FakeUpstream(accounts=accounts) as fake:
        fake.set_usage("alice", five_hour=1.0)  # alice answers 429: a transparent failover to bob
        cfg = write_config(tmp_path, fake.url, accounts)
        flows_file = tmp_path / "flows.mitm"
        with start_proxy(cfg, ["-w", str(flows_file)]) as proxy:
            assert call(proxy.url, "POST", "/teamclaude/switch", {"account": "alice"})[0] == 200
            status, _, answer = post(proxy.url, claude_code_body(form(FOREIGN)))
            assert status == 200, answer
        assert upstream_bodies(fake) == [
            ("alice", 429, claude_code_body(form(ALICE_UUID))),
            ("bob", 200, claude_code_body(form(BOB_UUID))),
        ]
    with flows_file.open("rb") as handle:
        [flow] = [f for f in FlowReader(handle).stream() if f.request.path == "/v1/messages"
                  and "failed_attempt_of" not in f.metadata["teamclaude"]]
    assert flow.metadata["teamclaude"]["user_id_for"] == "bob"
    assert flow.request.content == claude_code_body(form(BOB_UUID))


def test_a_missing_uuid_is_looked_up_once_and_recorded(tmp_path):
    alice = oauth_account("alice")
    with FakeUpstream(accounts=[alice]) as fake:
        cfg = write_config(tmp_path, fake.url, [alice], oauth_profile_url=f"{fake.url}/api/oauth/profile")
        entries = yaml.safe_load(cfg.accounts.read_text())
        del entries["accounts"][0]["id"]  # as if added by hand: the proxy must ask who it is
        cfg.accounts.write_text(yaml.safe_dump(entries))
        with start_proxy(cfg) as proxy:
            for _ in range(2):
                assert post(proxy.url, claude_code_body(json_user_id(FOREIGN)))[0] == 200
        assert [r.account for r in fake.requests if r.path == "/api/oauth/profile"] == ["alice"]
        assert [body for _, _, body in upstream_bodies(fake)] == [claude_code_body(json_user_id(alice.uuid))] * 2
        written = yaml.safe_load(cfg.accounts.read_text())["accounts"][0]
        assert written["name"] == "alice" and written["id"] == alice.uuid


def test_an_api_key_account_sends_the_clients_user_id(tmp_path):
    key = apikey_account("ci-key")
    with FakeUpstream(accounts=[key]) as fake:
        cfg = write_config(tmp_path, fake.url, [key], oauth_profile_url=f"{fake.url}/api/oauth/profile")
        with start_proxy(cfg) as proxy:
            assert post(proxy.url, claude_code_body(legacy_user_id(FOREIGN)))[0] == 200
        assert upstream_bodies(fake) == [("ci-key", 200, claude_code_body(legacy_user_id(FOREIGN)))]
        assert [r for r in fake.requests if r.path == "/api/oauth/profile"] == []


def test_an_unknown_uuid_leaves_the_body_and_says_so(tmp_path):
    alice = oauth_account("alice")
    with FakeUpstream(accounts=[alice]) as fake:
        # The profile endpoint is somewhere that does not answer.
        cfg = write_config(tmp_path, fake.url, [alice], oauth_profile_url=f"{fake.url}/nowhere")
        entries = yaml.safe_load(cfg.accounts.read_text())
        del entries["accounts"][0]["id"]
        cfg.accounts.write_text(yaml.safe_dump(entries))
        with start_proxy(cfg) as proxy:
            assert post(proxy.url, claude_code_body(json_user_id(FOREIGN)))[0] == 200
            notes = [line["note"] for line in proxy_status(proxy)["activity"] if line.get("path") == "/v1/messages"]
        assert upstream_bodies(fake)[0][2] == claude_code_body(json_user_id(FOREIGN))
        assert "metadata.user_id sent as the client wrote it" in notes[0] and "alice" in notes[0]


def use(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"command": "ls"}}


def result(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}


def conversation(*messages: dict[str, Any]) -> bytes:
    return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64,
                       "messages": [{"role": "user", "content": "hi"}, *messages]}, indent=1).encode()


def test_unpaired_tool_blocks_are_removed_and_a_well_formed_body_is_untouched(tmp_path):
    alice = oauth_account("alice", uuid=ALICE_UUID)
    well_formed = conversation({"role": "assistant", "content": [use("t1")]},
                               {"role": "user", "content": [result("t1"), {"type": "text", "text": "go on"}]})
    orphan_use = conversation({"role": "assistant", "content": [{"type": "text", "text": "running"}, use("t1")]},
                              {"role": "user", "content": "[Request interrupted by user]"})
    orphan_result = conversation({"role": "assistant", "content": "nothing"},
                                 {"role": "user", "content": [result("gone"), {"type": "text", "text": "next"}]})
    with FakeUpstream(accounts=[alice]) as fake:
        cfg = write_config(tmp_path, fake.url, [alice])
        with start_proxy(cfg) as proxy:
            for body in (well_formed, orphan_use, orphan_result):
                status, _, answer = post(proxy.url, body)
                assert status == 200, answer
            notes = [line["note"] for line in proxy_status(proxy)["activity"] if line.get("path") == "/v1/messages"]
        sent = [body for _, _, body in upstream_bodies(fake)]
    assert sent[0] == well_formed
    assert json.loads(sent[1])["messages"][1:] == [{"role": "assistant", "content": [{"type": "text", "text": "running"}]},
                                                  {"role": "user", "content": "[Request interrupted by user]"}]
    assert json.loads(sent[2])["messages"][2] == {"role": "user", "content": [{"type": "text", "text": "next"}]}
    assert notes[0] == ""
    assert "removed tool_use t1 from messages[1]" in notes[1]
    assert "removed tool_result for gone from messages[2]" in notes[2]


def raw_request(proxy_url: str, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, bytes]:
    host, port = proxy_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_preconnects_and_telemetry_never_reach_upstream_unless_passed(tmp_path):
    alice = oauth_account("alice")
    with FakeUpstream(accounts=[alice]) as fake:
        cfg = write_config(tmp_path, fake.url, [alice], telemetry="answer")
        flows_file = tmp_path / "flows.mitm"
        batch = json.dumps({"events": [{"event_type": "ClaudeCodeInternalEvent"}]}).encode()
        telemetry_headers = {"content-type": "application/json", "x-teamclaude-key": PROXY_KEY}
        with start_proxy(cfg, ["-w", str(flows_file)]) as proxy:
            assert raw_request(proxy.url, "HEAD", "/") == (200, b"")
            assert raw_request(proxy.url, "HEAD", "/api/hello") == (200, b"")
            assert raw_request(proxy.url, "POST", "/api/event_logging/batch", telemetry_headers, batch) == (200, b"{}")
            cfg.config.write_text(cfg.config.read_text().replace("telemetry: answer", "telemetry: drop"))
            assert call(proxy.url, "POST", "/teamclaude/reload")[0] == 200
            with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
                raw_request(proxy.url, "POST", "/api/event_logging/batch", telemetry_headers, batch)
            assert fake.requests == []
            cfg.config.write_text(cfg.config.read_text().replace("telemetry: drop", "telemetry: pass"))
            assert call(proxy.url, "POST", "/teamclaude/reload")[0] == 200
            raw_request(proxy.url, "POST", "/api/event_logging/batch", telemetry_headers, batch)
            [passed] = fake.requests  # routed like any request, on a pooled account
            assert passed.path == "/api/event_logging/batch"
            assert {k.lower(): v for k, v in passed.headers}["authorization"] == f"Bearer {alice.access_token}"
    with flows_file.open("rb") as handle:
        flows = {(f.request.method, f.request.path, f.metadata["teamclaude"]["kind"], f.marked)
                 for f in FlowReader(handle).stream() if f.request.path != "/teamclaude/reload"}
    assert ("HEAD", "/", "local", "") in flows and ("HEAD", "/api/hello", "local", "") in flows
    assert ("POST", "/api/event_logging/batch", "local", "") in flows
