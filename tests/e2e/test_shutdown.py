"""A proxy stopped with flows in flight: `-w` writes them (mitmproxy's Save addon) — without
a credential in any of them, whatever signal stopped it."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from mitmproxy.io import FlowReader

from teamclaude.fakeupstream import FakeUpstream
from tests.e2e.harness import PROXY_KEY, call, message_body, oauth_account, start_proxy, write_config


def _wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_flows_in_flight_at_shutdown_are_saved_without_credentials(tmp_path, stop_signal):
    alice, bob = oauth_account("alice"), oauth_account("bob")  # bob: the client's own login
    with FakeUpstream(accounts=[alice, bob]) as fake:
        cfg = write_config(tmp_path, fake.url, [fake.account("alice")])
        flows_file = tmp_path / "flows.mitm"
        fake.inject("alice", "hang")  # a pooled request waiting for its answer
        fake.inject("bob", "hang", path="/v1/oauth/token")  # the client refreshing its own login
        proxy = start_proxy(cfg, ["-w", str(flows_file)])
        token_body = json.dumps({"grant_type": "refresh_token", "refresh_token": bob.refresh_token,
                                 "client_id": fake.client_id})
        clients = [
            threading.Thread(target=_quietly, args=(call, proxy.url, "POST", "/v1/messages", message_body(stream=True))),
            threading.Thread(target=_quietly, args=(call, proxy.url, "POST", "/v1/oauth/token", token_body.encode()),
                             kwargs={"headers": {"authorization": f"Bearer {bob.access_token}"}, "key": None}),
        ]
        try:
            for client in clients:
                client.start()
            _wait_for(lambda: fake.request_count >= 2)
            assert proxy.process is not None
            proxy.process.send_signal(stop_signal)
            proxy.process.wait(20)
        finally:
            proxy.stop()  # also when a wait failed: no proxy outlives the test
            for client in clients:
                if client.ident is not None:
                    client.join(20)
    raw = flows_file.read_bytes()
    secrets = [alice.access_token, alice.refresh_token, bob.access_token, bob.refresh_token, PROXY_KEY]
    assert [s for s in secrets if s.encode() in raw] == []
    with flows_file.open("rb") as handle:
        flows = list(FlowReader(handle).stream())
    assert {f.request.path for f in flows} >= {"/v1/messages", "/v1/oauth/token"}


def _quietly(function, *args, **kwargs) -> None:
    try:
        function(*args, **kwargs)
    except OSError:
        pass  # the proxy went away mid-request: expected here
