"""Wire helpers for body attacks: a compressed bomb, a raw-socket sender, a streaming reader
that times its gaps, and a process's peak memory. Shared by tests/e2e and bench/."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.harness import PROXY_KEY, message_body

MIB = 1024 * 1024


def gzip_bomb(inflated: int) -> bytes:
    """A gzip body that inflates to `inflated` zero bytes: concatenated members of 1 MiB each
    (about 1 KiB on the wire per MiB), built without inflating anything here."""
    member = gzip.compress(b"\0" * MIB, compresslevel=9, mtime=0)
    return member * (inflated // MIB)


def send_raw(url: str, path: str, body: bytes, headers: dict[str, str], timeout: float = 120.0) -> tuple[int, bytes]:
    """One request written on a plain socket exactly as given; (status, body) of the answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    head = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", f"content-length: {len(body)}", "connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def bomb_headers(key: str | None = PROXY_KEY) -> dict[str, str]:
    headers = {"content-type": "application/json", "content-encoding": "gzip", "anthropic-version": "2023-06-01"}
    if key is not None:
        headers["x-teamclaude-key"] = key
    return headers


def stream_gaps(url: str, chunks: int, interval_ms: int, started=None) -> list[float]:
    """A normal streaming request through the proxy; the seconds between successive reads of
    its body (the first gap is from sending the request). Calls `started()` at the first read."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.request("POST", "/v1/messages", body=json.dumps(message_body(stream=True)), headers={
            "x-teamclaude-key": PROXY_KEY, "content-type": "application/json",
            "x-fake-chunks": str(chunks), "x-fake-chunk-interval-ms": str(interval_ms),
        })
        response = connection.getresponse()
        assert response.status == 200, response.read()
        gaps, last = [], time.perf_counter()
        while response.read1(65536):
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
            if started is not None and len(gaps) == 1:
                started()
        return gaps
    finally:
        connection.close()


@contextmanager
def stream_alongside(url: str, chunks: int, interval_ms: int, *, join_s: float = 120.0) -> Iterator[list[float]]:
    """A streaming request (`stream_gaps`) running in a thread while the block runs, started
    before it; yields the list its gaps land in, complete once the block has exited."""
    started, gaps = threading.Event(), []
    thread = threading.Thread(target=lambda: gaps.extend(stream_gaps(url, chunks, interval_ms, started.set)))
    thread.start()
    try:
        assert started.wait(30), "the concurrent stream did not start"
        yield gaps
    finally:
        thread.join(join_s)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (`VmHWM`), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")
