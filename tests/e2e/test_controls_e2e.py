"""Operator controls end to end (behaviour §5.3, §9, §12): disable, enable and priority from
the CLI and the local endpoints, the client's `x-teamclaude-account` pin and the model rules,
each changing the routing of the real proxy while it serves."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from teamclaude.accounts_store import AccountsStore
from teamclaude.fakeupstream import FakeUpstream
from tests.e2e.cli_runner import run_cli, wait_until
from tests.e2e.harness import call, message_body, oauth_account, proxy_status, start_proxy, write_config

SESSION_HEADER = "x-claude-code-session-id"
PIN_HEADER = "x-teamclaude-account"
BUDGET = 10_000_000


@pytest.fixture()
def fake():
    reset = time.time() + 3.5 * 86400
    accounts = [oauth_account(name, seven_day_budget=BUDGET, five_hour_budget=BUDGET,
                              seven_day_used=BUDGET // 2, seven_day_reset=reset)  # all on their line
                for name in ("alice", "bob", "carol")]
    with FakeUpstream(accounts=accounts) as upstream:
        yield upstream


def proxy_for(tmp_path, fake, **settings):
    cfg = write_config(tmp_path, fake.url, [fake.account(n) for n in ("alice", "bob", "carol")],
                       oauth_token_url=f"{fake.url}/v1/oauth/token", **settings)
    return start_proxy(cfg), cfg


def ask(proxy, session: str | None = None, model: str = "claude-sonnet-4-5", **headers: str):
    if session is not None:
        headers[SESSION_HEADER] = session
    return call(proxy.url, "POST", "/v1/messages", message_body(model=model), headers=headers)


def served_by(fake) -> list[str]:
    return [r.account for r in fake.requests if r.path == "/v1/messages"]


def account(proxy, name: str) -> dict:
    return next(a for a in proxy_status(proxy)["accounts"] if a["name"] == name)


def error_of(body: bytes) -> dict:
    return json.loads(body)["error"]


def test_cli_priority_disable_and_enable_change_routing_while_the_proxy_serves(tmp_path, fake):
    proxy, cfg = proxy_for(tmp_path, fake)
    with proxy:
        for probe in ("p1", "p2", "p3"):
            assert ask(proxy, probe)[0] == 200  # one probe each: every account proven
        assert ask(proxy, "s1")[0] == 200  # all tied: by name
        assert served_by(fake)[-1] == "alice"

        done = run_cli(cfg, "priority", "carol", "-1")
        assert done.returncode == 0 and "'carol' priority -1" in done.stdout, done.stderr
        wait_until(lambda: account(proxy, "carol")["priority"] == -1, "the proxy to see carol's priority")
        assert ask(proxy, "s2")[0] == 200 and served_by(fake)[-1] == "carol"  # preferred among equals
        assert ask(proxy, "s1")[0] == 200 and served_by(fake)[-1] == "alice"  # warm: stays

        done = run_cli(cfg, "disable", "carol")
        assert done.returncode == 0 and "'carol' disabled" in done.stdout, done.stderr
        wait_until(lambda: account(proxy, "carol")["disabled"], "the proxy to see carol disabled")
        before = len(served_by(fake))
        for session in ("s2", "s3", "s4"):
            assert ask(proxy, session)[0] == 200
        assert "carol" not in served_by(fake)[before:]  # its warm conversation moved too

        assert run_cli(cfg, "enable", "carol").returncode == 0
        wait_until(lambda: not account(proxy, "carol")["disabled"], "the proxy to see carol enabled")
        assert ask(proxy, "s5")[0] == 200 and served_by(fake)[-1] == "carol"

        unknown = run_cli(cfg, "disable", "dave")
        assert unknown.returncode == 1 and "no account named 'dave'" in unknown.stderr
    stored = {a.name: a for a in AccountsStore(cfg.accounts).read().accounts}
    assert (stored["carol"].priority, stored["carol"].disabled) == (-1, False)


def test_local_endpoints_disable_enable_and_prioritise_at_once(tmp_path, fake):
    proxy, cfg = proxy_for(tmp_path, fake)
    with proxy:
        code, _, body = call(proxy.url, "POST", "/teamclaude/accounts/alice/disable")
        assert code == 200 and json.loads(body)["message"] == "'alice' disabled"
        assert account(proxy, "alice")["disabled"]  # applied before the answer, not at the next poll
        assert AccountsStore(cfg.accounts).read().get("alice").disabled
        assert ask(proxy, "s1")[0] == 200 and served_by(fake)[-1] != "alice"

        code, _, body = call(proxy.url, "POST", "/teamclaude/accounts/carol/priority", {"priority": -3})
        assert code == 200 and account(proxy, "carol")["priority"] == -3
        assert call(proxy.url, "POST", "/teamclaude/accounts/alice/enable")[0] == 200
        assert not account(proxy, "alice")["disabled"]

        assert call(proxy.url, "POST", "/teamclaude/accounts/alice/disable", key=None)[0] == 401
        code, _, body = call(proxy.url, "POST", "/teamclaude/accounts/dave/disable")
        assert code == 404 and "dave" in error_of(body)["message"]
        for bad in ({"priority": "high"}, {"priority": True}, {}, [1]):
            code, _, body = call(proxy.url, "POST", "/teamclaude/accounts/carol/priority", bad)
            assert code == 400, bad
        assert call(proxy.url, "GET", "/teamclaude/accounts/carol/disable")[0] == 405
    assert AccountsStore(cfg.accounts).read().get("carol").priority == -3


def test_a_pinned_client_is_served_by_its_account_alone(tmp_path, fake):
    proxy, cfg = proxy_for(tmp_path, fake, hold_budget_s=1)
    with proxy:
        for _ in range(3):
            assert ask(proxy, "s1", **{PIN_HEADER: "bob"})[0] == 200
        assert ask(proxy, None, **{PIN_HEADER: "carol"})[0] == 200
        assert served_by(fake) == ["bob", "bob", "bob", "carol"]
        assert not any(PIN_HEADER in dict(r.headers) or PIN_HEADER in {k.lower() for k, _ in r.headers}
                       for r in fake.requests)  # the header never goes upstream

        sent = len(fake.requests)
        code, _, body = ask(proxy, "s2", **{PIN_HEADER: "dave"})
        assert code == 400 and "'dave'" in error_of(body)["message"]
        assert run_cli(cfg, "disable", "carol").returncode == 0
        wait_until(lambda: account(proxy, "carol")["disabled"], "the proxy to see carol disabled")
        code, _, body = ask(proxy, "s2", **{PIN_HEADER: "carol"})
        assert code == 403 and "disabled" in error_of(body)["message"]
        assert len(fake.requests) == sent  # refused without going upstream

        fake.set_usage("bob", five_hour=1.0)  # bob is throttled: no failover, a hold, then the 429
        code, headers, body = ask(proxy, "s1", **{PIN_HEADER: "bob"})
        assert code == 429 and headers["x-should-retry"] == "true"
        assert "the one account that may serve this request" in error_of(body)["message"]
        assert served_by(fake)[4:] == ["bob"]
        assert ask(proxy, "s1")[0] == 200 and served_by(fake)[-1] == "alice"  # unpinned: the pool


def test_model_rules_block_and_route_and_follow_settings_edits(tmp_path, fake):
    rules = {"blocked_models": ["claude-opus-4-1*"], "model_routes": {"claude-haiku-*": ["carol"]}}
    proxy, cfg = proxy_for(tmp_path, fake, **rules)
    with proxy:
        code, _, body = ask(proxy, "s1", model="claude-opus-4-1-20250805")
        assert code == 400 and "'claude-opus-4-1*'" in error_of(body)["message"]
        assert served_by(fake) == []  # nothing went upstream
        for session in ("s1", "s2", "s3"):
            assert ask(proxy, session, model="claude-haiku-4-5")[0] == 200
        assert served_by(fake) == ["carol", "carol", "carol"]
        assert ask(proxy, "s4", model="claude-sonnet-4-5")[0] == 200
        assert served_by(fake)[-1] == "alice"

        code, _, body = ask(proxy, "s5", model="claude-haiku-4-5", **{PIN_HEADER: "bob"})
        assert code == 403 and "'claude-haiku-*'" in error_of(body)["message"]

        settings = yaml.safe_load(cfg.config.read_text())
        settings.update(blocked_models=[], model_routes={"claude-haiku-*": ["bob"]})
        cfg.config.write_text(yaml.safe_dump(settings))
        assert call(proxy.url, "POST", "/teamclaude/reload")[0] == 200
        assert ask(proxy, "s1", model="claude-haiku-4-5")[0] == 200 and served_by(fake)[-1] == "bob"
        assert ask(proxy, "s6", model="claude-opus-4-1-20250805")[0] == 200

        run_cli(cfg, "disable", "bob")
        wait_until(lambda: account(proxy, "bob")["disabled"], "the proxy to see bob disabled")
        code, _, body = ask(proxy, "s7", model="claude-haiku-4-5")
        assert code == 403 and "none of them is configured and enabled" in error_of(body)["message"]

        cfg.config.write_text(yaml.safe_dump({**settings, "model_routes": {"claude-*": "nobody, really"}}
                                             ) + "blocked_models: 3\n")
        code, _, body = call(proxy.url, "POST", "/teamclaude/reload")
        assert code == 400 and "blocked_models" in error_of(body)["message"] and "line" in error_of(body)["message"]
        assert ask(proxy, "s1", model="claude-sonnet-4-5")[0] == 200  # the last good settings serve on
