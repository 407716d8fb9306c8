"""A compressed request body that inflates far past any real request (issue 12, item 7),
sent on a raw socket to a real mitmdump while a normal streaming request runs."""

from __future__ import annotations

import json

from teamclaude.fakeupstream import FakeUpstream
from teamclaude.inflate import MAX_INFLATED_BODY
from tests.e2e.bodies import MIB, bomb_headers, gzip_bomb, peak_rss_mib, send_raw, stream_alongside
from tests.e2e.harness import call, message_body, oauth_account, proxy_status, start_proxy, write_config

BOMB = 256 * MIB  # inflated; 256 KiB on the wire


def test_a_bomb_gets_413_memory_stays_bounded_and_other_streams_keep_flowing(tmp_path):
    alice = oauth_account("alice")
    with FakeUpstream([alice]) as fake:
        cfg = write_config(tmp_path, fake.url, [alice], oauth_token_url=fake.url + "/v1/oauth/token")
        with start_proxy(cfg) as proxy:
            assert call(proxy.url, "POST", "/v1/messages", message_body())[0] == 200  # warm
            assert proxy.process is not None
            before = peak_rss_mib(proxy.process.pid)
            with stream_alongside(proxy.url, 60, 25) as gaps:
                bomb = gzip_bomb(BOMB)
                status, body = send_raw(proxy.url, "/v1/messages", bomb, bomb_headers())
                assert status == 413
                error = json.loads(body)
                assert error["type"] == "error" and error["error"]["type"] == "request_too_large"
                assert str(MAX_INFLATED_BODY) in error["error"]["message"]
                # The same without the key, to the pass-through token endpoint: forwarded, and
                # its stored copy redacted without inflating it.
                status, _ = send_raw(proxy.url, "/v1/oauth/token", bomb, bomb_headers(key=None))
                assert 200 <= status < 600
            assert len(gaps) > 10
            assert max(gaps[1:]) < 1.0, f"the concurrent stream stalled {max(gaps[1:]):.2f}s"
            grown = peak_rss_mib(proxy.process.pid) - before
            assert grown < 150, f"peak RSS grew {grown:.0f} MiB for a {BOMB // MIB} MiB bomb"
            assert proxy_status(proxy)["accounts"][0]["inflight"] == 0
            assert [r.path for r in fake.requests if r.path == "/v1/messages"] == ["/v1/messages"] * 2  # never the bomb
