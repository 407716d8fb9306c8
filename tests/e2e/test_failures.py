"""Failures end to end (behaviour §6): failover, holds, 401/403/5xx, resets, through the real proxy."""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from teamclaude.fakeupstream import FakeUpstream
from tests.e2e.cli_runner import run_cli
from tests.e2e.harness import PROXY_KEY, call, message_body, oauth_account, proxy_status, start_proxy, write_config

FAST_STREAM = {"x-fake-chunks": "4", "x-fake-chunk-interval-ms": "10"}


@pytest.fixture()
def fake():
    with FakeUpstream(accounts=[oauth_account("alice"), oauth_account("bob")]) as upstream:
        yield upstream


def account_state(proxy, name: str) -> dict:
    return next(a for a in proxy_status(proxy)["accounts"] if a["name"] == name)


def pin(proxy, name: str | None) -> None:
    assert call(proxy.url, "POST", "/teamclaude/switch", {"account": name})[0] == 200


def served(fake, path="/v1/messages") -> list[tuple[str, int]]:
    return [(r.account, r.status) for r in fake.requests if r.path == path]


def proxy_for(tmp_path, fake, **settings):
    cfg = write_config(tmp_path, fake.url, [fake.account("alice"), fake.account("bob")],
                       oauth_token_url=f"{fake.url}/v1/oauth/token", **settings)
    return start_proxy(cfg), cfg


def test_rejected_window_fails_over_transparently_and_is_not_retried(tmp_path, fake):
    fake.set_usage("alice", five_hour=1.0)
    proxy, _ = proxy_for(tmp_path, fake)
    with proxy:
        pin(proxy, "alice")
        code, headers, body = call(proxy.url, "POST", "/v1/messages", message_body(stream=True), headers=FAST_STREAM)
        assert code == 200 and b"event: message_stop" in body
        assert served(fake) == [("alice", 429), ("bob", 200)]
        for _ in range(3):
            assert call(proxy.url, "POST", "/v1/messages", message_body(), headers=FAST_STREAM)[0] == 200
        assert [a for a, _ in served(fake)[2:]] == ["bob", "bob", "bob"]
        alice = account_state(proxy, "alice")
        assert alice["bench_until"] >= fake.account("alice").five_hour_reset - 1
        failover = [line for line in proxy_status(proxy)["activity"] if line.get("reason") == "failover"]
        assert failover and "5h window rejected" in failover[0]["note"]


def test_client_mode_gives_a_retryable_throttle_and_the_retry_streams_elsewhere(tmp_path, fake):
    fake.set_usage("alice", five_hour=1.0)
    proxy, _ = proxy_for(tmp_path, fake, failover="client")
    with proxy:
        pin(proxy, "alice")
        code, headers, body = call(proxy.url, "POST", "/v1/messages", message_body(stream=True))
        assert code == 429
        assert headers["x-should-retry"] == "true" and headers["retry-after"] in ("0", "1")
        assert not [h for h in headers if h.startswith("anthropic-ratelimit-unified")]
        assert json.loads(body)["error"]["type"] == "rate_limit_error"
        connection = http.client.HTTPConnection(proxy.host, proxy.port, timeout=30)
        connection.request("POST", "/v1/messages", body=json.dumps(message_body(stream=True)), headers={
            "x-teamclaude-key": PROXY_KEY, "content-type": "application/json",
            "x-fake-chunks": "4", "x-fake-chunk-interval-ms": "150"})
        response = connection.getresponse()
        arrivals = []
        while response.read1(65536):
            arrivals.append(time.monotonic())
        connection.close()
        assert response.status == 200 and arrivals[-1] - arrivals[0] >= 0.4
        assert served(fake) == [("alice", 429), ("bob", 200)]


def test_bare_429_does_not_bench_but_a_second_in_a_row_does(tmp_path, fake):
    proxy, _ = proxy_for(tmp_path, fake)
    with proxy:
        pin(proxy, "alice")
        fake.inject("alice", "429_bare", count=2)
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
        assert account_state(proxy, "alice")["bench_until"] is None
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
        before = time.time()
        bench = account_state(proxy, "alice")["bench_until"]
        assert bench is not None and before + 50 <= bench <= before + 61
        assert served(fake) == [("alice", 429), ("bob", 200), ("alice", 429), ("bob", 200)]


def test_401_refreshes_once_then_succeeds_on_the_same_account(tmp_path, fake):
    proxy, _ = proxy_for(tmp_path, fake)
    with proxy:
        pin(proxy, "alice")
        fake.inject("alice", "401")
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
    assert served(fake) == [("alice", 401), ("alice", 200)]
    assert [c.grant_type for c in fake.token_calls] == ["refresh_token"]


def test_refused_refresh_marks_needs_login_and_fails_over(tmp_path, fake):
    proxy, cfg = proxy_for(tmp_path, fake)
    text = cfg.accounts.read_text().replace(fake.account("alice").refresh_token, "sk-ant-ort01-revoked")
    cfg.accounts.write_text(text)
    with proxy:
        call(proxy.url, "POST", "/teamclaude/reload")
        pin(proxy, "alice")
        fake.inject("alice", "401")
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
        assert account_state(proxy, "alice")["needs_login"] is True
    assert served(fake) == [("alice", 401), ("bob", 200)]


def test_403_fails_over_and_the_client_never_sees_it(tmp_path, fake):
    proxy, _ = proxy_for(tmp_path, fake)
    with proxy:
        pin(proxy, "alice")
        fake.inject("alice", "403")
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
    assert served(fake) == [("alice", 403), ("bob", 200)]


def test_529_cools_down_briefly_not_along_the_429_ladder(tmp_path, fake):
    proxy, _ = proxy_for(tmp_path, fake)
    with proxy:
        pin(proxy, "alice")
        fake.inject("alice", "529")
        before = time.time()
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
        bench = account_state(proxy, "alice")["bench_until"]
        assert before + 25 <= bench <= before + 31
    assert served(fake) == [("alice", 529), ("bob", 200)]


def test_all_throttled_inference_is_held_then_answered_with_a_short_retry_after(tmp_path, fake):
    fake.set_usage("alice", five_hour=1.0)
    fake.set_usage("bob", five_hour=1.0)
    proxy, _ = proxy_for(tmp_path, fake, hold_budget_s=1)
    with proxy:
        started = time.monotonic()
        code, headers, body = call(proxy.url, "POST", "/v1/messages", message_body())
        assert code == 429 and 1 <= int(headers["retry-after"]) <= 59
        assert headers["x-should-retry"] == "true"
        message = json.loads(body)["error"]["message"]
        assert "all 2 accounts" in message and "frees up in" in message
        assert time.monotonic() - started >= 0.9
        started = time.monotonic()
        assert call(proxy.url, "GET", "/v1/models")[0] == 429
        assert time.monotonic() - started < 0.9


def test_a_held_request_is_served_the_moment_a_bench_ends(tmp_path, fake):
    proxy, _ = proxy_for(tmp_path, fake, hold_budget_s=60, hold_poll_s=30)
    with proxy:
        pin(proxy, "alice")
        fake.inject("alice", "429_retry_after", seconds=2)
        fake.inject("bob", "429_retry_after", seconds=2)
        result = {}

        def held_request():
            started = time.monotonic()
            result["code"] = call(proxy.url, "POST", "/v1/messages", message_body())[0]
            result["took"] = time.monotonic() - started

        thread = threading.Thread(target=held_request)
        thread.start()
        fake.wait_for_requests(2, timeout=10)
        # Other flows keep flowing while one is held.
        assert call(proxy.url, "GET", "/teamclaude/health")[0] == 200
        thread.join(30)
        assert result["code"] == 200
        assert 1.5 <= result["took"] < 10  # woken by the bench's end, not the 30 s poll


def test_held_requests_show_in_capacity_status_and_the_cli(tmp_path, fake):
    proxy, cfg = proxy_for(tmp_path, fake, hold_budget_s=60, hold_poll_s=30)
    with proxy:
        pin(proxy, "alice")
        fake.inject("alice", "429_retry_after", seconds=4)
        fake.inject("bob", "429_retry_after", seconds=4)
        thread = threading.Thread(target=call, args=(proxy.url, "POST", "/v1/messages", message_body()))
        thread.start()
        deadline = time.monotonic() + 10
        while (capacity := json.loads(call(proxy.url, "GET", "/teamclaude/capacity")[2]))["held"] != 1:
            assert time.monotonic() < deadline, capacity
            time.sleep(0.05)
        assert capacity["verdict"] != "green"
        assert capacity["heldOldestSec"] >= 0 and capacity["heldNextWakeSec"] is not None
        assert proxy_status(proxy)["capacity"]["held"] == 1
        shown = run_cli(cfg, "status")
        assert "1 held" in shown.stdout, shown.stdout + shown.stderr
        thread.join(30)
        assert json.loads(call(proxy.url, "GET", "/teamclaude/capacity")[2])["held"] == 0


def test_reset_mid_stream_reaches_the_client_as_a_cut_and_frees_the_slot(tmp_path, fake):
    proxy, _ = proxy_for(tmp_path, fake)
    with proxy:
        pin(proxy, "alice")
        fake.inject("alice", "reset_midstream", after_events=3)
        connection = http.client.HTTPConnection(proxy.host, proxy.port, timeout=30)
        connection.request("POST", "/v1/messages", body=json.dumps(message_body(stream=True)),
                           headers={"x-teamclaude-key": PROXY_KEY, "content-type": "application/json", **FAST_STREAM})
        response = connection.getresponse()
        received = b""
        with pytest.raises(http.client.IncompleteRead):  # the chunked body ends without its terminator
            while piece := response.read1(65536):
                received += piece
        connection.close()
        assert response.status == 200 and b"event: message_start" in received and b"message_stop" not in received
        assert served(fake) == [("alice", 200)]  # bytes were sent: no replay elsewhere
        deadline = time.monotonic() + 10
        while account_state(proxy, "alice")["inflight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert account_state(proxy, "alice")["inflight"] == 0


def test_reset_before_the_response_fails_over_transparently(tmp_path, fake):
    proxy, _ = proxy_for(tmp_path, fake)
    with proxy:
        pin(proxy, "alice")
        fake.inject("alice", "reset_before")
        code, headers, body = call(proxy.url, "POST", "/v1/messages", message_body(stream=True), headers=FAST_STREAM)
        assert code == 200 and b"event: message_stop" in body
        assert [a["inflight"] for a in proxy_status(proxy)["accounts"]] == [0, 0]
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
    # alice answered nothing (status 0), bob served; the pin then goes back to alice.
    assert served(fake) == [("alice", 0), ("bob", 200), ("alice", 200)]


def test_header_timeout_unwedges_a_dead_upstream_and_fails_over(tmp_path, fake):
    proxy, _ = proxy_for(tmp_path, fake, upstream_timeout_s=1)
    with proxy:
        pin(proxy, "alice")
        fake.inject("alice", "hang")
        started = time.monotonic()
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
        assert time.monotonic() - started < 10
        assert [a["inflight"] for a in proxy_status(proxy)["accounts"]] == [0, 0]
    assert served(fake) == [("alice", 0), ("bob", 200)]


def test_connection_failure_with_no_account_left_is_an_anthropic_shaped_502(tmp_path):
    with FakeUpstream(accounts=[oauth_account("solo")]) as fake:
        cfg = write_config(tmp_path, fake.url, [fake.account("solo")])
        with start_proxy(cfg) as proxy:
            fake.inject("solo", "reset_before")
            started = time.monotonic()
            code, _, body = call(proxy.url, "POST", "/v1/messages", message_body())
            assert code == 502 and time.monotonic() - started < 5
            assert json.loads(body)["error"]["type"] == "api_error"
            assert account_state(proxy, "solo")["inflight"] == 0
            assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200


def test_fifty_concurrent_requests_while_an_account_flips_to_rejected(tmp_path, fake):
    proxy, _ = proxy_for(tmp_path, fake, max_inflight_per_account=50)
    with proxy:
        def one(index):
            if index == 20:
                fake.set_usage("alice", five_hour=1.0)
            code, _, body = call(proxy.url, "POST", "/v1/messages", message_body(stream=True),
                                 headers={"x-claude-code-session-id": f"s-{index % 10}", **FAST_STREAM})
            return code, b"message_stop" in body

        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(one, range(50)))
        assert results == [(200, True)] * 50
        deadline = time.monotonic() + 10
        while sum(a["inflight"] for a in proxy_status(proxy)["accounts"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(a["inflight"] for a in proxy_status(proxy)["accounts"]) == 0


def test_no_hold_when_waiting_cannot_help(tmp_path):
    with FakeUpstream(accounts=[oauth_account("solo")]) as fake:
        cfg = write_config(tmp_path, fake.url, [fake.account("solo")], hold_budget_s=60)
        with start_proxy(cfg) as proxy:
            fake.inject("solo", "403", count=2)
            started = time.monotonic()
            code, _, body = call(proxy.url, "POST", "/v1/messages", message_body())
            assert code == 503 and time.monotonic() - started < 5
            assert "none will free up by waiting" in json.loads(body)["error"]["message"]
            code, _, _ = call(proxy.url, "POST", "/v1/messages", message_body())
            assert code == 503 and account_state(proxy, "solo")["needs_login"] is True


def test_client_mode_keeps_the_retry_off_an_account_that_said_403(tmp_path, fake):
    proxy, _ = proxy_for(tmp_path, fake, failover="client")
    with proxy:
        pin(proxy, "alice")
        fake.inject("alice", "403")
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 429
        assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
    assert served(fake) == [("alice", 403), ("bob", 200)]
