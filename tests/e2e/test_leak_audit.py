"""The leak audit (behaviour §11, §13): a whole session with every writer on, then every file and
every printed line searched for every secret the session handled.

OAuth and API-key accounts, a proxy-side token refresh (old and new tokens), a client-side
token refresh through the pass-through path, a transparent failover, a hold, a wrong key,
a browser request; `-w` flows, a HAR export, the request log with bodies, the state file
and mitmdump printing every flow in full (`flow_detail=4`).
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from mitmproxy.io import FlowReader

from teamclaude.accounts_store import AccountsDoc, AccountsStore
from teamclaude.attempt import FAILOVER_MARK
from teamclaude.fakeupstream import FakeAccount, FakeUpstream
from teamclaude.request_log import written_at
from tests.e2e.harness import (
    PROXY_KEY,
    ConfigDir,
    apikey_account,
    call,
    message_body,
    oauth_account,
    write_config,
)
from teamclaude.proxyproc import ProxyProcess

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
CLIENTS_OWN_TOKEN = "sk-ant-oat01-the-clients-own-claude-code-token"
FAST_STREAM = {"x-fake-chunks": "4", "x-fake-chunk-interval-ms": "5"}


def expire_soon(cfg: ConfigDir, name: str) -> None:
    def change(doc: AccountsDoc) -> None:
        doc.get(name).expires_at = int((time.time() + 60) * 1000)  # inside refresh_skew_s

    AccountsStore(cfg.accounts).update(change)


def secrets_of(*accounts: FakeAccount) -> set[str]:
    found = {PROXY_KEY, CLIENTS_OWN_TOKEN}
    for account in accounts:
        found |= {s for s in (account.access_token, account.refresh_token, account.api_key) if s}
    return found


def written_files(root: Path, cfg: ConfigDir) -> list[Path]:
    """Every file under the test's directory except the accounts file (the secret store) and its lock."""
    keep_out = {cfg.accounts, cfg.accounts.with_name(cfg.accounts.name + ".lock")}
    return [p for p in root.rglob("*") if p.is_file() and p not in keep_out and ".lock" not in p.name]


def test_no_secret_in_any_file_written_or_line_printed(tmp_path):
    alice, bob, ci, carol = oauth_account("alice"), oauth_account("bob"), apikey_account("ci-key"), oauth_account("carol")
    with FakeUpstream([alice, bob, ci, carol]) as fake:
        cfg = write_config(
            tmp_path / "cfg", fake.url, [alice, bob, ci],
            oauth_token_url=fake.url + "/v1/oauth/token", oauth_profile_url=fake.url + "/api/oauth/profile",
            log_dir=str(tmp_path / "requests"), log_bodies=True, api_keys_last_resort=False,
            hold_budget_s=20, hold_poll_s=10,
        )
        expire_soon(cfg, "alice")
        flows_file, har_file = tmp_path / "out" / "flows.mitm", tmp_path / "out" / "flows.har"
        flows_file.parent.mkdir()
        proxy = ProxyProcess(cfg.config, ["--set", "flow_detail=4", "-w", str(flows_file),
                                          "--set", f"hardump={har_file}"], env=cfg.env())
        with proxy.start():
            url = proxy.url

            def switch(name: str) -> None:
                assert call(url, "POST", "/teamclaude/switch", {"account": name})[0] == 200

            # The client refreshes its own token through the proxy (pass-through, rotated by the fake).
            code, _, _ = call(url, "POST", "/v1/oauth/token", {
                "grant_type": "refresh_token", "refresh_token": carol.refresh_token, "client_id": CLIENT_ID}, key=None)
            assert code == 200
            # alice's token is about to expire: the proxy refreshes it first (old and new pair).
            switch("alice")
            assert call(url, "POST", "/v1/messages", message_body(), headers={"x-claude-code-session-id": "s-1"})[0] == 200
            code, _, body = call(url, "POST", "/v1/messages", message_body(stream=True), headers=FAST_STREAM)
            assert code == 200 and b"message_stop" in body
            # alice's 5h window is rejected: transparent failover to bob.
            fake.inject("alice", "429_window", window="5h")
            assert call(url, "POST", "/v1/messages", message_body())[0] == 200
            # The API key account.
            switch("ci-key")
            assert call(url, "POST", "/v1/messages", message_body(stream=True), headers=FAST_STREAM)[0] == 200
            # Everything throttled for a moment: the request fails over, is held, then served.
            fake.inject("ci-key", "429_retry_after", seconds=2)
            fake.inject("bob", "429_retry_after", seconds=2)
            assert call(url, "POST", "/v1/messages", message_body())[0] == 200
            # Local endpoints, a wrong key (the client's own token), a browser.
            assert call(url, "GET", "/teamclaude/status")[0] == 200
            assert call(url, "GET", "/capacity")[0] == 200
            assert call(url, "POST", "/v1/messages", message_body(), key=None,
                        headers={"authorization": f"Bearer {CLIENTS_OWN_TOKEN}"})[0] == 401
            assert call(url, "GET", "/teamclaude/status", headers={"origin": "https://evil.example"})[0] == 403
            status = json.loads(call(url, "GET", "/teamclaude/status")[2])
        printed = "".join(proxy.output)

        assert [c.account for c in fake.token_calls] == ["carol", "alice"]
        new_carol, new_alice = fake.account("carol"), fake.account("alice")
        assert new_alice.refresh_token != alice.refresh_token and new_carol.refresh_token != carol.refresh_token
        secrets = secrets_of(alice, bob, ci, carol, new_alice, new_carol)

    # The session did what the audit is about.
    assert {a["name"]: a["usage"]["requests"] > 0 for a in status["accounts"]} == {"alice": True, "bob": True, "ci-key": True}
    with flows_file.open("rb") as handle:
        flows = list(FlowReader(handle).stream())
    assert len(flows) == 13
    pooled = [f.metadata["teamclaude"] for f in flows if f.metadata["teamclaude"].get("kind") == "pooled"]
    held = [m for m in pooled if m.get("held_s", 0) >= 1]
    assert held and held[0]["failed_attempts"] and held[0]["outcome"]["status"] == 200
    assert any(f.marked == FAILOVER_MARK for f in flows)
    har_entries = json.loads(har_file.read_text())["log"]["entries"]
    assert len(har_entries) == len(flows)
    har_headers = [{h["name"].lower(): h["value"] for h in e["request"]["headers"]} for e in har_entries]
    assert {h.get("authorization") for h in har_headers} >= {"<account:alice>", "<account:bob>"}
    assert {h.get("x-api-key") for h in har_headers} >= {"<account:ci-key>"}
    assert any("message_stop" in e["response"]["content"].get("text", "") for e in har_entries)  # streams kept
    log_dir = tmp_path / "requests"
    logs = sorted(os.listdir(log_dir))
    assert len(logs) == len(flows) and all(written_at(name) for name in logs)
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    assert {stat.S_IMODE((log_dir / name).stat().st_mode) for name in logs} == {0o600}
    records = [json.loads((log_dir / name).read_text()) for name in logs]
    assert {r["kind"] for r in records} == {"pooled", "pass-through", "local", "refused"}
    assert any(r["failovers"] and r["held_s"] >= 1 for r in records if r["kind"] == "pooled")
    assert all("body" in r["request"] for r in records)

    # The audit itself.
    files = written_files(tmp_path, cfg)
    assert {flows_file, har_file, cfg.state} <= set(files)
    leaks = [(str(path.relative_to(tmp_path)), secret[:16]) for path in files for secret in secrets
             if secret.encode() in path.read_bytes()]
    leaks += [("printed output", secret[:16]) for secret in secrets if secret in printed]
    assert leaks == []
    assert "new session" in printed or "alice" in printed  # flow_detail printed the flows
