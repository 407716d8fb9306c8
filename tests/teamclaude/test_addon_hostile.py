"""Hostile input at the addon's edges (hypothesis), through the real hooks.

- arbitrary bytes in `anthropic-ratelimit-*` and `retry-after` values: never an exception,
  never a bench longer than the window that caused it, the state file still encodes;
- arbitrary request bodies, encodings and session ids: never an internal error.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mitmproxy import http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons

from routing.failures import FIVE_HOURS_S, WEEK_S
from routing.ratelimits import parse_ratelimit_headers, window_applies_to_model
from teamclaude.addon import TeamClaude
from teamclaude.service import Service, load_config
from teamclaude.statefile import encode_state
from tests.teamclaude.test_addon import PROXY_KEY, a_flow, write_config

HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
RATE_NAMES = [
    f"anthropic-ratelimit-unified-{window}-{field}"
    for window in ("5h", "7d", "7d_oi", "7d_sonnet") for field in ("status", "reset", "utilization")
] + [
    "anthropic-ratelimit-unified-status", "anthropic-ratelimit-unified-reset",
    "anthropic-ratelimit-unified-representative-claim", "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-requests-remaining", "retry-after",
]
MODEL = "claude-sonnet-4-5"
header_names = st.one_of(
    st.sampled_from(RATE_NAMES).map(str.encode),
    st.binary(min_size=1, max_size=20).map(lambda tail: b"anthropic-ratelimit-" + tail),
)
header_values = st.one_of(
    st.sampled_from([b"rejected", b"allowed", b"1e309", b"-1", b"nan", b"inf", b"99999999999999999999",
                     b"0x10", b"1.5", b"\xff\xfe", b"", b" rejected ", b"REJECTED"]),
    st.binary(max_size=30),
    st.integers(min_value=-10**12, max_value=10**13).map(lambda n: str(n).encode()),
)


@pytest.fixture
def addon(tmp_path) -> Iterator[TeamClaude]:
    config = write_config(tmp_path, accounts=[
        {"name": "alice", "type": "oauth", "access_token": "sk-ant-oat01-alice-access-secret",
         "refresh_token": "sk-ant-ort01-alice-refresh-secret", "expires_at": 4_102_444_800_000}])
    addon = TeamClaude()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, teamclaude_config=str(config))
        yield addon


def longest_allowed_bench(pairs: list[tuple[bytes, bytes]], status: int) -> float:
    """What behaviour §6 allows: the longest rejected window named, else 5 hours (retry-after cap)."""
    limits = parse_ratelimit_headers([(n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
                                      for n, v in pairs])
    rejected = [name for name, window in limits.windows.items()
                if window.rejected and window_applies_to_model(name, MODEL)]
    if status == 429 and any(name != "5h" for name in rejected):
        return WEEK_S
    return FIVE_HOURS_S


@HYPOTHESIS
@given(pairs=st.lists(st.tuples(header_names, header_values), max_size=12),
       status=st.sampled_from([200, 429, 401, 403, 500, 529]))
@example(pairs=[(b"anthropic-ratelimit-unified-5h-status", b"rejected"),
                (b"anthropic-ratelimit-unified-5h-reset", b"99999999999")], status=429)
@example(pairs=[(b"anthropic-ratelimit-unified-7d_sonnet-status", b"rejected"),
                (b"anthropic-ratelimit-unified-7d_sonnet-reset", b"9999999999")], status=429)
@example(pairs=[(b"anthropic-ratelimit-unified-status", b"allowed"), (b"retry-after", b"99999999999")], status=429)
@example(pairs=[(b"anthropic-ratelimit-unified-5h-utilization", b"nan"),
                (b"anthropic-ratelimit-unified-5h-reset", b"1e309")], status=200)
def test_hostile_rate_limit_headers_never_crash_and_never_overbench(addon, pairs, status):
    addon.serve(Service(load_config(addon._config_path)))
    service = addon.service

    async def one() -> None:
        flow = a_flow("POST", "/v1/messages", b'{"model":"%s"}' % MODEL.encode(), x_teamclaude_key=PROXY_KEY)
        await addon.request(flow)
        assert flow.response is None
        flow.response = http.Response.make(status, b"", http.Headers([(b"content-type", b"application/json"), *pairs]))
        before = service.clock()
        addon.responseheaders(flow)
        after = service.clock()
        [alice] = service.router.snapshot(after)["accounts"]
        bench = alice["bench_until"]
        assert bench is None or before <= bench <= after + longest_allowed_bench(pairs, status)
        encode_state(service.snapshot(), 1, after)  # hostile values never break the state file
        flow.error = None
        await addon.error(flow)  # finish the flow: the slot is released whatever the headers said
        assert service.router.snapshot(service.clock())["accounts"][0]["inflight"] == 0

    asyncio.run(one())


bodies = st.one_of(
    st.binary(max_size=300),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
                 lambda inner: st.one_of(st.lists(inner, max_size=3),
                                         st.dictionaries(st.sampled_from(["model", "stream", "metadata", "user_id",
                                                                          "session_id", "messages", "x"]),
                                                         inner, max_size=4)),
                 max_leaves=10).map(lambda value: repr(value).replace("'", '"').encode()),
    st.sampled_from([b'{"model": 5, "stream": "yes"}', b'{"metadata": {"user_id": "{\\"session_id\\": 7}"}}',
                     b'{"metadata": {"user_id": "user_x_session_' + b"a" * 200 + b'"}}',
                     b"[" * 5000, b'{"model": "' + b"m" * 100000 + b'"}', b"\x1f\x8b garbage"]),
)
session_ids = st.one_of(st.none(), st.binary(max_size=200), st.sampled_from([b"\x00", b" " * 10, b"a" * 129, b"\xff"]))


@HYPOTHESIS
@given(body=bodies, session=session_ids, encoding=st.sampled_from([None, "gzip", "br", "bogus"]),
       path=st.sampled_from(["/v1/messages", "/v1/messages/count_tokens", "/v1/models", "/v1/complete"]))
def test_malformed_bodies_and_session_ids_are_routed_never_an_internal_error(addon, body, session, encoding, path):
    service = addon.service

    async def one() -> None:
        flow = a_flow("POST", path, b"", x_teamclaude_key=PROXY_KEY)
        if session is not None:
            flow.request.headers.fields += ((b"x-claude-code-session-id", session),)
        if encoding is not None:
            flow.request.headers["content-encoding"] = encoding
        flow.request.raw_content = gzip.compress(body) if encoding == "gzip" and body[:1] == b"{" else body
        await addon.request(flow)
        assert flow.response is None, flow.response and flow.response.content
        meta = flow.metadata["teamclaude"]
        assert meta["account"] == "alice"
        sid = meta["session"]
        assert sid is None or (isinstance(sid, str) and sid.isprintable() and 0 < len(sid) <= 128)
        assert meta["model"] is None or isinstance(meta["model"], str)
        await addon.error(flow)
        assert service.router.snapshot(service.clock())["accounts"][0]["inflight"] == 0

    asyncio.run(one())
