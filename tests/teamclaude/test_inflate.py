import gzip
import zlib

import brotli
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mitmproxy.net import encoding

from teamclaude.inflate import BodyTooLarge, Inflater, UndecodableBody, codings, inflate
from tests.teamclaude.zstd_compat import zstd_compress

BODY = b'{"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "' + b"hi " * 4000 + b'"}]}'
LIMIT = 1024 * 1024


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


ENCODERS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": lambda data: brotli.compress(data, quality=1),  # quality 11 takes ~8 s on a 256 MiB bomb
    "zstd": zstd_compress,
}


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_each_coding_round_trips(coding):
    assert inflate(ENCODERS[coding](BODY), coding) == BODY


@pytest.mark.parametrize("coding", ["identity", "none", None, "", "Identity"])
def test_identity_is_the_body_itself(coding):
    assert inflate(BODY, coding) == BODY


def test_raw_deflate_without_zlib_wrapper_is_read_like_mitmproxy_does():
    assert inflate(raw_deflate(BODY), "deflate") == BODY == encoding.decode(raw_deflate(BODY), "deflate")


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_exactly_at_the_bound_is_accepted_one_byte_more_is_not(coding):
    body = b"a" * LIMIT
    assert inflate(ENCODERS[coding](body), coding, limit=LIMIT) == body
    with pytest.raises(BodyTooLarge):
        inflate(ENCODERS[coding](body + b"a"), coding, limit=LIMIT)


def test_identity_body_over_the_bound_is_too_large():
    with pytest.raises(BodyTooLarge):
        inflate(b"a" * (LIMIT + 1), None, limit=LIMIT)


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_a_bomb_stops_at_the_bound_without_inflating_the_rest(coding):
    """256 MiB of zeros: the decoder gives up after about `limit` bytes of output."""
    bomb = ENCODERS[coding](b"\0" * (256 * 1024 * 1024))
    inflater = Inflater(coding)
    produced = 0
    with pytest.raises(BodyTooLarge):
        for piece in inflater.feed(bomb):
            produced += len(piece)
            assert len(piece) <= 32 * 1024 * 1024  # one step's output (brotli's is the largest)
            if produced > LIMIT:
                raise BodyTooLarge(LIMIT)
    assert produced < LIMIT + 32 * 1024 * 1024
    with pytest.raises(BodyTooLarge):
        inflate(bomb, coding, limit=LIMIT)


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_corrupt_stream_is_undecodable(coding):
    encoded = bytearray(ENCODERS[coding](BODY))
    middle = len(encoded) // 2
    encoded[middle:middle + 8] = b"\xff\x00\xfe\x01garbage"[:8]
    with pytest.raises(UndecodableBody):
        inflate(bytes(encoded), coding)


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_truncated_stream_is_undecodable(coding):
    with pytest.raises(UndecodableBody):
        inflate(ENCODERS[coding](BODY)[:-5], coding)


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_empty_body_is_empty(coding):
    assert inflate(b"", coding) == b""


def test_unknown_coding_is_undecodable():
    with pytest.raises(UndecodableBody):
        inflate(BODY, "compress")


def test_concatenated_gzip_members_are_one_body():
    assert inflate(gzip.compress(b"first ") + gzip.compress(b"second"), "gzip") == b"first second"


def test_zero_padding_after_a_gzip_member_is_ignored_as_gzip_does():
    padded = gzip.compress(BODY) + b"\0" * 10
    assert inflate(padded, "gzip") == BODY == gzip.decompress(padded)


def test_garbage_after_a_gzip_member_is_undecodable():
    with pytest.raises(UndecodableBody):
        inflate(gzip.compress(BODY) + b"trailing", "gzip")


def test_concatenated_members_count_against_one_bound():
    member = gzip.compress(b"a" * (LIMIT // 2 + 1))
    with pytest.raises(BodyTooLarge):
        inflate(member + member, "gzip", limit=LIMIT)


def test_concatenated_zstd_frames_are_one_body():
    frames = zstd_compress(b"first ") + zstd_compress(b"second")
    assert inflate(frames, "zstd") == b"first second"


def test_zstd_frame_asking_for_a_huge_window_is_refused():
    # The frame declares a 128 MiB window and no content size: the decoder would allocate it.
    body = zstd_compress(b"x" * 1000, window_log=27)
    with pytest.raises(UndecodableBody):
        inflate(body, "zstd")


def test_stacked_codings_are_undone_in_reverse_order():
    assert codings("gzip, br") == ["gzip", "br"]
    assert inflate(brotli.compress(gzip.compress(BODY)), "gzip, br") == BODY


@given(st.binary(max_size=5000), st.sampled_from(sorted(ENCODERS)), st.integers(min_value=1, max_value=200))
def test_any_split_of_the_input_gives_the_same_body(data, coding, split):
    encoded = ENCODERS[coding](data)
    inflater = Inflater(coding)
    pieces = list(inflater.feed(encoded[:split])) + list(inflater.feed(encoded[split:]))
    inflater.finish()
    assert b"".join(pieces) == data


@given(st.binary(max_size=300), st.sampled_from(sorted(ENCODERS)))
def test_arbitrary_bytes_never_raise_anything_but_the_two_errors(data, coding):
    try:
        inflate(data, coding, limit=LIMIT)
    except (BodyTooLarge, UndecodableBody):
        pass
