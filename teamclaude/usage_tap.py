"""The SSE stream tap: passes every chunk through untouched while reading usage beside it.

mitmproxy calls the tap once per chunk read from upstream (TCP reads, not SSE events) and
once with b"" at the end. The tap returns each chunk object itself, so the client receives
exactly the upstream bytes with no delay; events split across chunks are reassembled in a
side buffer used only for parsing (behaviour §8.1).
"""

from __future__ import annotations

import json

from routing.usage import Usage
from teamclaude.inflate import ENCODINGS, Inflater, UndecodableBody, codings

_SEPARATORS = (b"\n\n", b"\r\n\r\n", b"\r\r")
# An event larger than this without a separator is not SSE we understand: stop parsing.
_MAX_PENDING = 4 * 1024 * 1024
# Decoded bytes parsed per stream: a real answer is a few MB; past this (a compressed bomb
# from upstream) the tap only passes bytes through.
_MAX_PARSED = 256 * 1024 * 1024


# Bytes of a streamed pass-through answer kept so the stored flow can show it.
KEEP_WIRE_BYTES = 1024 * 1024


class WireCopy:
    """Stream callable that passes every chunk through unchanged and keeps a copy."""

    def __init__(self, keep_bytes: int = KEEP_WIRE_BYTES) -> None:
        self._left = keep_bytes
        self._chunks: list[bytes] = []
        self.truncated = False

    def __call__(self, chunk: bytes) -> bytes:
        if chunk:
            if len(chunk) > self._left:
                self.truncated = True
            kept = chunk[: max(self._left, 0)]
            if kept:
                self._chunks.append(kept)
                self._left -= len(kept)
        return chunk

    def data(self) -> bytes | None:
        """The whole body, or None when it was too long to keep."""
        return None if self.truncated else b"".join(self._chunks)


class UsageTap:
    """Stream callable for `flow.response.stream`.

    `usage` is complete once upstream finished the body. `keep_bytes` caps how many wire
    bytes are kept so mitmweb, flow files and the request log can show the stream after it
    ended.
    """

    def __init__(
        self,
        content_encoding: str | None = None,
        keep_bytes: int = 0,
    ) -> None:
        applied = codings(content_encoding)
        # Parsed when plain or in one coding `inflate` knows; decoded in bounded pieces.
        self._parsing = len(applied) <= 1 and all(coding in ENCODINGS for coding in applied)
        self._inflater = Inflater(applied[0]) if applied and self._parsing else None
        self._parsed = 0
        self._pending = bytearray()
        self.copy = WireCopy(keep_bytes)
        self.usage = Usage()
        self.model: str | None = None
        self.events = 0

    def __call__(self, chunk: bytes) -> bytes:
        if chunk:
            self.copy(chunk)
            if self._parsing and self._inflater is None:
                self._feed(chunk)
            elif self._parsing and self._inflater is not None:
                try:
                    for piece in self._inflater.feed(chunk):
                        self._feed(piece)
                        if not self._parsing:
                            break
                except UndecodableBody:
                    self._parsing = False
        return chunk

    def _feed(self, data: bytes) -> None:
        self._parsed += len(data)
        if self._parsed > _MAX_PARSED:
            self._stop()
            return
        if not self._pending and data.endswith(b"\n\n") and data[-3:-2] != b"\n" and b"\r" not in data:
            self._feed_whole_events(data)
            return
        self._pending += data
        if b"\r" not in self._pending:
            # Only `\n\n` framing: cut every complete event at once (a piece may hold thousands).
            *events, rest = bytes(self._pending).split(b"\n\n")
            self._pending = bytearray(rest)
            self.events += len(events)
            for event in events:
                if _interesting(event):
                    self._handle(event)
        while True:
            cut, sep_len = _first_separator(self._pending)
            if cut < 0:
                break
            event = bytes(self._pending[:cut])
            del self._pending[: cut + sep_len]
            self.events += 1
            if _interesting(event):
                self._handle(event)
        if len(self._pending) > _MAX_PENDING:
            self._stop()

    def _stop(self) -> None:
        self._parsing = False
        self._pending = bytearray()

    def _feed_whole_events(self, data: bytes) -> None:
        """The usual read: one or more complete `\\n\\n`-framed events and nothing pending.
        Most are text deltas: count them without copying or splitting anything."""
        if not _interesting(data):
            self.events += data.count(b"\n\n")
            return
        events = data.split(b"\n\n")
        events.pop()  # the empty piece after the final separator
        self.events += len(events)
        for event in events:
            if _interesting(event):
                self._handle(event)

    def _handle(self, event: bytes) -> None:
        data_lines = [
            line[5:].lstrip(b" ")
            for line in event.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            if line.startswith(b"data:")
        ]
        try:
            payload = json.loads(b"\n".join(data_lines))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return
        if not isinstance(payload, dict):
            return
        kind = payload.get("type")
        if kind == "message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                model = message.get("model")
                self.model = model if isinstance(model, str) else self.model
                self.usage = Usage.from_api(message.get("usage"), self.model)
        elif kind == "message_delta":
            delta_usage = payload.get("usage")
            if isinstance(delta_usage, dict):
                self.usage = _with_delta(self.usage, delta_usage)


def _interesting(data: bytes) -> bool:
    return b"message_start" in data or b"message_delta" in data


def _first_separator(buffer: bytearray) -> tuple[int, int]:
    if b"\r" not in buffer:
        return buffer.find(b"\n\n"), 2
    best, best_len = -1, 0
    for separator in _SEPARATORS:
        index = buffer.find(separator)
        if index >= 0 and (best < 0 or index < best):
            best, best_len = index, len(separator)
    return best, best_len


def _with_delta(usage: Usage, delta: dict) -> Usage:
    """`message_delta.usage.output_tokens` is cumulative; later fields may restate input counts."""
    update = Usage.from_api(delta, usage.model)
    return Usage(
        input_tokens=update.input_tokens or usage.input_tokens,
        output_tokens=update.output_tokens or usage.output_tokens,
        cache_write_5m=update.cache_write_5m or usage.cache_write_5m,
        cache_write_1h=update.cache_write_1h or usage.cache_write_1h,
        cache_read=update.cache_read or usage.cache_read,
        model=usage.model,
    )


def usage_from_json_body(body: bytes | None) -> Usage | None:
    """Usage of a non-streamed message response, or None when the body is not one."""
    if not body:
        return None
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("usage"), dict):
        return None
    return Usage.from_api(document["usage"], document.get("model"))
