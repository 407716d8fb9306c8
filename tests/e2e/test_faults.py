"""Faults in the proxy's own files while it runs: it keeps serving and says what went wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from teamclaude.fakeupstream import FakeUpstream
from teamclaude.proxyproc import ProxyProcess
from teamclaude.statefile import read_state
from tests.e2e.cli_runner import wait_until
from tests.e2e.harness import call, message_body, oauth_account, proxy_status, start_proxy, write_config

DISK_FULL_SCRIPT = Path(__file__).with_name("disk_full_script.py")


@pytest.fixture()
def fake():
    with FakeUpstream(accounts=[oauth_account("alice"), oauth_account("bob")]) as upstream:
        yield upstream


def ask(proxy) -> int:
    return call(proxy.url, "POST", "/v1/messages", message_body())[0]


def test_state_directory_removed_while_running_is_recreated(tmp_path, fake):
    cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
    with start_proxy(cfg) as proxy:
        wait_until(lambda: cfg.state.exists(), "the first state file")
        shutil.rmtree(cfg.state.parent)
        assert ask(proxy) == 200
        state = wait_until(lambda: read_state(cfg.state), "the state file to be written again")
        assert state["totals"]["requests"] >= 1
        assert ask(proxy) == 200
        assert proxy_status(proxy)["proxy"]["state_error"] is None
    assert oct(cfg.state.parent.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("garbage", [b"accounts: [[[\n", b"\x00\xff\xfe garbage", b"", b"{}\n"])
def test_accounts_file_replaced_by_garbage_keeps_the_last_good_accounts(tmp_path, fake, garbage):
    cfg = write_config(tmp_path, fake.url, [fake.account("alice"), fake.account("bob")])
    with start_proxy(cfg) as proxy:
        cfg.accounts.write_bytes(garbage)
        error = wait_until(lambda: proxy_status(proxy)["proxy"]["config_error"], "the bad accounts file to be reported")
        assert "accounts.yaml" in error
        assert {a["name"] for a in proxy_status(proxy)["accounts"]} == {"alice", "bob"}
        assert ask(proxy) == 200  # still served, with the last good credentials and proxy key
        assert cfg.accounts.read_bytes() == garbage  # never overwritten
    printed = "".join(proxy.output)
    assert printed.count("keeping the last good configuration") == 1
    assert "Traceback" not in printed


def test_disk_full_on_the_state_writer_is_reported_once_and_serving_continues(tmp_path, fake):
    flag = tmp_path / "disk-full"
    cfg = write_config(tmp_path / "cfg", fake.url, [fake.account("alice")])
    proxy = ProxyProcess(cfg.config, ["--set", "flow_detail=0", "-s", str(DISK_FULL_SCRIPT)],
                         env={**cfg.env(), "TEAMCLAUDE_TEST_DISK_FULL": str(flag)})
    with proxy.start():
        wait_until(lambda: read_state(cfg.state), "the first state file")
        before = read_state(cfg.state)
        flag.write_text("")
        # Requests keep the writer busy (one write per 0.5 s while something changed).
        wait_until(lambda: ask(proxy) == 200 and flag.read_text().count("refused") >= 3,
                   "three refused state writes while serving")
        assert ask(proxy) == 200
        assert "No space left on device" in proxy_status(proxy)["proxy"]["state_error"]
        assert read_state(cfg.state)["seq"] == before["seq"]  # the last good file stays readable
        flag.unlink()
        wait_until(lambda: (read_state(cfg.state) or {}).get("seq", 0) > before["seq"], "the state file to be written again")
        # The file lands (from the writer's thread) a moment before the error is cleared.
        wait_until(lambda: proxy_status(proxy)["proxy"]["state_error"] is None, "the state error to clear")
    printed = "".join(proxy.output)
    assert printed.count("No space left on device") == 1
    assert "is written again" in printed
