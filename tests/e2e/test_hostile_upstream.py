"""A hostile upstream through the real proxy: malformed SSE and garbled rate-limit headers
reach the client byte for byte, and the proxy keeps serving and writing its state."""

from __future__ import annotations

import http.client
import json

from teamclaude.statefile import read_state
from tests.e2e.cli_runner import wait_until
from tests.e2e.harness import (
    PROXY_KEY,
    call,
    message_body,
    oauth_account,
    start_proxy,
    write_config,
)
from tests.e2e.scripted import ProgrammableUpstream, ScriptedUpstream

MALFORMED_SSE = [
    b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":-5,",
    b"\"output_tokens\":1e999}}}\n\nevent: message_delta\r\ndata: [[[[[[\r\n\r\n",
    b"data: \xff\xfe\x00 not utf-8\n\n: comment only\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",",
    b"\"usage\":{\"output_tokens\":\"many\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}",  # no final separator
]
GARBLED_HEADERS = [
    ("content-type", "text/event-stream"),
    ("anthropic-ratelimit-unified-5h-utilization", "nan"),
    ("anthropic-ratelimit-unified-5h-reset", "1e309"),
    ("anthropic-ratelimit-unified-7d-utilization", "-0.5"),
    ("anthropic-ratelimit-unified-7d-reset", "99999999999999999999999"),
    ("anthropic-ratelimit-unified-7d-status", "r\u00e9jected"),
    ("anthropic-ratelimit-unified-status", ""),
    ("anthropic-ratelimit-unified-x!~y-utilization", "0.5"),
    ("retry-after", "soon"),
]


def test_malformed_sse_and_garbled_headers_reach_the_client_unchanged(tmp_path):
    with ScriptedUpstream(MALFORMED_SSE, GARBLED_HEADERS, interval_s=0.05) as upstream:
        cfg = write_config(tmp_path, upstream.url, [oauth_account("alice")])
        with start_proxy(cfg) as proxy:
            for _ in range(2):
                connection = http.client.HTTPConnection(proxy.host, proxy.port, timeout=30)
                connection.request("POST", "/v1/messages", body=json.dumps(message_body(stream=True)),
                                   headers={"x-teamclaude-key": PROXY_KEY, "content-type": "application/json"})
                response = connection.getresponse()
                body = response.read()
                received = [(name.lower(), value) for name, value in response.getheaders()]
                connection.close()
                assert response.status == 200
                assert body == b"".join(MALFORMED_SSE)
                for header in GARBLED_HEADERS:
                    assert header in received
            status = json.loads(call(proxy.url, "GET", "/teamclaude/status")[2])
            [alice] = status["accounts"]
            assert alice["inflight"] == 0 and alice["bench_until"] is None
            state = wait_until(lambda: (read_state(cfg.state) or {}).get("totals", {}).get("requests") == 2 and
                               read_state(cfg.state), "the state file to count both requests")
            assert state["accounts"][0]["name"] == "alice"


EARLY_HINTS_THEN_ANSWER = [
    b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\ncontent-type: text/event-stream\r\n\r\n",
    b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{"ok":42}',
]


def test_an_interim_answer_is_not_relayed_as_the_answer(tmp_path):
    """Issue 12 (wire fuzz): mitmproxy takes an upstream's 103 (or 100) for the final response
    and drops what follows; the client got a bare `103` and a closed connection. Now it is
    no answer: another account serves the request (its own client skips interim heads)."""
    alice, bob = oauth_account("alice"), oauth_account("bob")
    with ProgrammableUpstream(EARLY_HINTS_THEN_ANSWER) as upstream:
        cfg = write_config(tmp_path, upstream.url, [alice, bob], hold_budget_s=0)
        with start_proxy(cfg) as proxy:
            code, _, body = call(proxy.url, "POST", "/v1/messages", message_body())
            status = json.loads(call(proxy.url, "GET", "/teamclaude/status")[2])
    assert (code, body) == (200, b'{"ok":42}')
    assert len(upstream.requests) == 2
    assert [a["inflight"] for a in status["accounts"]] == [0, 0]


def test_an_interim_answer_on_a_pass_through_path_becomes_a_502(tmp_path):
    """The same on a pass-through path (the client's own credentials, no other account to
    ask): a clear 502 rather than a bare `103` and a closed connection."""
    with ProgrammableUpstream(EARLY_HINTS_THEN_ANSWER) as upstream:
        cfg = write_config(tmp_path, upstream.url, [oauth_account("alice")])
        with start_proxy(cfg) as proxy:
            code, _, body = call(proxy.url, "GET", "/api/oauth/profile", key=None,
                                 headers={"authorization": "Bearer the-clients-own-token"})
    assert code == 502 and b"103, not a final HTTP status" in body
