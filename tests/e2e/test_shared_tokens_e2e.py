"""Three real proxies (mitmdump) of one pool on one real Redis (`shared_state`), each with its
own config directory, accounts file and state file, all starting from the same OAuth pair,
all in front of one fake upstream: refresh tokens are single use, so the pool must refresh
each account once, survive a proxy killed in the middle of a refresh, and a Redis lost."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from teamclaude.accounts_store import Account, AccountsStore
from teamclaude.fakeupstream import FakeAccount, FakeUpstream
from teamclaude.proxyproc import ProxyProcess
from teamclaude.shared import names
from tests.e2e.cli_runner import wait_until
from tests.e2e.harness import (
    ConfigDir,
    apikey_account,
    call,
    message_body,
    oauth_account,
    proxy_status,
    start_proxy,
    write_config,
)
from tests.e2e.test_accounts_e2e import ask, expire_in, header, oauth_urls, served
from tests.redis_server import RedisServer

CONCURRENCY = 50


def pool_configs(tmp_path: Path, fake: FakeUpstream, redis_server: RedisServer, accounts: list[FakeAccount],
                 *, expired: bool) -> list[ConfigDir]:
    configs = []
    for label in ("one", "two", "three"):
        cfg = write_config(tmp_path / label, fake.url, accounts, **oauth_urls(fake), shared_state=redis_server.url,
                           probe_gate=False, max_inflight_per_account=CONCURRENCY + 10)
        if expired:
            expire_in(cfg, "alice", -60)
        configs.append(cfg)
    return configs


@contextmanager
def running(configs: list[ConfigDir]) -> Iterator[list[ProxyProcess]]:
    with ExitStack() as stack:
        proxies = []
        for cfg in configs:
            proxy = start_proxy(cfg)
            stack.callback(proxy.stop)
            proxies.append(proxy)
        yield proxies


def saved(cfg: ConfigDir) -> Account:
    account = AccountsStore(cfg.accounts).read().get("alice")
    assert account is not None
    return account


def alice_state(proxy: ProxyProcess) -> dict[str, Any]:
    return next(a for a in proxy_status(proxy)["accounts"] if a["name"] == "alice")


def ask_as_alice(proxy: ProxyProcess) -> int:
    return call(proxy.url, "POST", "/v1/messages", message_body(), headers={"x-teamclaude-account": "alice"})[0]


def test_fifty_requests_over_three_proxies_make_one_refresh(tmp_path, redis_server):
    alice = oauth_account("alice")
    with FakeUpstream([alice]) as fake:
        configs = pool_configs(tmp_path, fake, redis_server, [alice], expired=True)
        fake.inject("alice", "token_delay", seconds=1.0)  # the requests pile up behind the refresh
        with running(configs) as proxies, ThreadPoolExecutor(CONCURRENCY) as pool:
            statuses = list(pool.map(lambda i: ask(proxies[i % len(proxies)]), range(CONCURRENCY)))
            assert statuses == [200] * CONCURRENCY
            rotated = fake.account("alice")
            assert fake.token_counts() == {"alice": {"calls": 1, "rotated": 1}}
            for proxy in proxies:  # each serves with the rotated pair now
                assert ask(proxy) == 200
            assert {header(r, "authorization") for r in served(fake)} == {f"Bearer {rotated.access_token}"}
            assert len(served(fake)) == CONCURRENCY + len(proxies)
            shared = [alice_state(proxy)["token_shared"] for proxy in proxies]
            assert {s["rotation"] for s in shared} == {1} and len({s["by"] for s in shared}) == 1
    secrets = (rotated.access_token, rotated.refresh_token, alice.access_token, alice.refresh_token)
    for proxy, cfg in zip(proxies, configs, strict=True):  # no token in a log or a state file
        shown = "".join(proxy.output) + cfg.state.read_text()
        assert not any(secret in shown for secret in secrets)
    for cfg in configs:  # mirrored into every proxy's own accounts file
        assert (saved(cfg).access_token, saved(cfg).refresh_token) == (rotated.access_token, rotated.refresh_token)
    stored = redis_server.client().hgetall(names.token(f"id:{alice.uuid}"))
    assert stored[b"refresh_token"].decode() == rotated.refresh_token


def test_a_proxy_killed_during_its_refresh_logs_no_account_out(tmp_path, redis_server):
    alice = oauth_account("alice")
    with FakeUpstream([alice]) as fake:
        configs = pool_configs(tmp_path, fake, redis_server, [alice], expired=True)
        # The holder's token call is held at the fake; it dies before the answer, and the
        # fake (noticing the hang-up before committing) rotates nothing.
        fake.inject("alice", "token_delay", seconds=120)
        with running(configs) as proxies:
            first = threading.Thread(target=lambda: _ignore_errors(ask, proxies[0]), daemon=True)
            first.start()
            wait_until(lambda: fake.token_counts() or any(r.path == "/v1/oauth/token" for r in fake.requests),
                       "a proxy's token call reached the fake")
            owner = wait_until(lambda: redis_server.client().get(names.refresh_lease(f"id:{alice.uuid}")), "the lease is held")
            pid = int(owner.decode().split("/")[0].split(":")[-2])
            holder = next(p for p in proxies if p.process is not None and p.process.pid == pid)
            assert holder.process is not None
            os.killpg(holder.process.pid, signal.SIGKILL)
            holder.process.wait(10)
            first.join(30)
            others = [p for p in proxies if p is not holder]
            with ThreadPoolExecutor(10) as pool:
                statuses = list(pool.map(lambda i: ask(others[i % len(others)]), range(10)))
            assert statuses == [200] * 10  # once the dead holder's lease lapsed, one took over
            counts = fake.token_counts()["alice"]
            assert counts == {"calls": 2, "rotated": 1}
            rotated = fake.account("alice")
            for proxy in others:
                state = alice_state(proxy)
                assert not state["needs_login"] and state["status"] != "needs-login"
                assert state["token_shared"]["rotation"] == 1
            # The killed proxy comes back with its old pair: it takes the pool's, no refresh.
            killed_cfg = configs[proxies.index(holder)]
            with start_proxy(killed_cfg) as back:
                assert ask(back) == 200
                assert alice_state(back)["token_shared"]["rotation"] == 1
            assert fake.token_counts()["alice"] == counts
    for cfg in configs:
        assert saved(cfg).refresh_token == rotated.refresh_token
    assert {header(r, "authorization") for r in served(fake)} == {f"Bearer {rotated.access_token}"}


def _ignore_errors(function, *args):
    try:
        return function(*args)
    except OSError:
        return None


def test_with_redis_lost_no_proxy_refreshes_and_none_logs_out(tmp_path, redis_server):
    alice, key = oauth_account("alice"), apikey_account("key")
    with FakeUpstream([alice, key]) as fake:
        configs = pool_configs(tmp_path, fake, redis_server, [alice, key], expired=False)
        with running(configs) as proxies:
            # At start the pool puts its pair into Redis (no refresh: it is valid).
            for proxy in proxies:
                wait_until(lambda p=proxy: (alice_state(p)["token_shared"] or {}).get("rotation") == 1,
                           "the pair is shared")
            redis_server.kill()
            for proxy in proxies:  # still serving with their tokens
                assert ask_as_alice(proxy) == 200
                assert served(fake)[-1].account == "alice"
            # Upstream now refuses alice's token: a refresh is needed, and Redis is away.
            fake.expire_access_token("alice")
            for proxy in proxies:
                assert call(proxy.url, "POST", "/teamclaude/switch", {"account": "alice"})[0] == 200
                assert ask(proxy) == 200
                assert served(fake)[-1].account == "key"  # failed over
                state = alice_state(proxy)
                assert not state["needs_login"] and state["status"] != "needs-login"
                assert "not refreshed without the pool's lease" in state["token_refresh_error"]
            assert fake.token_counts() == {}
            # Redis back, empty: one proxy re-seeds it from its pair with one refresh; the
            # others take that pair.
            redis_server.restart()
            for proxy in proxies:
                wait_until(lambda p=proxy: ask(p) == 200 and served(fake)[-1].account == "alice",
                           "alice serves again", timeout=60)
            assert fake.token_counts() == {"alice": {"calls": 1, "rotated": 1}}
            rotated = fake.account("alice")
            for proxy in proxies:
                assert alice_state(proxy)["token_shared"]["rotation"] == 2
        alice_calls = [r for r in served(fake) if r.account == "alice"]
        assert header(alice_calls[-1], "authorization") == f"Bearer {rotated.access_token}"
    for cfg in configs:
        assert saved(cfg).refresh_token == rotated.refresh_token


def test_a_rotation_committed_for_a_killed_holder_needs_a_login_and_nothing_else(tmp_path, redis_server):
    """The worst case: the token endpoint rotated the pair and the answer died with its
    proxy. No proxy can have the new pair; they must say "needs login", not loop, and serve
    with the other accounts."""
    alice, key = oauth_account("alice"), apikey_account("key")
    with FakeUpstream([alice, key]) as fake:
        configs = pool_configs(tmp_path, fake, redis_server, [alice, key], expired=True)
        fake.inject("alice", "token_delay", seconds=120, commit_if_gone=True)
        with running(configs) as proxies:
            threading.Thread(target=lambda: _ignore_errors(ask_as_alice, proxies[0]), daemon=True).start()
            owner = wait_until(lambda: redis_server.client().get(names.refresh_lease(f"id:{alice.uuid}")),
                               "a proxy refreshes alice")
            wait_until(lambda: any(r.path == "/v1/oauth/token" for r in fake.requests), "its token call is held")
            pid = int(owner.decode().split("/")[0].split(":")[-2])
            holder = next(p for p in proxies if p.process is not None and p.process.pid == pid)
            assert holder.process is not None
            os.killpg(holder.process.pid, signal.SIGKILL)
            holder.process.wait(10)
            wait_until(lambda: fake.token_counts().get("alice", {}).get("rotated") == 1, "the fake committed")
            others = [p for p in proxies if p is not holder]
            for proxy in others:
                ask_as_alice(proxy)  # pinned to alice: this proxy tries her refresh (waiting out the lease)
                wait_until(lambda p=proxy: alice_state(p)["needs_login"], "alice needs a login", timeout=60)
                assert ask(proxy) == 200 and served(fake)[-1].account == "key"
            calls = fake.token_counts()["alice"]["calls"]
            assert calls <= 1 + len(others)  # at most one refused try per proxy, then none
            for proxy in others:
                assert ask(proxy) == 200
            assert fake.token_counts()["alice"]["calls"] == calls
