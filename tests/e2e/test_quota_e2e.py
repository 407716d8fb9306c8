"""The pool's quota through the real proxy (issue 14 §5): `GET /teamclaude/quota` and the
`pool_headers` setting, off and on, with a Max and a Pro account of the fake Anthropic API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mitmproxy.io import FlowReader

from teamclaude.fakeupstream import FakeUpstream
from tests.e2e.harness import ConfigDir, call, message_body, oauth_account, start_proxy, write_config

U = "anthropic-ratelimit-unified-"
MILLION = 1_000_000
# alice (Max, weight 5) at 50 % of her 5 h window, bob (Pro, weight 1) at 90 %.
POOLED_5H = (5 * 0.5 + 1 * 0.9) / 6


def pool_of_two(tmp_path: Path, fake_url: str, alice, bob, **settings) -> ConfigDir:
    cfg = write_config(tmp_path, fake_url, [alice, bob], **settings)
    document = yaml.safe_load(cfg.accounts.read_text())
    for entry, plan in zip(document["accounts"], ("max", "pro"), strict=True):
        entry["plan"] = plan
    cfg.accounts.write_text(yaml.safe_dump(document))
    return cfg


@pytest.fixture
def accounts():
    alice = oauth_account("alice", plan="max", five_hour_budget=2 * MILLION, five_hour_used=MILLION,
                          seven_day_budget=20 * MILLION, seven_day_used=2 * MILLION)
    bob = oauth_account("bob", plan="pro", five_hour_budget=2 * MILLION, five_hour_used=1_800_000,
                        seven_day_budget=20 * MILLION, seven_day_used=2 * MILLION)
    return alice, bob


def served_by(proxy_url: str, name: str) -> dict[str, str]:
    """A session-less request pinned to `name`; returns the headers the client got."""
    assert call(proxy_url, "POST", "/teamclaude/switch", {"account": name})[0] == 200
    status, headers, body = call(proxy_url, "POST", "/v1/messages", message_body())
    assert status == 200, body
    return headers


def quota(proxy_url: str) -> dict:
    status, _, body = call(proxy_url, "GET", "/teamclaude/quota")
    assert status == 200, body
    return json.loads(body)


def test_quota_endpoint_weights_the_pool_by_plan(tmp_path, accounts):
    alice, bob = accounts
    with FakeUpstream([alice, bob]) as fake:
        cfg = pool_of_two(tmp_path, fake.url, alice, bob)
        with start_proxy(cfg) as proxy:
            before = quota(proxy.url)
            assert before["accounts"] == 2 and before["weights"] == {"alice": 5.0, "bob": 1.0}
            assert before["windows"]["5h"]["utilization"] is None  # no answer seen yet
            assert before["windows"]["5h"]["withRoom"] == 2
            alice_headers = served_by(proxy.url, "alice")
            bob_headers = served_by(proxy.url, "bob")
            document = quota(proxy.url)
            assert call(proxy.url, "GET", "/teamclaude/quota", key=None)[0] == 401
    five, week = document["windows"]["5h"], document["windows"]["7d"]
    assert five["utilization"] == pytest.approx(POOLED_5H, abs=0.005)
    assert five["status"] == "allowed" and five["withRoom"] == 2 and five["reporting"] == 2
    assert five["reset"] == min(int(alice_headers[U + "5h-reset"]), int(bob_headers[U + "5h-reset"]))
    assert week["utilization"] == pytest.approx(0.1, abs=0.005)
    assert document["withRoom"] == 2


def test_pool_headers_off_the_client_sees_the_serving_account(tmp_path, accounts):
    alice, bob = accounts
    flows_file = tmp_path / "flows.mitm"
    with FakeUpstream([alice, bob]) as fake:
        cfg = pool_of_two(tmp_path, fake.url, alice, bob)
        with start_proxy(cfg, ["-w", str(flows_file)]) as proxy:
            served_by(proxy.url, "alice")
            headers = served_by(proxy.url, "bob")
    assert float(headers[U + "5h-utilization"]) == pytest.approx(0.9, abs=0.005)
    assert headers[U + "5h-status"] == "allowed_warning" and headers[U + "status"] == "allowed_warning"
    with flows_file.open("rb") as handle:
        flows = [f for f in FlowReader(handle).stream() if f.request.path == "/v1/messages"]
    assert flows and all("account_ratelimit" not in f.metadata["teamclaude"] for f in flows)


def test_pool_headers_on_the_client_sees_the_pool_and_the_flow_keeps_the_account(tmp_path, accounts):
    alice, bob = accounts
    flows_file = tmp_path / "flows.mitm"
    with FakeUpstream([alice, bob]) as fake:
        cfg = pool_of_two(tmp_path, fake.url, alice, bob, pool_headers=True)
        with start_proxy(cfg, ["-w", str(flows_file)]) as proxy:
            served_by(proxy.url, "alice")
            headers = served_by(proxy.url, "bob")
            streamed = call(proxy.url, "POST", "/v1/messages", message_body(stream=True))
    assert float(headers[U + "5h-utilization"]) == pytest.approx(POOLED_5H, abs=0.005)
    assert headers[U + "5h-status"] == "allowed"  # bob alone is allowed_warning; the pool is not
    assert headers[U + "status"] == "allowed" and headers[U + "representative-claim"] == "five_hour"
    assert float(headers[U + "7d-utilization"]) == pytest.approx(0.1, abs=0.005)
    assert headers[U + "fallback-percentage"] == "0.5"  # not about the quota: passed as sent
    assert streamed[0] == 200 and float(streamed[1][U + "5h-utilization"]) == pytest.approx(POOLED_5H, abs=0.005)
    with flows_file.open("rb") as handle:
        flows = [f for f in FlowReader(handle).stream() if f.request.path == "/v1/messages"]
    bob_flow = next(f for f in flows if f.metadata["teamclaude"]["account"] == "bob")
    own = bob_flow.metadata["teamclaude"]["account_ratelimit"]
    assert float(own[U + "5h-utilization"]) == pytest.approx(0.9, abs=0.005)
    assert own[U + "5h-status"] == "allowed_warning"
    assert float(bob_flow.response.headers[U + "5h-utilization"]) == pytest.approx(POOLED_5H, abs=0.005)
