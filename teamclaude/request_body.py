"""Reading a pooled request's body for routing (model, stream flag, session id) within a bound.

A compressed body is inflated up to `inflate.MAX_INFLATED_BODY` in a worker thread, never on
the event loop, and one that inflates further is refused (413, as the Messages API refuses
bodies over 32 MB). A plain body is already in memory (mitmproxy read it): one larger than
the bound is forwarded unread, since parsing JSON builds many times its size in objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from routing.request_info import read_request
from routing.types import RequestInfo
from teamclaude import errors
from teamclaude.inflate import MAX_INFLATED_BODY, UndecodableBody, codings, inflate

# Plain bodies up to this size are parsed on the event loop (a thread hop costs more than that).
INLINE_PARSE_MAX = 256 * 1024

T = TypeVar("T")


def too_large_body() -> bytes:
    """The 413 answer's body, shaped as the API's own `request_too_large` error."""
    return errors.error_body(
        "request_too_large",
        f"teamclaude: the request body inflates to more than {MAX_INFLATED_BODY} bytes "
        "(the Messages API accepts up to 32 MB)",
    )


@dataclass(frozen=True)
class Body:
    info: RequestInfo
    content: bytes | None  # decoded; None when undecodable, or plain and too large to read


def _read(path: str, headers: Mapping[str, str], raw: bytes | None) -> Body:
    """Blocking: inflate (within the bound) and parse."""
    content_encoding = headers.get("content-encoding")
    content: bytes | None = raw
    if raw and codings(content_encoding):
        assert content_encoding is not None
        try:
            content = inflate(raw, content_encoding, MAX_INFLATED_BODY)
        except UndecodableBody:
            content = None  # upstream will say what is wrong with it; routing goes without the body
    elif raw is not None and len(raw) > MAX_INFLATED_BODY:
        content = None
    return Body(read_request(path, headers, content), content)


async def read(path: str, headers: Mapping[str, str], raw: bytes | None) -> Body:
    """The routing view of a request (`path` without the query) and its decoded body. Raises
    `BodyTooLarge` when its compressed body inflates past `MAX_INFLATED_BODY`."""
    if raw and (codings(headers.get("content-encoding")) or len(raw) > INLINE_PARSE_MAX):
        return await asyncio.to_thread(_read, path, headers, raw)
    return _read(path, headers, raw)


async def off_loop_if_large(work: Callable[..., T], body: bytes, *args: Any) -> T:
    """`work(body, *args)`, in a worker thread when the body is large enough to stall the loop."""
    if len(body) > INLINE_PARSE_MAX:
        return await asyncio.to_thread(work, body, *args)
    return work(body, *args)
