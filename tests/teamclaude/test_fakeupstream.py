"""The fake Anthropic upstream behaves like the real API where the proxy can tell."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from teamclaude.fakeupstream import FakeAccount, FakeUpstream, demo_accounts
from tests.child_output import Lines

OAUTH_HEADERS = {"anthropic-beta": "oauth-2025-04-20", "anthropic-version": "2023-06-01"}
CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
U = "anthropic-ratelimit-unified-"


def oauth(name: str, **kwargs: object) -> FakeAccount:
    return FakeAccount(name=name, access_token=f"at-{name}", refresh_token=f"rt-{name}", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(
        [
            oauth("ada", five_hour_budget=1000, seven_day_budget=10_000),
            oauth("bob", model_windows={"7d_sonnet": 1000, "7d_oi": 1000}),
            FakeAccount(name="key", api_key="sk-ant-api03-test"),
        ]
    )
    with upstream:
        yield upstream


def body(model: str = "claude-sonnet-4-5", stream: bool = False, **extra: object) -> bytes:
    payload = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}], "stream": stream}
    payload.update(extra)
    return json.dumps(payload).encode()


class Client:
    """A plain http.client connection with the helpers tests need."""

    def __init__(self, fake: FakeUpstream) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)

    def call(
        self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path, data, headers or {})
        response = self.conn.getresponse()
        payload = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload

    def messages(self, account: str = "ada", data: bytes | None = None, **headers: str) -> tuple[int, dict[str, str], bytes]:
        all_headers = {"authorization": f"Bearer at-{account}", **OAUTH_HEADERS, **headers}
        return self.call("POST", "/v1/messages?beta=true", data or body(), all_headers)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def client(fake: FakeUpstream) -> Iterator[Client]:
    c = Client(fake)
    yield c
    c.close()


def error_of(payload: bytes) -> dict[str, object]:
    parsed = json.loads(payload)
    assert parsed["type"] == "error"
    assert parsed["request_id"].startswith("req_")
    return parsed["error"]


# ------------------------------------------------------------------ headers and quota


def test_unified_headers_follow_budget_and_usage(fake: FakeUpstream, client: Client) -> None:
    fake.set_usage("ada", five_hour=0.31, seven_day=0.5)
    reset5 = time.time() + 3600
    fake.set_reset("ada", five_hour=reset5)
    status, headers, payload = client.messages()
    assert status == 200
    assert headers[U + "5h-utilization"] == "0.31"
    assert headers[U + "7d-utilization"] == "0.5"
    assert headers[U + "5h-status"] == headers[U + "7d-status"] == headers[U + "status"] == "allowed"
    assert headers[U + "5h-reset"] == str(int(reset5))
    assert headers[U + "representative-claim"] == "seven_day"
    assert headers[U + "reset"] == headers[U + "7d-reset"]
    assert headers[U + "fallback-percentage"] == "0.5"
    assert headers[U + "overage-status"] == "rejected"
    assert headers[U + "overage-disabled-reason"] == "org_level_disabled"
    assert headers["request-id"].startswith("req_")
    assert headers["anthropic-organization-id"] == fake.account("ada").org_uuid
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(payload)
    message = json.loads(payload)
    assert message["type"] == "message" and message["id"].startswith("msg_")
    assert message["role"] == "assistant" and message["stop_reason"] == "end_turn"
    assert message["stop_sequence"] is None


def test_usage_burns_into_windows_after_the_answer(fake: FakeUpstream, client: Client) -> None:
    data = body()
    _, headers, payload = client.messages(data=data)
    usage = json.loads(payload)["usage"]
    assert usage["input_tokens"] == len(data) // 4
    assert usage["output_tokens"] == 15
    assert headers[U + "5h-utilization"] == "0.0"
    burn = usage["input_tokens"] + usage["output_tokens"]
    acct = fake.account("ada")
    assert acct.five_hour_used == acct.seven_day_used == burn
    _, headers, _ = client.messages(data=data)
    assert headers[U + "5h-utilization"] == str(round(burn / 1000, 4))


@pytest.mark.parametrize(
    ("fraction", "status"),
    [(0.79, "allowed"), (0.8, "allowed_warning"), (0.99, "allowed_warning"), (1.0, "rejected")],
)
def test_window_status_thresholds(fake: FakeUpstream, client: Client, fraction: float, status: str) -> None:
    fake.set_usage("ada", five_hour=fraction)
    code, headers, _ = client.messages()
    assert headers[U + "5h-status"] == status
    assert headers[U + "status"] == status
    assert code == (429 if status == "rejected" else 200)


def test_rejected_window_answers_429_with_retry_after(fake: FakeUpstream, client: Client) -> None:
    reset = time.time() + 7200
    fake.set_usage("ada", seven_day=1.2)
    fake.set_reset("ada", seven_day=reset)
    status, headers, payload = client.messages()
    assert status == 429
    assert error_of(payload)["type"] == "rate_limit_error"
    assert headers[U + "7d-status"] == "rejected"
    assert headers[U + "status"] == "rejected"
    assert headers[U + "representative-claim"] == "seven_day"
    assert abs(int(headers["retry-after"]) - 7200) <= 2
    assert fake.account("ada").seven_day_used == 12_000  # a rejected request burns nothing


def test_model_windows_bind_only_their_family(fake: FakeUpstream, client: Client) -> None:
    fake.set_usage("bob", **{"7d_sonnet": 1.0, "7d_oi": 0.85})
    status, headers, _ = client.messages("bob", body("claude-sonnet-4-5"))
    assert status == 429
    assert headers[U + "7d_sonnet-status"] == "rejected"
    assert headers[U + "representative-claim"] == "seven_day_sonnet"
    status, headers, _ = client.messages("bob", body("claude-opus-4-5"))
    assert status == 200
    assert headers[U + "7d_oi-status"] == "allowed_warning"
    assert headers[U + "7d_oi-utilization"] == "0.85"
    assert headers[U + "representative-claim"] == "seven_day_opus"
    assert headers[U + "status"] == "allowed_warning"
    before = fake.account("bob").model_windows_used["7d_oi"]
    status, headers, _ = client.messages("bob", body("claude-haiku-4-5"))
    assert status == 200 and headers[U + "status"] == "allowed"
    assert fake.account("bob").model_windows_used["7d_oi"] == before


def test_passed_reset_clears_the_window(fake: FakeUpstream, client: Client) -> None:
    fake.set_usage("ada", five_hour=0.9)
    fake.set_reset("ada", five_hour=time.time() - 1)
    _, headers, _ = client.messages()
    assert headers[U + "5h-utilization"] == "0.0"
    assert int(headers[U + "5h-reset"]) > time.time() + 4 * 3600


def test_api_key_headers(fake: FakeUpstream, client: Client) -> None:
    status, headers, _ = client.call("POST", "/v1/messages", body(), {"x-api-key": "sk-ant-api03-test"})
    assert status == 200
    assert not [name for name in headers if name.startswith(U)]
    assert headers["anthropic-ratelimit-requests-limit"] == "4000"
    assert headers["anthropic-ratelimit-requests-remaining"] == "4000"
    for bucket in ("requests", "tokens", "input-tokens", "output-tokens"):
        assert headers[f"anthropic-ratelimit-{bucket}-reset"].endswith("Z")
        time.strptime(headers[f"anthropic-ratelimit-{bucket}-reset"], "%Y-%m-%dT%H:%M:%SZ")
    _, headers, _ = client.call("POST", "/v1/messages", body(), {"x-api-key": "sk-ant-api03-test"})
    assert headers["anthropic-ratelimit-requests-remaining"] == "3999"


# ------------------------------------------------------------------ authentication


def test_credentials_refused_like_the_real_api(fake: FakeUpstream, client: Client) -> None:
    status, headers, payload = client.call("POST", "/v1/messages", body(), {"x-api-key": "wrong"})
    assert status == 401 and error_of(payload) == {"type": "authentication_error", "message": "invalid x-api-key"}
    assert not [name for name in headers if name.startswith("anthropic-ratelimit")]
    status, _, payload = client.call("POST", "/v1/messages", body(), {"authorization": "Bearer at-ada"})
    assert status == 401
    assert error_of(payload)["message"] == "OAuth authentication is currently not supported."
    status, _, payload = client.call("POST", "/v1/messages", body(), {})
    assert status == 401 and error_of(payload)["type"] == "authentication_error"
    assert [r.account for r in fake.requests] == [None, "ada", None]
    assert [r.status for r in fake.requests] == [401, 401, 401]


def test_expired_access_token(fake: FakeUpstream, client: Client) -> None:
    fake.expire_access_token("ada")
    status, _, payload = client.messages()
    assert status == 401
    assert "OAuth token has expired" in error_of(payload)["message"]


def test_issued_tokens_expire_after_ttl() -> None:
    now = [1_000_000.0]
    with FakeUpstream([oauth("ada")], token_ttl_s=100, clock=lambda: now[0]) as fake:
        client = Client(fake)
        status, _, payload = client.call(
            "POST", "/v1/oauth/token", json.dumps({"grant_type": "refresh_token", "refresh_token": "rt-ada", "client_id": CLIENT_ID}).encode()
        )
        assert status == 200
        token = json.loads(payload)["access_token"]
        headers = {"authorization": f"Bearer {token}", **OAUTH_HEADERS}
        assert client.call("POST", "/v1/messages", body(), headers)[0] == 200
        now[0] += 101
        status, _, payload = client.call("POST", "/v1/messages", body(), headers)
        assert status == 401 and "expired" in error_of(payload)["message"]
        client.close()


# ------------------------------------------------------------------ streaming


def recv_some(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise EOFError("connection closed cleanly")
    return data


def read_events(sock: socket.socket) -> Iterator[tuple[float, str, dict[str, object]]]:
    """Parse a chunked SSE response off a raw socket: (arrival time, event, data)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += recv_some(sock)
    head, buffer = buffer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    text = b""
    while True:
        while b"\r\n" not in buffer:
            buffer += recv_some(sock)
        size_line, buffer = buffer.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return
        while len(buffer) < size + 2:
            buffer += recv_some(sock)
        arrived = time.monotonic()
        text += buffer[:size]
        buffer = buffer[size + 2 :]
        while b"\n\n" in text:
            event, text = text.split(b"\n\n", 1)
            name_line, data_line = event.decode().split("\n")
            assert name_line.startswith("event: ") and data_line.startswith("data: ")
            yield arrived, name_line[7:], json.loads(data_line[6:])


def raw_request(fake: FakeUpstream, data: bytes, **headers: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
    lines = [
        "POST /v1/messages?beta=true HTTP/1.1",
        "host: api.anthropic.com",
        "authorization: Bearer at-ada",
        "anthropic-beta: oauth-2025-04-20",
        "content-type: application/json",
        f"content-length: {len(data)}",
        *[f"{k.replace('_', '-')}: {v}" for k, v in headers.items()],
    ]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    return sock


def test_sse_framing_and_chunk_spacing(fake: FakeUpstream) -> None:
    sock = raw_request(fake, body(stream=True), x_fake_chunks="4", x_fake_chunk_interval_ms="60")
    events = list(read_events(sock))
    sock.close()
    names = [name for _, name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for _, name, data in events:
        assert data["type"] == name
    start = events[0][2]["message"]
    assert start["usage"]["output_tokens"] == 1 and start["usage"]["input_tokens"] > 0
    assert events[-2][2]["usage"] == {"output_tokens": 12}
    assert events[-2][2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    gaps = [b[0] - a[0] for a, b in pairwise(events)]
    assert all(0.04 <= gap <= 0.5 for gap in gaps), gaps


def test_stream_output_text_and_headers(fake: FakeUpstream, client: Client) -> None:
    status, headers, payload = client.messages(data=body(stream=True), **{"x-fake-output-text": "abcdef", "x-fake-chunks": "3"})
    assert status == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["transfer-encoding"] == "chunked"
    assert headers[U + "5h-status"] == "allowed"
    deltas = [
        json.loads(line[6:])["delta"]["text"]
        for line in payload.decode().split("\n")
        if line.startswith("data: ") and "text_delta" in line
    ]
    assert deltas == ["ab", "cd", "ef"]
    assert payload.startswith(b"event: message_start\ndata: ")
    assert payload.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_prompt_cache_writes_then_reads(fake: FakeUpstream, client: Client) -> None:
    system = [{"type": "text", "text": "You are terse." * 50, "cache_control": {"type": "ephemeral"}}]
    data = body(system=system)
    first = json.loads(client.messages(data=data)[2])["usage"]
    second = json.loads(client.messages(data=data)[2])["usage"]
    total = len(data) // 4
    assert first["cache_creation_input_tokens"] == total * 3 // 4
    assert first["cache_creation"] == {"ephemeral_5m_input_tokens": total * 3 // 4, "ephemeral_1h_input_tokens": 0}
    assert first["cache_read_input_tokens"] == 0
    assert second["cache_read_input_tokens"] == total * 3 // 4
    assert second["cache_creation_input_tokens"] == 0
    assert first["input_tokens"] == second["input_tokens"] == total - total * 3 // 4
    other = json.loads(client.messages("bob", data=data)[2])["usage"]
    assert other["cache_creation_input_tokens"] == total * 3 // 4  # caches are per account


def test_count_tokens(fake: FakeUpstream, client: Client) -> None:
    data = json.dumps({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x" * 400}]}).encode()
    status, headers, payload = client.call(
        "POST", "/v1/messages/count_tokens", data, {"authorization": "Bearer at-ada", **OAUTH_HEADERS}
    )
    assert status == 200 and json.loads(payload) == {"input_tokens": len(data) // 4}
    assert headers[U + "5h-status"] == "allowed"
    assert fake.account("ada").five_hour_used == 0


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("kind", "status", "error_type", "ratelimit_headers"),
    [
        ("401", 401, "authentication_error", False),
        ("403", 403, "permission_error", True),
        ("500", 500, "api_error", True),
        ("502", 502, "api_error", True),
        ("503", 503, "api_error", True),
        ("529", 529, "overloaded_error", True),
        ("429_bare", 429, "rate_limit_error", False),
    ],
)
def test_error_faults(
    fake: FakeUpstream, client: Client, kind: str, status: int, error_type: str, ratelimit_headers: bool
) -> None:
    fake.inject("ada", kind, count=2)
    for _ in range(2):
        code, headers, payload = client.messages()
        assert code == status
        assert error_of(payload)["type"] == error_type
        assert (U + "5h-status" in headers) is ratelimit_headers
        assert "retry-after" not in headers
    assert client.messages()[0] == 200


def test_fault_scoped_to_account(fake: FakeUpstream, client: Client) -> None:
    fake.inject("bob", "500")
    assert client.messages("ada")[0] == 200
    assert client.messages("bob")[0] == 500
    fake.inject(None, "529")
    assert client.messages("ada")[0] == 529
    fake.inject(None, "500", count=5)
    fake.clear_faults()
    assert client.messages("bob")[0] == 200


def test_429_window_fault(fake: FakeUpstream, client: Client) -> None:
    reset = time.time() + 600
    fake.set_reset("ada", five_hour=reset)
    fake.inject("ada", "429_window", window="5h")
    status, headers, payload = client.messages()
    assert status == 429 and error_of(payload)["type"] == "rate_limit_error"
    assert headers[U + "5h-status"] == "rejected"
    assert headers[U + "7d-status"] == "allowed"
    assert headers[U + "status"] == "rejected"
    assert headers[U + "representative-claim"] == "five_hour"
    assert headers[U + "reset"] == str(int(reset))
    assert abs(int(headers["retry-after"]) - 600) <= 2
    assert fake.account("ada").five_hour_used == 0  # only the response says so
    fake.inject("bob", "429_window", window="7d_sonnet", retry_after=False)
    status, headers, _ = client.messages("bob")
    assert status == 429 and "retry-after" not in headers
    assert headers[U + "7d_sonnet-status"] == "rejected"
    assert headers[U + "representative-claim"] == "seven_day_sonnet"


def test_429_retry_after_fault(fake: FakeUpstream, client: Client) -> None:
    fake.inject("ada", "429_retry_after", seconds=17)
    status, headers, _ = client.messages()
    assert status == 429 and headers["retry-after"] == "17"
    assert headers[U + "status"] == "allowed"


def test_reset_before_response(fake: FakeUpstream) -> None:
    fake.inject("ada", "reset_before")
    sock = raw_request(fake, body())
    with pytest.raises(ConnectionResetError):
        while sock.recv(65536):
            pass
    sock.close()
    assert fake.requests[-1].status == 0


def test_reset_midstream(fake: FakeUpstream) -> None:
    fake.inject("ada", "reset_midstream", after_events=4)
    sock = raw_request(fake, body(stream=True))
    names = []
    with pytest.raises(ConnectionResetError):
        for _, name, _ in read_events(sock):
            names.append(name)
    sock.close()
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta"]


def test_slow_headers_and_hang(fake: FakeUpstream, client: Client) -> None:
    fake.inject("ada", "slow_headers", seconds=0.3)
    started = time.monotonic()
    assert client.messages()[0] == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert client.messages(**{"x-fake-delay-headers-ms": "200"})[0] == 200
    assert time.monotonic() - started >= 0.2
    fake.inject("ada", "hang")
    sock = raw_request(fake, body())
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.close()


def test_stop_releases_hung_requests() -> None:
    fake = FakeUpstream([oauth("ada")]).start()
    fake.inject(None, "hang")
    sock = raw_request(fake, body())
    fake.wait_for_requests(1)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 2
    assert sock.recv(1) == b""
    sock.close()


# ------------------------------------------------------------------ OAuth


def token_call(client: Client, **params: str) -> tuple[int, dict[str, object]]:
    status, _, payload = client.call("POST", "/v1/oauth/token", json.dumps({"client_id": CLIENT_ID, **params}).encode(), {"content-type": "application/json"})
    return status, json.loads(payload)


def test_refresh_rotates_single_use(fake: FakeUpstream, client: Client) -> None:
    status, answer = token_call(client, grant_type="refresh_token", refresh_token="rt-ada")
    assert status == 200
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 28800
    assert str(answer["access_token"]).startswith("sk-ant-oat01-")
    assert str(answer["refresh_token"]).startswith("sk-ant-ort01-")
    assert "user:inference" in str(answer["scope"])
    status, again = token_call(client, grant_type="refresh_token", refresh_token="rt-ada")
    assert status == 400 and again == {"error": "invalid_grant", "error_description": "Invalid refresh token"}
    assert fake.account("ada").access_token == answer["access_token"]
    assert fake.account("ada").refresh_token == answer["refresh_token"]
    headers = {"authorization": f"Bearer {answer['access_token']}", **OAUTH_HEADERS}
    assert client.call("POST", "/v1/messages", body(), headers)[0] == 200
    assert client.messages()[0] == 200  # the old access token stays valid until it expires
    assert [(c.grant_type, c.account, c.status) for c in fake.token_calls] == [
        ("refresh_token", "ada", 200),
        ("refresh_token", None, 400),
    ]


def test_refresh_without_new_refresh_token(fake: FakeUpstream, client: Client) -> None:
    fake.omit_refresh_token_in_response = True
    status, answer = token_call(client, grant_type="refresh_token", refresh_token="rt-ada")
    assert status == 200 and "refresh_token" not in answer
    assert token_call(client, grant_type="refresh_token", refresh_token="rt-ada")[0] == 200


def test_token_endpoint_faults_and_bad_client(fake: FakeUpstream, client: Client) -> None:
    fake.inject("ada", "503", path="/v1/oauth/token")
    assert token_call(client, grant_type="refresh_token", refresh_token="rt-ada")[0] == 503
    assert token_call(client, grant_type="refresh_token", refresh_token="rt-ada")[0] == 200
    status, answer = token_call(client, grant_type="refresh_token", refresh_token="rt-bob", client_id="other")
    assert status == 401 and answer["error"] == "invalid_client"


def _hang_up_during_token_delay(fake: FakeUpstream) -> None:
    """Send a refresh for ada, and close the connection while the fake holds the answer."""
    payload = json.dumps({"grant_type": "refresh_token", "refresh_token": "rt-ada", "client_id": CLIENT_ID}).encode()
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/oauth/token HTTP/1.1\r\nHost: fake\r\ncontent-type: application/json\r\n"
                     b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        fake.wait_for_requests(1)
    deadline = time.monotonic() + 10
    while not fake.token_calls:
        assert time.monotonic() < deadline, "the fake did not finish the abandoned token call"
        time.sleep(0.02)


def test_a_delayed_token_answer_whose_client_hung_up_rotates_nothing(fake: FakeUpstream, client: Client) -> None:
    status, _, _ = client.call("POST", "/_fake/token_delay", json.dumps({"account": "ada", "seconds": 30}).encode())
    assert status == 200
    _hang_up_during_token_delay(fake)  # long before the 30 s: the fake noticed the hang-up
    assert fake.token_counts() == {"ada": {"calls": 1, "rotated": 0}}
    assert token_call(client, grant_type="refresh_token", refresh_token="rt-ada")[0] == 200  # still good
    status, _, counts = client.call("GET", "/_fake/token_counts")
    assert json.loads(counts) == {"ada": {"calls": 2, "rotated": 1}}


def test_a_delayed_token_answer_can_commit_for_a_client_that_hung_up(fake: FakeUpstream, client: Client) -> None:
    fake.inject("ada", "token_delay", seconds=0.3, commit_if_gone=True)
    _hang_up_during_token_delay(fake)
    assert fake.token_counts() == {"ada": {"calls": 1, "rotated": 1}}  # the answer was lost
    assert token_call(client, grant_type="refresh_token", refresh_token="rt-ada")[0] == 400


def test_a_delayed_token_answer_is_sent_to_a_waiting_client(fake: FakeUpstream, client: Client) -> None:
    fake.inject("ada", "token_delay", seconds=0.2)
    status, answer = token_call(client, grant_type="refresh_token", refresh_token="rt-ada")
    assert status == 200 and answer["refresh_token"] == fake.account("ada").refresh_token


def pkce() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(b"v" * 40).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def test_authorization_code_with_pkce(fake: FakeUpstream, client: Client) -> None:
    verifier, challenge = pkce()
    redirect = "http://localhost:5555/callback"
    fake.login_as = "bob"
    query = urlencode(
        {
            "code": "true",
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": redirect,
            "scope": "user:inference",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "st4te",
        }
    )
    status, headers, _ = client.call("GET", f"/oauth/authorize?{query}")
    assert status == 302
    location = urlsplit(headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert params["state"] == "st4te"
    grant = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": redirect, "state": "st4te"}
    status, answer = token_call(client, code_verifier=verifier, **grant)
    assert status == 200
    assert answer["account"] == {"uuid": fake.account("bob").uuid, "email_address": None}
    assert answer["organization"] == {"uuid": fake.account("bob").org_uuid, "name": "Fake Org"}
    assert fake.account("bob").access_token == answer["access_token"]
    assert token_call(client, code_verifier=verifier, **grant)[0] == 400  # single use

    code = fake.issue_code("s2", challenge, redirect)
    wrong = {**grant, "code": code, "state": "s2"}
    status, answer = token_call(client, code_verifier="not-the-verifier", **wrong)
    assert status == 400 and answer["error"] == "invalid_grant"


def test_profile(fake: FakeUpstream, client: Client) -> None:
    fake.add_account(oauth("eve", email="eve@example.com", plan="pro", org="Eve Inc"))
    status, _, payload = client.call("GET", "/api/oauth/profile", None, {"authorization": "Bearer at-eve", **OAUTH_HEADERS})
    assert status == 200
    profile = json.loads(payload)
    eve = fake.account("eve")
    assert profile["account"]["uuid"] == eve.uuid
    assert profile["account"]["email"] == "eve@example.com"
    assert profile["account"]["has_claude_pro"] is True and profile["account"]["has_claude_max"] is False
    assert profile["organization"]["uuid"] == eve.org_uuid
    assert profile["organization"]["name"] == "Eve Inc"
    assert profile["organization"]["organization_type"] == "claude_pro"
    assert client.call("GET", "/api/oauth/profile", None, {"authorization": "Bearer nope"})[0] == 401


# ------------------------------------------------------------------ connection, recording, control plane


def test_keep_alive_and_connection_close(fake: FakeUpstream) -> None:
    sock = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
    request = b"GET /nowhere HTTP/1.1\r\nhost: x\r\n\r\n"
    sock.sendall(request + request.replace(b"host: x", b"host: x\r\nconnection: close"))
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    assert received.count(b"HTTP/1.1 404 Not Found") == 2
    assert received.count(b"connection: close") == 1
    assert b'"type":"not_found_error"' in received


def test_two_requests_on_one_connection(fake: FakeUpstream, client: Client) -> None:
    assert client.messages()[0] == 200
    sock_before = client.conn.sock
    assert client.messages(data=body(stream=True))[0] == 200
    assert client.messages()[0] == 200
    assert client.conn.sock is sock_before


def test_recording(fake: FakeUpstream, client: Client) -> None:
    client.messages(**{"x-claude-code-session-id": "s1"})
    recorded = fake.wait_for_requests(1, timeout=1)
    assert len(recorded) == 1
    entry = recorded[0]
    assert (entry.method, entry.path, entry.query, entry.account, entry.status) == ("POST", "/v1/messages", "beta=true", "ada", 200)
    assert ("x-claude-code-session-id", "s1") in entry.headers
    assert json.loads(entry.body)["model"] == "claude-sonnet-4-5"
    with pytest.raises(TimeoutError):
        fake.wait_for_requests(2, timeout=0.05)
    fake.clear_requests()
    assert fake.requests == [] and fake.request_count == 0


def test_record_off_still_counts() -> None:
    with FakeUpstream([oauth("ada")], record=False) as fake:
        client = Client(fake)
        client.messages()
        client.close()
        assert fake.requests == [] and fake.request_count == 1


def test_control_plane(fake: FakeUpstream, client: Client) -> None:
    def post(action: str, data: object) -> int:
        return client.call("POST", f"/_fake/{action}", json.dumps(data).encode(), {"content-type": "application/json"})[0]

    assert post("inject", {"account": "ada", "kind": "429_retry_after", "seconds": 5}) == 200
    status, headers, _ = client.messages()
    assert status == 429 and headers["retry-after"] == "5"
    assert post("set_usage", {"name": "ada", "five_hour": 0.5}) == 200
    assert fake.account("ada").five_hour_used == 500
    assert post("inject", {"kind": "nonsense"}) == 400
    assert post("set_usage", {"name": "nobody", "five_hour": 0.5}) == 400
    status, _, payload = client.call("GET", "/_fake/requests")
    listed = json.loads(payload)
    assert [(r["path"], r["status"], r["account"]) for r in listed] == [("/v1/messages", 429, "ada")]
    status, _, payload = client.call("GET", "/_fake/accounts")
    assert {a["name"] for a in json.loads(payload)} == {"ada", "bob", "key"}
    assert client.call("GET", "/_fake/nothing")[0] == 404


def test_inject_rejects_bad_arguments(fake: FakeUpstream) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        fake.inject(None, "418")
    with pytest.raises(ValueError, match="window"):
        fake.inject(None, "429_window", window="1h")
    with pytest.raises(KeyError, match="nobody"):
        fake.inject("nobody", "500")


def test_invalid_body(fake: FakeUpstream, client: Client) -> None:
    status, headers, payload = client.messages(data=b'{"model": "claude-sonnet-4-5"}')
    assert status == 400 and error_of(payload)["type"] == "invalid_request_error"
    assert U + "5h-status" in headers
    status, _, payload = client.messages(data=b"{not json")
    assert status == 400 and error_of(payload)["type"] == "invalid_request_error"


def test_demo_accounts_positions() -> None:
    now = 1_800_000_000.0
    accounts = {a.name: a for a in demo_accounts(now)}
    assert set(accounts) == {"ada", "grace", "linus"}
    ada, grace, linus = accounts["ada"], accounts["grace"], accounts["linus"]
    assert ada.seven_day_used / ada.seven_day_budget == pytest.approx(0.60)
    assert ada.seven_day_reset == now + 6 * 3600
    assert grace.seven_day_used / grace.seven_day_budget == pytest.approx(0.05)
    assert grace.seven_day_reset == now + 6.5 * 86400
    assert linus.seven_day_used / linus.seven_day_budget == pytest.approx(0.90)
    assert linus.seven_day_reset == now + 3 * 86400
    assert len({a.five_hour_used for a in accounts.values()}) == 3
    for acct in accounts.values():
        assert acct.access_token is not None and acct.access_token.startswith(f"sk-ant-oat01-demo-{acct.name}-")
        assert acct.refresh_token is not None and acct.refresh_token.startswith(f"sk-ant-ort01-demo-{acct.name}-")
        assert 5000 / acct.five_hour_budget >= 0.005  # one demo request moves the 5h bar visibly
    assert demo_accounts(now)[0].access_token == ada.access_token


def test_secrets_stay_out_of_repr() -> None:
    acct = FakeAccount(name="x", access_token="secret-a", refresh_token="secret-r", api_key="secret-k")
    assert "secret" not in repr(acct)


def _terminated(proc: subprocess.Popen[str]) -> int | None:
    """SIGTERM, then its exit status (None: it did not end within 5 s, and was killed)."""
    proc.terminate()
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    finally:
        assert proc.stdout is not None
        proc.stdout.close()


def test_cli_serves_until_terminated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([{"name": "cli", "api_key": "k-cli"}]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "teamclaude.fakeupstream", "--accounts-json", str(accounts)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = Lines(proc.stdout, "the fake").wait_for(lambda line: True, "its address").strip()
        assert line.startswith("FAKE_UPSTREAM_URL=http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/v1/messages", body(), {"x-api-key": "k-cli"})
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        assert _terminated(proc) == 0


# ------------------------------------------------------------------ the official SDK


def test_anthropic_sdk_json_and_stream(fake: FakeUpstream) -> None:
    anthropic = pytest.importorskip("anthropic")
    sdk = anthropic.Anthropic(
        base_url=fake.url, auth_token="at-ada", default_headers={"anthropic-beta": "oauth-2025-04-20"}, max_retries=0
    )
    message = sdk.messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "chunk 0 chunk 1 chunk 2 chunk 3 chunk 4 "
    assert message.usage.output_tokens == 15
    with sdk.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-fake-output-text": "streamed answer", "x-fake-chunks": "3"},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "streamed answer"
    assert final.usage.output_tokens == 9 and final.usage.input_tokens > 0
    fake.inject("ada", "429_window", window="7d")
    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert caught.value.response.headers[U + "7d-status"] == "rejected"
    sdk.close()


# ------------------------------------------------------------------ more controls and windows


def test_output_tokens_override_and_burn(fake: FakeUpstream, client: Client) -> None:
    data = body()
    _, _, payload = client.messages(data=data, **{"x-fake-output-tokens": "4000"})
    assert json.loads(payload)["usage"]["output_tokens"] == 4000
    assert fake.account("ada").five_hour_used == len(data) // 4 + 4000
    status, _, payload = client.messages(**{"x-fake-chunks": "many"})
    assert status == 400 and "x-fake-chunks" in str(error_of(payload)["message"])


def test_oauth_usage_endpoint(fake: FakeUpstream, client: Client) -> None:
    fake.set_usage("bob", five_hour=0.25, **{"7d_oi": 0.5})
    status, _, payload = client.call("GET", "/api/oauth/usage", None, {"authorization": "Bearer at-bob"})
    assert status == 200
    usage = json.loads(payload)
    assert usage["five_hour"]["utilization"] == 25.0
    assert usage["seven_day_opus"]["utilization"] == 50.0
    assert usage["five_hour"]["resets_at"].endswith("Z")


def test_model_window_own_reset_and_weekly_rollover(fake: FakeUpstream, client: Client) -> None:
    now = time.time()
    fake.set_usage("bob", seven_day=0.5, **{"7d_sonnet": 0.5, "7d_oi": 0.5})
    fake.set_reset("bob", seven_day=now + 86400, **{"7d_sonnet": now - 1})
    _, headers, _ = client.messages("bob", body("claude-haiku-4-5"))
    assert headers[U + "7d_sonnet-utilization"] == "0.0"
    assert int(headers[U + "7d_sonnet-reset"]) == int(now - 1 + 7 * 86400)
    assert headers[U + "7d_oi-utilization"] == "0.5"
    assert headers[U + "7d_oi-reset"] == headers[U + "7d-reset"]
    fake.set_reset("bob", seven_day=now - 10)
    _, headers, _ = client.messages("bob", body("claude-haiku-4-5"))
    assert headers[U + "7d-utilization"] == headers[U + "7d_oi-utilization"] == "0.0"
    assert int(headers[U + "7d-reset"]) == int(now - 10 + 7 * 86400)


def test_chunked_request_body_and_expect_continue(fake: FakeUpstream) -> None:
    data = body()
    sock = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
    head = (
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\nauthorization: Bearer at-ada\r\n"
        "anthropic-beta: oauth-2025-04-20\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n"
    )
    sock.sendall(head.encode())
    assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    sock.sendall(b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, data[:10], len(data) - 10, data[10:]))
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    sock.close()
    assert fake.requests[-1].body == data


def test_garbage_gets_400_and_close(fake: FakeUpstream) -> None:
    sock = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
    sock.sendall(b"NOT HTTP\r\n\r\n")
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    assert received.startswith(b"HTTP/1.1 400 ")
    assert b"invalid_request_error" in received


async def test_usable_from_a_running_event_loop(fake: FakeUpstream) -> None:
    import asyncio

    data = body(stream=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nauthorization: Bearer at-ada\r\n"
        b"anthropic-beta: oauth-2025-04-20\r\nx-fake-chunk-interval-ms: 10\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(data), data)
    )
    received = b""
    while not received.endswith(b"0\r\n\r\n"):
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, f"the fake closed the connection before the end of the stream: {received[-300:]!r}"
        received += chunk
    writer.close()
    assert received.count(b"event: content_block_delta") == 5


def test_demo_cli_serves_demo_tokens() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "teamclaude.fakeupstream", "--demo", "--chunk-interval-ms", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(Lines(proc.stdout, "the fake").wait_for(lambda line: True, "its address").strip().rsplit(":", 1)[1])
        token = demo_accounts(time.time())[0].access_token
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/v1/messages", body(), {"authorization": f"Bearer {token}", **OAUTH_HEADERS})
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader(U + "7d-utilization") == "0.6"
        conn.close()
    finally:
        assert _terminated(proc) == 0


def test_handler_bug_is_loud_and_contained(
    fake: FakeUpstream, client: Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from teamclaude import fakeupstream

    async def broken(self: FakeUpstream, ex: object) -> None:
        raise RuntimeError("handler bug")

    monkeypatch.setitem(fakeupstream._ROUTES, ("GET", "/api/oauth/profile"), broken)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        client.call("GET", "/api/oauth/profile")
    assert "RuntimeError: handler bug" in capsys.readouterr().err
    fresh = Client(fake)
    assert fresh.messages()[0] == 200
    fresh.close()


def test_unpaired_tool_blocks_get_the_apis_400(fake: FakeUpstream, client: Client) -> None:
    use = {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}
    answer = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}

    def send(*messages: object) -> tuple[int, bytes]:
        body = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": list(messages)}
        status, _, payload = client.messages(data=json.dumps(body).encode())
        return status, payload

    hi = {"role": "user", "content": "hi"}
    assert send(hi, {"role": "assistant", "content": [use]}, {"role": "user", "content": [answer]})[0] == 200
    status, payload = send(hi, {"role": "assistant", "content": [use]}, {"role": "user", "content": "stop"})
    assert status == 400 and "messages.1: `tool_use` ids were found without `tool_result`" in error_of(payload)["message"]
    status, payload = send(hi, {"role": "assistant", "content": "no"}, {"role": "user", "content": [answer]})
    assert status == 400 and "messages.2: unexpected `tool_use_id`" in error_of(payload)["message"]
