"""The proxy end to end: a real mitmdump with the addon, real clients, real upstreams."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from itertools import pairwise

import anthropic
import pytest
from mitmproxy.io import FlowReader

from teamclaude.fakeupstream import FakeUpstream
from teamclaude.proxyproc import addon_path, mitmproxy_command
from tests.e2e.harness import (
    PROXY_KEY,
    apikey_account,
    call,
    message_body,
    oauth_account,
    proxy_status,
    start_proxy,
    write_config,
)
from tests.e2e.scripted import ScriptedUpstream

RATE_HEADERS = [
    ("anthropic-ratelimit-unified-status", "allowed"),
    ("anthropic-ratelimit-unified-5h-status", "allowed"),
    ("anthropic-ratelimit-unified-5h-utilization", "0.25"),
    ("anthropic-ratelimit-unified-5h-reset", "4102444800"),
    ("anthropic-ratelimit-unified-7d-status", "allowed_warning"),
    ("anthropic-ratelimit-unified-7d-utilization", "0.81"),
    ("anthropic-ratelimit-unified-7d-reset", "4102444800"),
    ("anthropic-ratelimit-unified-representative-claim", "seven_day"),
]

SSE_EVENTS = [
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":1}}}\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}\n\n',
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
]


def awkward_chunks() -> list[bytes]:
    """The SSE bytes cut so events straddle chunk boundaries."""
    data = b"".join(SSE_EVENTS)
    cuts = [0, 37, 300, 301, 420, 610, len(data)]
    return [data[a:b] for a, b in pairwise(cuts)]


@pytest.fixture()
def fake():
    with FakeUpstream(accounts=[oauth_account("alice"), apikey_account("ci-key")]) as upstream:
        yield upstream


def test_sdk_streaming_and_json_through_oauth_and_api_key_accounts(tmp_path, fake):
    for name, account in (("oauth", fake.account("alice")), ("apikey", fake.account("ci-key"))):
        cfg = write_config(tmp_path / name, fake.url, [account])
        with start_proxy(cfg) as proxy:
            client = anthropic.Anthropic(base_url=proxy.url, api_key=PROXY_KEY, max_retries=0)
            message = client.messages.create(model="claude-sonnet-4-5", max_tokens=32,
                                              messages=[{"role": "user", "content": "hi"}])
            assert message.content[0].type == "text" and message.usage.output_tokens > 0
            with client.messages.stream(model="claude-sonnet-4-5", max_tokens=32,
                                        messages=[{"role": "user", "content": "hi"}]) as stream:
                text = "".join(stream.text_stream)
                final = stream.get_final_message()
            assert text and final.usage.output_tokens > 0
        served = [r.account for r in fake.requests if r.path == "/v1/messages"]
        assert served[-2:] == [account.name, account.name]


def test_stream_is_not_buffered_and_byte_identical(tmp_path):
    chunks = awkward_chunks()
    headers = [("content-type", "text/event-stream; charset=utf-8"), *RATE_HEADERS]
    with ScriptedUpstream(chunks, headers, interval_s=0.2) as upstream:
        cfg = write_config(tmp_path, upstream.url, [oauth_account("alice")])
        with start_proxy(cfg) as proxy:
            connection = http.client.HTTPConnection(proxy.host, proxy.port, timeout=30)
            connection.request("POST", "/v1/messages?beta=true", body=json.dumps(message_body(stream=True)),
                               headers={"x-teamclaude-key": PROXY_KEY, "content-type": "application/json"})
            response = connection.getresponse()
            received, arrivals = [], []
            while piece := response.read1(65536):
                received.append(piece)
                arrivals.append(time.monotonic())
            connection.close()
    assert b"".join(received) == b"".join(chunks)
    # Six upstream gaps of 200 ms: a buffering proxy would deliver everything at once.
    assert arrivals[-1] - arrivals[0] >= 0.8
    assert len(arrivals) >= 5
    for rate_name, rate_value in RATE_HEADERS:
        assert response.getheader(rate_name) == rate_value


def test_upstream_sees_account_credentials_only(tmp_path):
    headers = [("content-type", "application/json"), *RATE_HEADERS]
    body = [b'{"type":"message","usage":{"input_tokens":1,"output_tokens":1}}']
    betas = "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"
    with ScriptedUpstream(body, headers) as upstream:
        for account in (oauth_account("alice"), apikey_account("ci-key")):
            cfg = write_config(tmp_path / account.name, upstream.url, [account])
            with start_proxy(cfg) as proxy:
                for how in ({"x-teamclaude-key": PROXY_KEY, "authorization": "Bearer client-own-token"},
                            {"authorization": f"Bearer {PROXY_KEY}"},
                            {"x-api-key": PROXY_KEY}):
                    status, response_headers, _ = call(
                        proxy.url, "POST", "/v1/messages", message_body(),
                        headers={**how, "anthropic-beta": f"{betas},oauth-2025-04-20" if account.api_key else betas},
                        key=None,
                    )
                    assert status == 200
                    assert [(n, response_headers[n]) for n, _ in RATE_HEADERS] == RATE_HEADERS
                    seen = {k.lower(): v for k, v in upstream.requests[-1][1]}
                    assert PROXY_KEY not in json.dumps(seen) and "client-own-token" not in json.dumps(seen)
                    assert "x-teamclaude-key" not in seen
                    if account.api_key:
                        assert "authorization" not in seen
                        assert seen["x-api-key"] == account.api_key
                        assert seen["anthropic-beta"] == betas
                    else:
                        assert "x-api-key" not in seen
                        assert seen["authorization"] == f"Bearer {account.access_token}"
                        assert seen["anthropic-beta"] == f"oauth-2025-04-20,{betas}"
                    assert seen["anthropic-version"] == "2023-06-01"


def test_missing_or_wrong_key_gets_anthropic_shaped_401(tmp_path, fake):
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    with start_proxy(cfg) as proxy:
        for key in (None, "tc-wrong"):
            status, _, body = call(proxy.url, "POST", "/v1/messages", message_body(), key=key)
            document = json.loads(body)
            assert status == 401
            assert document["type"] == "error" and document["error"]["type"] == "authentication_error"
            assert "teamclaude env" in document["error"]["message"]
        status, _, _ = call(proxy.url, "POST", "/v1/messages", message_body(),
                            headers={"origin": "https://evil.example"})
        assert status == 403
        status, _, body = call(proxy.url, "GET", "/teamclaude/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert call(proxy.url, "GET", "/teamclaude/health", key=None)[0] == 401
    assert not [r for r in fake.requests if r.path == "/v1/messages"]


def test_pass_through_paths_keep_the_clients_identity_and_drop_the_proxy_key(tmp_path, fake):
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    with start_proxy(cfg) as proxy:
        status, _, body = call(proxy.url, "POST", "/v1/oauth/token",
                               {"grant_type": "refresh_token", "refresh_token": "client-own-refresh",
                                "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e"}, key=None)
        assert status == 400 and json.loads(body)["error"] == "invalid_grant"
        # What `teamclaude run` sends: the proxy key header beside Claude Code's own token.
        call(proxy.url, "GET", "/api/oauth/profile", headers={"authorization": "Bearer client-own-oauth"})
        # What `ANTHROPIC_AUTH_TOKEN=<proxy key>` sends: the key as the bearer token.
        call(proxy.url, "GET", "/api/oauth/profile", headers={"authorization": f"Bearer {PROXY_KEY}"}, key=None)
    forwarded = [r for r in fake.requests if r.path == "/v1/oauth/token"][-1]
    assert b"client-own-refresh" in forwarded.body
    assert "authorization" not in {k.lower() for k, _ in forwarded.headers}
    own, keyed = [dict((k.lower(), v) for k, v in r.headers) for r in fake.requests if r.path == "/api/oauth/profile"]
    assert own["authorization"] == "Bearer client-own-oauth" and "x-teamclaude-key" not in own
    assert "authorization" not in keyed
    assert not [r for r in fake.requests if PROXY_KEY in json.dumps(r.headers)]


def test_paths_are_decided_normalized_and_forwarded_as_decided(tmp_path, fake):
    """Dot segments (also escaped), `//` and backslashes cannot turn a pooled path into a
    pass-through one; every Bearer form accepted as the key is also stripped (issue 12, 11)."""
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    with start_proxy(cfg) as proxy:
        for path in ("/api/oauth/../../v1/messages", "/api/oauth/%2e%2e/%2E%2e/v1/messages",
                     "/v1/code/../messages", "//v1/messages"):
            assert call(proxy.url, "POST", path, message_body(), key=None)[0] == 401, path
        for path in ("/api/oauth\\..\\..\\v1/messages", "/api/oauth/..%2f..%2fv1/messages", "/../v1/messages"):
            status, _, body = call(proxy.url, "POST", path, message_body(), key=None)
            assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error", path
        assert call(proxy.url, "POST", "/v1/code/../messages", message_body())[0] == 200
        for value in (f"Bearer  {PROXY_KEY}", f"Bearer\t{PROXY_KEY}", f"bearer {PROXY_KEY} "):
            call(proxy.url, "GET", "/api/oauth/profile", headers={"authorization": value}, key=None)
        for body in (b'"a"', b"[]", b"null"):
            assert call(proxy.url, "POST", "/teamclaude/switch", body)[0] == 400
    assert [r.path for r in fake.requests if "messages" in r.path] == ["/v1/messages"]
    assert len([r for r in fake.requests if r.path == "/api/oauth/profile"]) == 3
    assert not [r for r in fake.requests if PROXY_KEY in json.dumps(r.headers)]


def test_saved_flows_hold_no_secret(tmp_path, fake):
    alice = fake.account("alice")
    cfg = write_config(tmp_path, fake.url, [alice])
    flows_file = tmp_path / "flows.mitm"
    with start_proxy(cfg, ["-w", str(flows_file)]) as proxy:
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
        assert call(proxy.url, "POST", "/v1/messages", message_body(stream=True))[0] == 200
    secrets = [alice.access_token, alice.refresh_token, PROXY_KEY]
    raw = flows_file.read_bytes()
    assert not [s for s in secrets if s.encode() in raw]
    with flows_file.open("rb") as handle:
        flows = list(FlowReader(handle).stream())
    assert len(flows) == 2
    for flow in flows:
        assert flow.request.headers["authorization"] == "<account:alice>"
        assert flow.metadata["teamclaude"]["account"] == "alice"
        assert flow.comment.startswith("alice")
    assert b"message_stop" in flows[1].response.raw_content


@pytest.mark.parametrize("text, expected", [
    ("prot: 3456\n", "line 1: unknown key 'prot'"),
    ("port: 3456\nmax_inflight_per_account: many\n", "line 2: 'max_inflight_per_account' must be an integer"),
    ("port: [3456\n", "not valid YAML"),
])
def test_bad_settings_give_one_clear_message_and_nonzero_exit(tmp_path, text, expected):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    command = [*mitmproxy_command(), "-s", str(addon_path()), "--set", f"teamclaude_config={config}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert expected in output
    assert "Traceback" not in output


def test_settings_hot_reload_reports_a_bad_edit_and_keeps_the_last_good(tmp_path, fake):
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    good = cfg.config.read_text()
    with start_proxy(cfg) as proxy:
        cfg.config.write_text(good + "max_inflight_per_acount: 3\n")
        proxy_info = _wait_for_proxy_info(proxy, lambda info: info["config_error"])
        assert "line" in proxy_info["config_error"] and "max_inflight_per_acount" in proxy_info["config_error"]
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
        cfg.config.write_text(good + "max_inflight_per_account: 3\n")
        _wait_for_proxy_info(proxy, lambda info: info["config_error"] is None)
        alice = proxy_status(proxy)["accounts"][0]
        assert alice["inflight_cap"] == 3


def _wait_for_proxy_info(proxy, predicate, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = proxy_status(proxy)["proxy"]
        if predicate(info) or time.monotonic() > deadline:
            assert predicate(info), info
            return info
        time.sleep(0.1)
