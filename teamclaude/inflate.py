"""Bounded decoding of compressed HTTP bodies (`Content-Encoding`): a body is never inflated
past a stated size, so a small compressed "bomb" cannot grow the proxy's memory.

mitmproxy's own decoding (`Message.get_content`) inflates a whole body at once and keeps the
result in a module-level cache: a 1 MB gzip body that inflates to 1 GiB costs gigabytes. Here
every decoder runs in small steps and the caller says how much output it accepts.

The bound, for one body: `limit` bytes of output, plus at most one decoder step beyond it —
64 KiB for gzip/deflate (zlib caps a step exactly), 1 MiB for zstd (a step is 32 input bytes:
4 bytes can encode a 128 KiB block), and 32 MiB for brotli (a step is 8 input bytes; brotli
1.1, which mitmproxy 11 pins, cannot cap one step's output: a meta-block is up to 16 MiB). The
decoders' own windows add at most 8 MiB (zstd, limited here) or 16 MiB (brotli).

CPU-bound: callers on the event loop run `inflate` in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Any

import brotli  # type: ignore[import-untyped]

# The zstd binding mitmproxy itself uses: `zstandard` (mitmproxy 11), the standard library's
# `compression.zstd` (Python 3.14) or its backport (mitmproxy 12).
try:
    import zstandard

    def _zstd_decompressor():
        return zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW).decompressobj()

    _ZstdError: type[Exception] = zstandard.ZstdError
except ImportError:
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        from backports import zstd  # type: ignore[import-not-found,no-redef]

    def _zstd_decompressor():
        window_log = _ZSTD_MAX_WINDOW.bit_length() - 1
        return zstd.ZstdDecompressor(options={zstd.DecompressionParameter.window_log_max: window_log})

    _ZstdError = zstd.ZstdError

# Bodies the proxy reads (requests it routes, stored bodies it redacts or logs) are inflated up
# to this size and no further; the Messages API itself refuses requests above 32 MB.
MAX_INFLATED_BODY = 32 * 1024 * 1024

# Content codings decoded here: the ones mitmproxy decodes, plus `x-gzip` (RFC 9110 §8.4.1.3).
ENCODINGS = frozenset({"identity", "none", "gzip", "x-gzip", "deflate", "deflateraw", "br", "zstd"})

_ZLIB_STEP = 64 * 1024  # most output one zlib call may give (exact)
_ZSTD_STEP = 32  # input bytes per zstd call
# zlib input is fed in slices of this size (see `_feed_zlib`); a body may hold at most this many
# gzip members (real encoders write one; thousands of empty ones are an attack on the decoder).
_ZLIB_SLICE = 16 * 1024
MAX_GZIP_MEMBERS = 1024
_BROTLI_STEP = 8  # input bytes per brotli call
_ZSTD_MAX_WINDOW = 8 * 1024 * 1024  # RFC 8878 §3.1.1.1.2: HTTP decoders need not accept more


class BodyTooLarge(Exception):
    """The body inflates to more than the accepted size."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body inflates to more than {limit} bytes")
        self.limit = limit


class UndecodableBody(ValueError):
    """The body is not valid in its content coding (corrupt, truncated, unknown coding)."""


def codings(content_encoding: str | None) -> list[str]:
    """The codings applied to a body, in the order they were applied (`gzip, br`: gzip first)."""
    parts = [part.strip().lower() for part in (content_encoding or "").split(",")]
    return [part for part in parts if part and part not in ("identity", "none")]


class Inflater:
    """Incremental decoder for one content coding: `feed` yields output in bounded pieces."""

    def __init__(self, coding: str) -> None:
        coding = coding.strip().lower()
        if coding not in ENCODINGS:
            raise UndecodableBody(f"unknown content coding {coding!r}")
        self._coding = "gzip" if coding == "x-gzip" else "deflate" if coding == "deflateraw" else coding
        self._zlib: zlib._Decompress | None = None
        self._head = b""  # deflate: the first bytes, until zlib-wrapped or raw can be told
        self._zstd: Any = None  # a zstd decompressor of the binding in use
        self._brotli = brotli.Decompressor() if self._coding == "br" else None
        self._brotli_fed = False  # an empty body is a valid empty body
        self._between_members = True  # gzip: at the start or after a complete member
        self._members = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            if self._coding in ("identity", "none"):
                if data:
                    yield data
            elif self._coding in ("gzip", "deflate"):
                yield from self._feed_zlib(data)
            elif self._coding == "zstd":
                yield from self._feed_stepped(data, _ZSTD_STEP, self._zstd_step)
            else:
                yield from self._feed_stepped(data, _BROTLI_STEP, self._brotli_step)
        except (zlib.error, _ZstdError, brotli.error) as exc:
            raise UndecodableBody(f"corrupt {self._coding} body: {exc}") from None

    def finish(self) -> None:
        """The input is complete: raise `UndecodableBody` when the stream stopped midway."""
        if self._coding in ("identity", "none"):
            return
        if self._coding == "gzip":
            complete = self._between_members
        elif self._coding == "deflate":
            complete = (self._zlib is None and not self._head) or (self._zlib is not None and self._zlib.eof)
        elif self._coding == "zstd":
            complete = self._zstd is None
        else:
            assert self._brotli is not None
            complete = self._brotli.is_finished() or not self._brotli_fed
        if not complete:
            raise UndecodableBody(f"truncated {self._coding} body")

    # ----- zlib (gzip members, zlib-wrapped or raw deflate) -----
    def _feed_zlib(self, data: bytes) -> Iterator[bytes]:
        # In slices: what a finished member leaves (`unused_data`, the padding stripped) is
        # copied once per member, so a body of tiny gzip members would cost O(members x body).
        view = memoryview(data)
        for start in range(0, len(view), _ZLIB_SLICE):
            yield from self._feed_zlib_slice(bytes(view[start:start + _ZLIB_SLICE]))

    def _feed_zlib_slice(self, data: bytes) -> Iterator[bytes]:
        if self._coding == "deflate" and self._zlib is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            first, second = data[0], data[1]
            wrapped = first & 0x0F == 8 and (first << 8 | second) % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        while data:
            if self._coding == "gzip" and self._between_members:
                data = data.lstrip(b"\0")  # zero padding between or after members (as `gzip` allows)
                if not data:
                    return
                self._members += 1
                if self._members > MAX_GZIP_MEMBERS:
                    raise UndecodableBody(f"more than {MAX_GZIP_MEMBERS} gzip members")
                self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._between_members = False
            assert self._zlib is not None
            if self._zlib.eof:
                raise UndecodableBody(f"data after the end of the {self._coding} stream")
            out = self._zlib.decompress(data, _ZLIB_STEP)
            if self._zlib.eof:
                data = self._zlib.unused_data
                self._between_members = self._coding == "gzip"
            else:
                data = self._zlib.unconsumed_tail
            if out:
                yield out

    # ----- zstd frames, brotli: small input steps -----
    @staticmethod
    def _feed_stepped(data: bytes, step: int, decode: Callable[[bytes], bytes]) -> Iterator[bytes]:
        view = memoryview(data)
        for start in range(0, len(view), step):
            out = decode(bytes(view[start:start + step]))
            if out:
                yield out

    def _zstd_step(self, data: bytes) -> bytes:
        output = b""
        while data:
            if self._zstd is None:
                self._zstd = _zstd_decompressor()
            output += self._zstd.decompress(data)
            if not self._zstd.eof:
                break
            data = self._zstd.unused_data  # the next frame (as mitmproxy reads across frames)
            self._zstd = None
        return output

    def _brotli_step(self, data: bytes) -> bytes:
        assert self._brotli is not None
        if self._brotli.is_finished():
            raise UndecodableBody("data after the end of the br stream")
        self._brotli_fed = True
        return self._brotli.process(data)


def inflate(data: bytes, content_encoding: str | None, limit: int = MAX_INFLATED_BODY) -> bytes:
    """`data` decoded per its `Content-Encoding` (codings applied in order are undone in reverse).

    Raises `BodyTooLarge` as soon as any stage produces more than `limit` bytes, and
    `UndecodableBody` for a corrupt or truncated body or a coding not in `ENCODINGS`.
    """
    for coding in reversed(codings(content_encoding)):
        inflater = Inflater(coding)
        pieces: list[bytes] = []
        size = 0
        for piece in inflater.feed(data):
            size += len(piece)
            if size > limit:
                raise BodyTooLarge(limit)
            pieces.append(piece)
        inflater.finish()
        data = b"".join(pieces)
    if len(data) > limit:
        raise BodyTooLarge(limit)
    return data
