"""`GET /metrics` of the real proxy (teamclaude.metrics), scraped as Prometheus would."""

from __future__ import annotations

import json
import threading
import time

from prometheus_client.parser import text_string_to_metric_families

from routing.ratelimits import parse_ratelimit_headers
from routing.usage import Usage
from teamclaude.fakeupstream import FakeUpstream
from tests.e2e.harness import PROXY_KEY, call, message_body, oauth_account, start_proxy, write_config

SESSION_HEADER = "x-claude-code-session-id"
TOKEN_TYPES = {"input": "input_tokens", "output": "output_tokens", "cache_read": "cache_read"}


def scrape(url: str, path: str = "/metrics") -> tuple[str, dict]:
    """Scrape as Prometheus does with `authorization: {credentials_file: …}`."""
    code, headers, body = call(url, "GET", path, key=None, headers={"authorization": f"Bearer {PROXY_KEY}"})
    assert code == 200, body
    assert headers["content-type"].startswith("text/plain; version=")
    text = body.decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of `name` over the series whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def sse_usage(body: bytes) -> Usage:
    """Usage of a streamed answer, read from its events as a client would."""
    usage: dict = {}
    model = None
    for line in body.decode().splitlines():
        if not line.startswith("data:"):
            continue
        event = json.loads(line[5:])
        if event.get("type") == "message_start":
            usage.update(event["message"]["usage"])
            model = event["message"]["model"]
        elif event.get("type") == "message_delta":
            usage.update(event.get("usage") or {})
    return Usage.from_api(usage, model)


def test_counters_and_gauges_match_what_the_upstream_served(tmp_path):
    with FakeUpstream(accounts=[oauth_account("alice"), oauth_account("bob")]) as fake:
        fake.set_usage("alice", five_hour=0.25, seven_day=0.4)
        fake.set_usage("bob", five_hour=0.5, seven_day=0.125)
        cfg = write_config(tmp_path, fake.url, [fake.account("alice"), fake.account("bob")])
        with start_proxy(cfg) as proxy:
            used: dict[str, Usage] = {}
            last_limits = {}
            for i in range(6):
                stream = i % 2 == 1
                code, headers, body = call(proxy.url, "POST", "/v1/messages", message_body(stream=stream),
                                           headers={SESSION_HEADER: f"session-{i % 3}", "x-fake-chunks": "3"})
                assert code == 200
                usage = sse_usage(body) if stream else Usage.from_api(json.loads(body)["usage"], json.loads(body)["model"])
                account = fake.requests[-1].account
                used[account] = used.get(account, Usage()) + usage
                last_limits[account] = parse_ratelimit_headers(headers.items())
            text, samples = scrape(proxy.url)

    served = [r.account for r in fake.requests if r.path == "/v1/messages"]
    assert total(samples, "teamclaude_requests_total") == 6
    for account in ("alice", "bob"):
        assert total(samples, "teamclaude_requests_total", account=account, status="200", client="proxy-key") \
            == served.count(account)
    for account, usage in used.items():
        counts = usage.as_dict()
        for kind, field in TOKEN_TYPES.items():
            assert total(samples, "teamclaude_tokens_total", account=account, type=kind) == counts[field]
        assert total(samples, "teamclaude_tokens_total", account=account, type="cache_creation") \
            == usage.cache_write_5m + usage.cache_write_1h
        assert total(samples, "teamclaude_cost_usd_total", account=account) > 0
        for window, seen in last_limits[account].windows.items():
            assert value(samples, "teamclaude_account_window_utilization_ratio", account=account, window=window) \
                == seen.utilization
            assert value(samples, "teamclaude_account_window_reset_timestamp_seconds", account=account, window=window) \
                == seen.reset
    assert {"alice", "bob"} <= set(used)  # both accounts served (probes), so both were checked
    assert value(samples, "teamclaude_account_window_utilization_ratio", account="bob", window="5h") >= 0.5
    assert value(samples, "teamclaude_account_benched", account="alice") == 0.0
    assert value(samples, "teamclaude_held_requests") == 0.0
    assert total(samples, "teamclaude_failovers_total") == 0
    assert value(samples, "teamclaude_shared_state_up") is None  # no shared state configured
    for secret in (PROXY_KEY, *(s for a in fake.accounts() for s in (a.access_token, a.refresh_token) if s)):
        assert secret not in text
    assert "sk-ant" not in text and "session-" not in text


def test_a_429_failover_and_the_cache_breaking_move_are_counted(tmp_path):
    with FakeUpstream(accounts=[oauth_account("alice"), oauth_account("bob")]) as fake:
        cfg = write_config(tmp_path, fake.url, [fake.account("alice"), fake.account("bob")])
        with start_proxy(cfg) as proxy:
            session = {SESSION_HEADER: "warm-session"}
            assert call(proxy.url, "POST", "/v1/messages", message_body(), headers=session)[0] == 200
            first = fake.requests[-1].account
            other = "bob" if first == "alice" else "alice"
            fake.set_usage(first, five_hour=1.0)  # its 5h window is used up: a 429 that benches it for hours
            assert call(proxy.url, "POST", "/v1/messages", message_body(), headers=session)[0] == 200
            _, samples = scrape(proxy.url, "/teamclaude/metrics")
            status = json.loads(call(proxy.url, "GET", "/teamclaude/status")[2])

    assert [(r.account, r.status) for r in fake.requests if r.path == "/v1/messages"][1:] == [(first, 429), (other, 200)]
    assert value(samples, "teamclaude_failovers_total", account=first, status="429", reason="window") == 1.0
    assert total(samples, "teamclaude_failovers_total") == 1
    assert value(samples, "teamclaude_cache_breaking_moves_total", account=other, reason="blocked") == 1.0
    assert total(samples, "teamclaude_requests_total", account=other, status="200") == 1
    benched = next(a for a in status["accounts"] if a["name"] == first)
    assert value(samples, "teamclaude_account_benched", account=first) == 1.0
    assert value(samples, "teamclaude_account_bench_remaining_seconds", account=first) > 3600
    assert benched["bench_until"] is not None
    assert value(samples, "teamclaude_account_window_utilization_ratio", account=first, window="5h") == 1.0


def test_a_weekly_reset_counts_the_quota_left_unused(tmp_path):
    with FakeUpstream(accounts=[oauth_account("alice")]) as fake:
        cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
        with start_proxy(cfg) as proxy:
            reset = int(time.time()) + 2
            fake.set_usage("alice", seven_day=0.3)
            fake.set_reset("alice", seven_day=reset)
            assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
            _, before = scrape(proxy.url)
            while time.time() <= reset + 0.1:  # the week ends at a wall-clock moment
                time.sleep(0.05)
            assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200
            _, after = scrape(proxy.url)

    last_seen = value(before, "teamclaude_account_window_utilization_ratio", account="alice", window="7d")
    assert 0.3 <= last_seen < 0.31
    assert value(before, "teamclaude_weekly_resets_total", account="alice") is None
    assert value(after, "teamclaude_weekly_resets_total", account="alice") == 1.0
    assert value(after, "teamclaude_weekly_quota_forfeited_ratio_total", account="alice") == 1 - last_seen
    assert value(after, "teamclaude_account_window_reset_timestamp_seconds", account="alice", window="7d") \
        == reset + 7 * 86400


def test_a_hold_shows_while_it_lasts_and_is_counted_after(tmp_path):
    with FakeUpstream(accounts=[oauth_account("alice"), oauth_account("bob")]) as fake:
        cfg = write_config(tmp_path, fake.url, [fake.account("alice"), fake.account("bob")],
                           hold_budget_s=60, hold_poll_s=30)
        with start_proxy(cfg) as proxy:
            fake.inject("alice", "429_retry_after", seconds=3)
            fake.inject("bob", "429_retry_after", seconds=3)
            thread = threading.Thread(target=call, args=(proxy.url, "POST", "/v1/messages", message_body()))
            thread.start()
            deadline = time.monotonic() + 10
            while value(held := scrape(proxy.url)[1], "teamclaude_held_requests") != 1:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            thread.join(30)
            _, after = scrape(proxy.url)

    assert value(held, "teamclaude_oldest_hold_seconds") >= 0
    assert value(held, "teamclaude_hold_duration_seconds_count") == 0
    for account in ("alice", "bob"):
        assert value(held, "teamclaude_failovers_total", account=account, status="429", reason="retry-after") == 1.0
        assert value(held, "teamclaude_account_benched", account=account) == 1.0
    assert value(after, "teamclaude_held_requests") == 0
    assert value(after, "teamclaude_hold_duration_seconds_count") == 1
    assert 1 <= value(after, "teamclaude_hold_duration_seconds_sum") < 30
    assert total(after, "teamclaude_requests_total", status="200") == 1


def test_metrics_need_the_proxy_key(tmp_path):
    with FakeUpstream(accounts=[oauth_account("alice")]) as fake:
        cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
        with start_proxy(cfg) as proxy:
            for path in ("/metrics", "/teamclaude/metrics"):
                code, _, body = call(proxy.url, "GET", path, key=None)
                assert code == 401 and json.loads(body)["error"]["type"] == "authentication_error"
                assert call(proxy.url, "GET", path, key=None, headers={"authorization": "Bearer wrong"})[0] == 401
                assert call(proxy.url, "GET", path)[0] == 200  # x-teamclaude-key
                assert call(proxy.url, "GET", path, key=None, headers={"x-api-key": PROXY_KEY})[0] == 200
                assert call(proxy.url, "POST", path)[0] == 405
    assert not [r for r in fake.requests if "metrics" in r.path]  # never forwarded


def test_twenty_accounts_scrape(tmp_path):
    accounts = [oauth_account(f"acct{i:02d}") for i in range(20)]
    with FakeUpstream(accounts=accounts) as fake:
        cfg = write_config(tmp_path, fake.url, [fake.account(a.name) for a in accounts])
        with start_proxy(cfg) as proxy:
            for i in range(25):
                assert call(proxy.url, "POST", "/v1/messages", message_body(),
                            headers={SESSION_HEADER: f"s{i}"})[0] == 200
            for _ in range(3):
                _, samples = scrape(proxy.url)
    names = {dict(labels)["account"] for (name, labels) in samples if name == "teamclaude_account_benched"}
    assert names == {a.name for a in accounts}
    assert total(samples, "teamclaude_requests_total") == 25
    windows = [k for k in samples if k[0] == "teamclaude_account_window_utilization_ratio"]
    assert len(windows) == 2 * len({r.account for r in fake.requests if r.path == "/v1/messages"})
