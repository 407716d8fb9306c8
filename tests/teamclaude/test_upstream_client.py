"""The addon's own upstream client (transparent failover) against a scripted upstream."""

from __future__ import annotations

import pytest

from teamclaude import upstream_client
from tests.e2e.scripted import ProgrammableUpstream

ANSWER = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{"ok":42}'


async def _send(reply: list[bytes]) -> upstream_client.UpstreamResponse:
    with ProgrammableUpstream(reply) as upstream:
        return await upstream_client.send("POST", upstream.url + "/v1/messages", [(b"content-type", b"application/json")],
                                          b"{}", header_timeout_s=10)


async def test_interim_answers_before_the_final_one_are_skipped():
    """RFC 9110 §15.2: 100 Continue / 103 Early Hints may come first; they were taken for the answer."""
    answer = await _send([b"HTTP/1.1 100 Continue\r\n\r\n",
                          b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n", ANSWER])
    assert (answer.status, answer.body) == (200, b'{"ok":42}')
    assert (b"link", b"</a.css>; rel=preload") not in answer.headers


async def test_only_an_interim_answer_is_no_answer():
    with pytest.raises(upstream_client.UpstreamError, match="connection closed before the response"):
        await _send([b"HTTP/1.1 103 Early Hints\r\n\r\n"])
