"""One request/response exchange of the fake upstream: the headers every answer carries,
Anthropic-shaped error bodies, whole replies, chunked SSE streams and deliberate cuts."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from teamclaude.fake.accounts import FakeAccount
from teamclaude.fake.http11 import LAST_CHUNK, Request, chunk, flush_all, reset_connection, response_head
from teamclaude.fake.messages import compact
from teamclaude.fake.state import Recorded

JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream; charset=utf-8"

Headers = list[tuple[str, str]]

# Pause between the last bytes and a deliberate RST, so the peer reads them before the
# reset discards whatever it has not read yet.
_RESET_GRACE_S = 0.02


@dataclass
class Reply:
    """A complete (non-streamed) answer."""

    status: int
    headers: Headers
    body: bytes


class Exchange:
    """One request being answered, and what is known about it so far."""

    __slots__ = ("req", "reader", "writer", "request_id", "record", "account", "org_id", "closed")

    def __init__(self, req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 record: Recorded | None) -> None:
        self.req = req
        self.reader = reader
        self.writer = writer
        self.request_id = "req_011C" + secrets.token_hex(10)
        self.record = record
        self.account: str | None = None
        self.org_id: str | None = None
        self.closed = False

    def identify(self, acct: FakeAccount) -> None:
        self.account = acct.name
        self.org_id = acct.org_uuid
        if self.record is not None:
            self.record.account = acct.name

    def client_gone(self) -> bool:
        """Has the client closed its side (or died)? Reads nothing: a pipelined next request
        stays in the buffer, and a client that sent one is still there."""
        return self.reader.at_eof() or self.writer.transport.is_closing()

    async def pause(self, seconds: float) -> bool:
        """Wait `seconds`, or less when the client hangs up meanwhile; True when it did."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self.client_gone():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await asyncio.sleep(min(0.02, left))
        return True

    def set_status(self, status: int) -> None:
        if self.record is not None:
            self.record.status = status

    def base_headers(self) -> Headers:
        headers = [("request-id", self.request_id)]
        if self.org_id is not None:
            headers.append(("anthropic-organization-id", self.org_id))
        return headers

    def error(self, status: int, error_type: str, message: str, headers: Headers | None = None) -> Reply:
        body = compact(
            {"type": "error", "error": {"type": error_type, "message": message}, "request_id": self.request_id}
        )
        return Reply(status, [("content-type", JSON_TYPE), *(headers or [])], body)

    async def send(self, reply: Reply) -> None:
        headers = self.base_headers() + reply.headers + [("content-length", str(len(reply.body)))]
        if not self.req.keep_alive:
            headers.append(("connection", "close"))
        self.set_status(reply.status)
        self.writer.write(response_head(reply.status, headers) + reply.body)
        await self.writer.drain()

    async def stream(
        self,
        headers: Headers,
        events: list[bytes],
        interval_s: float,
        cut_after: int | None,
        before_last: Callable[[], None],
    ) -> None:
        """Send events one chunk each, `interval_s` apart, calling `before_last` just before
        the final one; with `cut_after`, RST instead of sending event number `cut_after`."""
        head = self.base_headers() + [("transfer-encoding", "chunked"), *headers]
        if not self.req.keep_alive:
            head.append(("connection", "close"))
        self.set_status(200)
        writer = self.writer
        writer.write(response_head(200, head))
        last = len(events) - 1
        for index, event in enumerate(events):
            if index and interval_s > 0:
                await asyncio.sleep(interval_s)
            if cut_after is not None and index >= cut_after:
                await self.reset()
                return
            if index == last:
                before_last()
                writer.write(chunk(event) + LAST_CHUNK)
            else:
                writer.write(chunk(event))
            await writer.drain()

    async def send_half_then_reset(self, headers: Headers, body: bytes) -> None:
        """Promise the whole body, send half of it, then RST."""
        head = self.base_headers() + headers + [("content-length", str(len(body)))]
        self.set_status(200)
        self.writer.write(response_head(200, head) + body[: len(body) // 2])
        await self.reset()

    async def reset(self) -> None:
        """RST the connection once what was written so far has reached the kernel."""
        await flush_all(self.writer)
        await asyncio.sleep(_RESET_GRACE_S)
        self.reset_now()

    def reset_now(self) -> None:
        reset_connection(self.writer)
        self.closed = True
