"""A small HTTP/1.1 client for the benchmarks: raw asyncio streams, TCP_NODELAY, keep-alive.

It times what a user feels: when the response head arrived, when the first complete SSE
event arrived, and when every later event arrived (`Response.event_times`). An event counts
as arrived when its terminating blank line (`\\n\\n`) has been read, whatever TCP reads or
HTTP chunks it was split into. Bodies are decoded from `content-length` or chunked framing;
nothing else of HTTP is supported (no compression, no 1xx, no trailers beyond skipping them).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_EVENT_END = b"\n\n"


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response this client understands."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    sent: float  # perf_counter() when the request was written
    head_at: float  # when the response head was read
    done_at: float = 0.0  # when the body ended
    first_event_at: float | None = None
    event_times: list[float] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False  # the body ended as its framing said (not cut short)

    @property
    def latency(self) -> float:
        return self.done_at - self.sent

    @property
    def time_to_first_event(self) -> float | None:
        return None if self.first_event_at is None else self.first_event_at - self.sent


class _EventClock:
    """Counts SSE event ends across chunk boundaries and stamps each one."""

    __slots__ = ("times", "_last_byte_newline")

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last_byte_newline = False

    def feed(self, data: bytes, now: float) -> None:
        if not data:
            return
        ends = data.count(_EVENT_END)
        if self._last_byte_newline and data[:1] == b"\n":
            ends += 1
        self._last_byte_newline = data[-1:] == b"\n" and data[-2:] != _EVENT_END
        self.times.extend([now] * ends)


class Connection:
    """One keep-alive connection; requests on it run one after the other."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self._reader = reader
        self._writer = writer
        self._host = host
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int, limit: int = 1 << 20) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=limit)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, f"{host}:{port}")

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes = b"",
        *,
        keep_body: bool = True,
        time_events: bool = False,
    ) -> Response:
        """Send one request and read the whole response.

        `time_events` stamps every SSE event (`event_times`); without it only the first
        event is stamped. `keep_body=False` drops the body bytes once they are timed.
        """
        lines = [f"{method} {path} HTTP/1.1", f"host: {self._host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"content-length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sent = time.perf_counter()
        self._writer.write(head + body)
        status, response_headers = await self._read_head()
        response = Response(status, response_headers, sent, time.perf_counter())
        clock = _EventClock()
        parts: list[bytes] = []

        def take(data: bytes) -> None:
            now = time.perf_counter()
            if response.first_event_at is None or time_events:
                clock.feed(data, now)
                if clock.times and response.first_event_at is None:
                    response.first_event_at = clock.times[0]
            if keep_body:
                parts.append(data)

        try:
            if response_headers.get("transfer-encoding", "").lower() == "chunked":
                await self._read_chunked(take)
            elif "content-length" in response_headers:
                take(await self._reader.readexactly(int(response_headers["content-length"])))
            else:
                while data := await self._reader.read(65536):
                    take(data)
                self.closed = True
            response.complete = True
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed = True
        response.done_at = time.perf_counter()
        response.event_times = clock.times if time_events else clock.times[:1]
        response.body = b"".join(parts)
        if response_headers.get("connection", "").lower() == "close":
            self.closed = True
        return response

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        try:
            raw = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.closed = True
            raise ConnectionError("connection closed before the response head") from None
        status_line, *header_lines = raw[:-4].decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"bad status line {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def _read_chunked(self, take: Callable[[bytes], None]) -> None:
        reader = self._reader
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_line[:40]!r}") from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                return
            data = await reader.readexactly(size + 2)
            take(data[:-2])

    async def close(self) -> None:
        self.closed = True
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass
