"""A small async HTTP/1.1 client for the addon's own upstream calls (transparent failover).

mitmproxy 11 has no API to re-send a live flow, so a retry is made here and its answer
replaces the failed one. The body is read whole: an addon-made response cannot stream.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
    b"upgrade", b"proxy-authorization", b"proxy-authenticate", b"content-length", b"host",
})
_DROPPED_FROM_RESPONSE = frozenset({b"transfer-encoding", b"connection", b"keep-alive"})
# A buffered retry sends the client nothing until it is complete; mitmproxy 11 cuts a client
# connection that sees no bytes for 600 s, so the whole answer must arrive well before that.
TOTAL_TIMEOUT_S = 540.0
_MAX_HEADER_BYTES = 256 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached or broke the response off."""


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _request_bytes(method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[str, int, bool, bytes]:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host_header = host if parts.port is None else f"{host}:{port}"
    lines = [f"{method} {target} HTTP/1.1".encode(), f"host: {host_header}".encode()]
    lines += [name + b": " + value for name, value in headers if name.lower() not in _HOP_BY_HOP]
    lines += [f"content-length: {len(body)}".encode(), b"connection: close"]
    return host, port, secure, b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[bytes, bytes]]]:
    """The final response's head: interim 1xx heads before it (100 Continue, 103 Early
    Hints) are skipped, as RFC 9110 §15.2 asks of every client; 101 is final."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise UpstreamError("connection closed before the response") from exc
        except asyncio.LimitOverrunError as exc:
            raise UpstreamError("response headers too large") from exc
        status_line, *header_lines = head.split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise UpstreamError(f"bad status line {status_line[:60]!r}")
        if not (100 <= int(parts[1]) < 200) or int(parts[1]) == 101:
            break
    headers = []
    for line in header_lines:
        if line:
            name, _, value = line.partition(b":")
            headers.append((name.strip(), value.strip()))
    return int(parts[1]), headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[bytes, bytes]], status: int, method: str) -> bytes:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b""
    lowered = {name.lower(): value for name, value in headers}
    try:
        if b"chunked" in lowered.get(b"transfer-encoding", b"").lower():
            return await _read_chunked(reader)
        if b"content-length" in lowered:
            return await reader.readexactly(int(lowered[b"content-length"]))
        return await reader.read()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise UpstreamError("response body cut off") from exc


async def send(
    method: str,
    url: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    header_timeout_s: float,
    total_timeout_s: float = TOTAL_TIMEOUT_S,
    ssl_context: ssl.SSLContext | None = None,
) -> UpstreamResponse:
    """One request on a fresh connection, headers as raw byte pairs. Raises UpstreamError on
    any transport failure, on headers slower than `header_timeout_s` and on a whole answer
    slower than `total_timeout_s`."""
    host, port, secure, payload = _request_bytes(method, url, headers, body)
    context = (ssl_context or ssl.create_default_context()) if secure else None
    writer = None
    stage = f"no response headers within {header_timeout_s:g}s"
    try:
        async with asyncio.timeout(header_timeout_s):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if secure else None, limit=_MAX_HEADER_BYTES)
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(header_timeout_s):
            status, response_headers = await _read_head(reader)
        stage = f"response not complete within {total_timeout_s:g}s"
        async with asyncio.timeout(max(0.0, total_timeout_s - header_timeout_s)):
            response_body = await _read_body(reader, response_headers, status, method)
    except TimeoutError as exc:
        raise UpstreamError(stage) from exc
    except OSError as exc:
        raise UpstreamError(f"{exc.__class__.__name__}: {exc.strerror or exc}") from exc
    finally:
        if writer is not None:
            writer.close()
    kept = [(name, value) for name, value in response_headers if name.lower() not in _DROPPED_FROM_RESPONSE]
    return UpstreamResponse(status, kept, response_body)
