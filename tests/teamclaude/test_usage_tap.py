import gzip
import json
import tracemalloc

import brotli
import pytest
from hypothesis import given, settings, strategies as st

from routing.usage import MAX_TOKENS, default_prices
from teamclaude import usage_tap
from teamclaude.usage_tap import UsageTap, usage_from_json_body
from tests.teamclaude.zstd_compat import zstd_compress


def sse(name: str, data: dict, sep: str = "\n") -> bytes:
    return f"event: {name}{sep}data: {json.dumps(data)}{sep}{sep}".encode()


def a_stream(sep: str = "\n") -> bytes:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1", "model": "claude-sonnet-4-5",
            "usage": {"input_tokens": 120, "cache_creation_input_tokens": 40,
                      "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 10},
                      "cache_read_input_tokens": 900, "output_tokens": 1},
        },
    }
    parts = [sse("message_start", start, sep), sse("ping", {"type": "ping"}, sep)]
    for i in range(5):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"w{i} message_delta"}}
        parts.append(sse("content_block_delta", delta, sep))
    parts.append(sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 57}}, sep))
    parts.append(sse("message_stop", {"type": "message_stop"}, sep))
    return b"".join(parts)


def feed(tap: UsageTap, data: bytes, cuts: list[int]) -> bytes:
    out = []
    previous = 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        chunk = data[previous:cut]
        if chunk:
            returned = tap(chunk)
            assert returned is chunk
            out.append(returned)
        previous = cut
    assert tap(b"") == b""
    return b"".join(out)


def test_reads_usage_from_whole_stream():
    tap = UsageTap()
    feed(tap, a_stream(), [])
    assert tap.usage.input_tokens == 120
    assert tap.usage.cache_write_5m == 30 and tap.usage.cache_write_1h == 10
    assert tap.usage.cache_read == 900
    assert tap.usage.output_tokens == 57
    assert tap.usage.model == "claude-sonnet-4-5"


def test_crlf_framing_and_byte_by_byte_chunks():
    data = a_stream("\r\n")
    tap = UsageTap()
    assert feed(tap, data, list(range(len(data)))) == data
    assert tap.usage.output_tokens == 57 and tap.usage.input_tokens == 120


def test_gzip_encoded_stream_is_parsed_on_the_side():
    data = gzip.compress(a_stream())
    tap = UsageTap(content_encoding="gzip")
    assert feed(tap, data, [7, 100, 101]) == data
    assert tap.usage.output_tokens == 57


def test_unknown_encoding_passes_through_without_usage():
    tap = UsageTap(content_encoding="compress")
    data = a_stream()
    assert feed(tap, data, [10]) == data
    assert tap.usage.burn == 0


def test_keeps_wire_bytes_up_to_the_cap():
    data = a_stream()
    tap = UsageTap(keep_bytes=len(data))
    feed(tap, data, [5, 50])
    assert tap.copy.data() == data
    small = UsageTap(keep_bytes=10)
    feed(small, data, [5, 50])
    assert small.copy.data() is None
    off = UsageTap()  # plain mitmdump keeps nothing: the stored flow gets no partial body
    feed(off, data, [])
    assert off.copy.data() is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=2000), max_size=20))
def test_arbitrary_bytes_pass_through_unchanged(data, cuts):
    tap = UsageTap(keep_bytes=1 << 20)
    assert feed(tap, data, cuts) == data
    assert tap.copy.data() == data


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), max_size=30))
def test_any_chunking_gives_the_same_usage(cuts):
    data = a_stream()
    tap = UsageTap()
    assert feed(tap, data, cuts) == data
    assert (tap.usage.input_tokens, tap.usage.output_tokens) == (120, 57)


def test_json_body_usage():
    body = json.dumps({"model": "claude-haiku-4-5", "usage": {"input_tokens": 3, "output_tokens": 4}}).encode()
    usage = usage_from_json_body(body)
    assert usage and usage.burn == 7 and usage.model == "claude-haiku-4-5"
    assert usage_from_json_body(b"{not json") is None
    assert usage_from_json_body(b"[]") is None


def test_one_event_per_read_is_parsed_like_a_reassembled_stream():
    # Upstream usually writes one whole event per read: the tap's no-copy path. It must
    # count and parse exactly what byte-by-byte reassembly does.
    data = a_stream()
    events = [part + b"\n\n" for part in data.split(b"\n\n")[:-1]]
    whole = UsageTap()
    for event in events:
        assert whole(event) is event
    whole(b"")
    split = UsageTap()
    feed(split, data, list(range(len(data))))
    assert whole.events == split.events == len(events)
    assert whole.usage == split.usage and whole.usage.output_tokens == 57
    assert whole.model == "claude-sonnet-4-5"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\n\n", b"\n\n\n", b"data: x", b"\r\n", b"message_delta"]), max_size=30),
       st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_event_count_does_not_depend_on_chunking(pieces, cuts):
    data = b"".join(pieces)
    one_read = UsageTap()
    one_read(data)
    one_read(b"")
    chunked = UsageTap()
    feed(chunked, data, cuts)
    byte_by_byte = UsageTap()
    feed(byte_by_byte, data, list(range(len(data))))
    assert one_read.events == chunked.events == byte_by_byte.events


# ---- hostile streams: every byte passes unchanged, usage stays a set of non-negative counts ----

_json_leaves = st.one_of(
    st.none(), st.booleans(), st.text(max_size=8),
    st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=True, allow_infinity=True),
)
_usage_keys = st.sampled_from(["type", "message", "usage", "input_tokens", "output_tokens", "model",
                               "cache_creation", "cache_read_input_tokens", "ephemeral_5m_input_tokens",
                               "cache_creation_input_tokens", "delta"])
_payloads = st.recursive(_json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_usage_keys, inner, max_size=5)), max_leaves=15)
_event_names = st.sampled_from(["message_start", "message_delta", "ping", "error", "content_block_delta", ""])
_separators = st.sampled_from(["\n", "\r\n", "\r"])


def _hostile_event(name: str, payload, sep: str, raw_tail: bytes) -> bytes:
    if isinstance(payload, dict) and name.startswith("message"):
        payload = {**payload, "type": name}
    line = f"event: {name}{sep}data: {json.dumps(payload)}{sep}".encode()
    return line + raw_tail + sep.encode() * 2


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(st.tuples(_event_names, _payloads, _separators,
                              st.sampled_from([b"", b"data: {", b"data: [[[[", b": comment", b"data:\xff\xfe", b"id: 1"])),
                    max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
    compressed=st.booleans(),
)
def test_hostile_sse_passes_through_unchanged_and_usage_stays_sane(events, cuts, compressed):
    plain = b"".join(_hostile_event(*event) for event in events)
    data = gzip.compress(plain) if compressed else plain
    tap = UsageTap("gzip" if compressed else None, keep_bytes=1 << 20)
    assert feed(tap, data, cuts) == data
    assert tap.copy.data() == data
    for count in (tap.usage.input_tokens, tap.usage.output_tokens, tap.usage.cache_write_5m,
                  tap.usage.cache_write_1h, tap.usage.cache_read):
        assert isinstance(count, int) and count >= 0
    assert tap.usage.model is None or isinstance(tap.usage.model, str)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
       st.sampled_from(["gzip", "deflate", "br", "identity", "x-unknown"]))
def test_corrupt_encoded_streams_pass_through_unchanged(data, cuts, content_encoding):
    tap = UsageTap(content_encoding, keep_bytes=1 << 20)
    assert feed(tap, gzip.compress(a_stream(), mtime=0)[:20] + data, cuts) == gzip.compress(a_stream(), mtime=0)[:20] + data


@pytest.mark.parametrize("coding, encode", [
    ("br", brotli.compress), ("zstd", zstd_compress),
])
def test_brotli_and_zstd_streams_are_parsed_on_the_side(coding, encode):
    data = encode(a_stream())
    tap = UsageTap(content_encoding=coding)
    assert feed(tap, data, [3, 40]) == data
    assert tap.usage.output_tokens == 57 and tap.usage.input_tokens == 120


def test_a_compressed_bomb_in_one_read_does_not_grow_memory():
    """Gzip that inflates to 96 MiB of event data without a separator (6x the peak allowed)."""
    head = a_stream().split(b"event: message_delta")[0]
    data = gzip.compress(head + b"data: " + b"x" * (96 * 1024 * 1024))
    tap = UsageTap(content_encoding="gzip")
    tracemalloc.start()
    try:
        assert tap(data) is data
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024
    assert tap.usage.input_tokens == 120  # what came before the bomb still counts


def test_a_bomb_of_tiny_events_stops_parsing_after_a_bound(monkeypatch):
    monkeypatch.setattr(usage_tap, "_MAX_PARSED", 1024 * 1024)  # the bound, scaled down for speed
    events = 2 * 1024 * 1024  # 20 MiB of events
    data = gzip.compress(b"data: {}\n\n" * events)
    tap = UsageTap(content_encoding="gzip")
    assert feed(tap, data, list(range(0, len(data), 65536))) == data
    assert tap.events < events  # gave up parsing part way


@pytest.mark.parametrize("value", ["1" + "0" * 400, "1e400", "-5", "NaN", "Infinity", '"12"', "1.5", "true"])
def test_hostile_usage_numbers_are_clamped_and_cost_stays_finite(value):
    delta = b'event: message_delta\ndata: {"type": "message_delta", "usage": {"output_tokens": %s}}\n\n' % value.encode()
    tap = UsageTap()
    feed(tap, a_stream().split(b"event: message_delta")[0] + delta, [])
    assert 0 <= tap.usage.output_tokens <= MAX_TOKENS
    body = b'{"model": "claude-opus-4", "usage": {"input_tokens": %s, "output_tokens": %s}}' % (value.encode(), value.encode())
    usage = usage_from_json_body(body)
    assert usage is not None and 0 <= usage.input_tokens <= MAX_TOKENS
    cost = default_prices().cost(usage + usage + tap.usage)
    assert cost >= 0 and cost == cost and cost < float("inf")


def test_a_huge_count_is_clamped_not_dropped():
    usage = usage_from_json_body(b'{"usage": {"output_tokens": 1' + b"0" * 400 + b"}}")
    assert usage is not None and usage.output_tokens == MAX_TOKENS
