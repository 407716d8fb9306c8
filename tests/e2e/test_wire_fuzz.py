"""Wire-level fuzzing (issue 12): a hostile upstream scripted per example by hypothesis —
status lines, interim 1xx answers, rate-limit headers, usage numbers, SSE framing, HTTP
framing, content codings that lie, token-endpoint lifetimes — through ONE real mitmdump.

Per example: the proxy stays up and answers with some HTTP response (a cut body only when
the upstream cut one), no credential and not the proxy key reaches the client (nor the key
the upstream), and every account's in-flight count is back to 0. At the end the proxy is
stopped with SIGINT and neither its `-w` flow file nor its request log holds a secret; the
log has one record per request. Each example gets fresh accounts (a reload), so a bench
from one example does not turn the next into the proxy's own 429.

More examples for a local hunt: `TC_FUZZ_EXAMPLES=1000 pytest tests/e2e/test_wire_fuzz.py`.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import socket
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import brotli
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.io import FlowReader

from teamclaude.accounts_store import Account, AccountsDoc, AccountsStore
from teamclaude.proxyproc import ProxyProcess
from tests.e2e.cli_runner import wait_until
from tests.e2e.harness import PROXY_KEY, call, message_body, start_proxy, write_config
from tests.e2e.scripted import ProgrammableUpstream
from tests.teamclaude.zstd_compat import zstd_compress

EXAMPLES = int(os.environ.get("TC_FUZZ_EXAMPLES", "100"))

# ----- what the upstream says -----

HUGE = b"1" + b"0" * 400
NUMBERS = [b"0", b"1", b"7", b"-5", b"1.5", HUGE, b"-" + HUGE, b"1e999", b"-1e999", b"NaN", b"Infinity",
           b"-Infinity", b"1e-400", b"12345678901234567890", b'"many"', b'"12"', b"null", b"true", b"[]", b"{}"]
USAGE_FIELDS = [b"input_tokens", b"output_tokens", b"cache_creation_input_tokens", b"cache_read_input_tokens"]
MODELS = [b'"claude-sonnet-4-5"', b'"claude-opus-4-1"', b'"no-such-model"', b"null", HUGE, b'"\\u0000"']

RATELIMIT_NAMES = [
    "anthropic-ratelimit-unified-5h-utilization", "anthropic-ratelimit-unified-5h-reset",
    "anthropic-ratelimit-unified-5h-status", "anthropic-ratelimit-unified-7d-utilization",
    "anthropic-ratelimit-unified-7d-reset", "anthropic-ratelimit-unified-7d-status",
    "anthropic-ratelimit-unified-7d_sonnet-utilization", "anthropic-ratelimit-unified-status",
    "anthropic-ratelimit-unified-reset", "anthropic-ratelimit-unified-representative-claim",
    "anthropic-ratelimit-unified-fallback-percentage", "anthropic-ratelimit-unified-overage-status",
    "anthropic-ratelimit-unified-x!~y-utilization", "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-input-tokens-reset",
    "retry-after", "x-should-retry",
]
HEADER_VALUES = [b"0.5", b"1", b"1.0", b"0.99", b"nan", b"inf", b"-inf", b"1e309", b"-1", b"-0.5", HUGE, b"",
                 b"rejected", b"allowed", b"allowed_warning", b"r\xe9jected", b"soon", b"true",
                 b"2025-01-01T00:00:00Z", b"9999-12-31T23:59:59Z", b"0001-01-01T00:00:00Z", b"5", b"86400"]

STATUSES = [200, 200, 200, 201, 204, 206, 299, 301, 304, 400, 401, 401, 403, 404, 408, 413, 429, 429, 429,
            500, 502, 503, 504, 529, 599, 999]
BROKEN_STATUS_LINES = [b"HTTZ/1.1 200 OK", b"HTTP/1.1 2OO OK", b"HTTP/1.1 -1 x", b"\x16\x03\x01\x02\x00",
                       b"HTTP/1.1", b"HTTP/1.1 99999999999999999999 x", b"ICY 200 OK"]
INTERIM = [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 102 Processing\r\n\r\n",
           b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"]
CONTENT_TYPES = [b"application/json", b"text/event-stream", b"text/event-stream; charset=utf-8",
                 b"text/plain", None, b"application/json; charset=\xff"]
CODINGS = [None, b"gzip", b"deflate", b"br", b"zstd", b"identity", b"gzip, gzip", b"x-bogus", b"GZIP"]
# Framings that cut the body: the client may see a cut body only after one of these.
CUTTING = {"short", "chunked-cut", "chunked-bad", "cut-mid"}
FRAMINGS = ["length", "length", "chunked", "chunked", "close", "long", *sorted(CUTTING)]


def _usage() -> st.SearchStrategy[bytes]:
    pairs = st.dictionaries(st.sampled_from(USAGE_FIELDS), st.sampled_from(NUMBERS), max_size=4)
    as_object = pairs.map(lambda d: b"{" + b",".join(b'"%s":%s' % kv for kv in d.items()) + b"}")
    return st.one_of(as_object, as_object, st.sampled_from([b"null", b"[]", b'"x"', HUGE]))


@st.composite
def sse_body(draw) -> bytes:
    newline = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    events = draw(st.lists(st.one_of(
        st.builds(lambda m, u: b'event: message_start%sdata: {"type":"message_start","message":{"model":%s,"usage":%s}}'
                  % (newline, m, u), st.sampled_from(MODELS), _usage()),
        st.builds(lambda u: b'event: message_delta%sdata: {"type":"message_delta","delta":{},"usage":%s}'
                  % (newline, u), _usage()),
        st.just(b'event: content_block_delta%sdata: {"type":"content_block_delta","delta":{"text":"hi"}}' % newline),
        st.just(b'event: message_stop%sdata: {"type":"message_stop"}' % newline),
        st.just(b"event: ping%sdata: {}" % newline),
        st.just(b": comment only"),
        st.just(b"data: [[[[[["),
        st.binary(max_size=40),
    ), max_size=6))
    separators = draw(st.lists(st.sampled_from([b"\n\n", b"\r\n\r\n", b"\r\r", b"\n", b""]),
                               min_size=len(events), max_size=len(events)))
    return b"".join(event + sep for event, sep in zip(events, separators, strict=True))


def json_body(model: bytes, usage: bytes) -> bytes:
    return (b'{"id":"msg_1","type":"message","role":"assistant","model":%s,'
            b'"content":[{"type":"text","text":"hi"}],"usage":%s}' % (model, usage))


BODIES = st.one_of(
    st.builds(json_body, st.sampled_from(MODELS), _usage()),
    sse_body(),
    st.just(b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'),
    st.just(b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}'),
    st.binary(max_size=64),
    st.just(b""),
)


def encode(body: bytes, coding: bytes) -> bytes:
    """`body` really encoded as `coding` says (a known coding, applied in order)."""
    for one in coding.lower().split(b","):
        one = one.strip()
        if one == b"gzip":
            body = gzip.compress(body, mtime=0)
        elif one == b"deflate":
            body = zlib.compress(body)
        elif one == b"br":
            body = brotli.compress(body)
        elif one == b"zstd":
            body = zstd_compress(body)
    return body


def framed(body: bytes, framing: str, cuts: list[int]) -> tuple[list[bytes], list[bytes]]:
    """(framing headers, body pieces on the wire, split at `cuts`)."""
    if framing in ("length", "short", "long", "cut-mid"):
        declared = {"length": len(body), "short": len(body) + 10, "long": max(0, len(body) - 3),
                    "cut-mid": len(body)}[framing]
        if framing == "cut-mid":
            body = body[: len(body) // 2]
            declared = declared + 1  # the cut is a cut even for an empty body
        headers, wire = [b"content-length: %d" % declared], body
    elif framing in ("chunked", "chunked-cut", "chunked-bad"):
        pieces = _split(body, cuts)
        wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
        if framing == "chunked":
            wire += b"0\r\n\r\n"
        elif framing == "chunked-bad":
            wire += b"zz\r\nnot hex\r\n"
        headers = [b"transfer-encoding: chunked"]
    else:  # "close": the body runs until the connection closes
        headers, wire = [], body
    return headers, _split(wire, cuts)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [b""]


@dataclass
class Reply:
    wire: list[bytes]
    cuts_body: bool
    summary: str


@st.composite
def replies(draw) -> Reply:
    if draw(st.integers(0, 19)) == 0:
        broken = draw(st.sampled_from([*BROKEN_STATUS_LINES, b""]))
        return Reply([broken + b"\r\n\r\n"] if broken else [], False, f"broken status line {broken!r}")
    status = draw(st.one_of(st.sampled_from(STATUSES), st.integers(100, 999)))
    reason = draw(st.sampled_from([b"OK", b"", b"Too Many Requests", b"\xff\xfe junk", b"x" * 100]))
    interim = draw(st.lists(st.sampled_from(INTERIM), max_size=2))
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    coding = draw(st.sampled_from(CODINGS))
    truthful = draw(st.booleans())
    framing = draw(st.sampled_from(FRAMINGS))
    limits = draw(st.lists(st.tuples(st.sampled_from(RATELIMIT_NAMES), st.sampled_from(HEADER_VALUES)), max_size=8))
    body = draw(BODIES)
    cuts = draw(st.lists(st.integers(0, 10_000), max_size=4))
    if coding is not None and truthful:
        body = encode(body, coding)
    framing_headers, pieces = framed(body, framing, cuts)
    head = [b"HTTP/1.1 %d %s" % (status, reason)]
    head += [b"%s: %s" % (name.encode(), value) for name, value in limits]
    if content_type is not None:
        head.append(b"content-type: " + content_type)
    if coding is not None:
        head.append(b"content-encoding: " + coding)
    head += framing_headers
    if draw(st.booleans()):
        head.append(b"connection: close")
    wire = [*interim, b"\r\n".join(head) + b"\r\n\r\n", *pieces]
    summary = f"{status} {content_type!r} {coding!r}{'' if truthful else ' (lying)'} {framing}"
    return Reply(wire, framing in CUTTING, summary)


@dataclass
class Script:
    replies: list[Reply]
    expires_in: list[bytes]  # lifetimes the token endpoint gives, in order
    expiring: bool  # the first account's token is due for a refresh before it serves
    failover: str
    stream: bool
    path: str


SCRIPTS = st.builds(
    Script,
    replies=st.lists(replies(), min_size=1, max_size=3),
    expires_in=st.lists(st.sampled_from(NUMBERS), max_size=2),
    expiring=st.booleans(),
    failover=st.sampled_from(["transparent", "transparent", "client"]),
    stream=st.booleans(),
    path=st.sampled_from(["/v1/messages", "/v1/messages?beta=true", "/v1/messages/count_tokens", "/api/oauth/profile"]),
)

OK_REPLY = [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(json_body(MODELS[0], b'{"input_tokens":3,"output_tokens":5}')),
               json_body(MODELS[0], b'{"input_tokens":3,"output_tokens":5}'))]


# ----- what the client receives -----

@dataclass
class Received:
    status: int | None  # of the final response; None when no complete head arrived
    complete: bool  # the body ended where its framing says


def parse_response(raw: bytes) -> Received:
    """An HTTP/1.1 response read until the connection closed: interim 1xx heads skipped."""
    while True:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            return Received(None, False)
        status_line, *lines = head.split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
            return Received(None, False)
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:
            raw = rest
            continue
        break
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if status in (204, 304) or status == 101:
        return Received(status, True)
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        return Received(status, _chunked_complete(rest))
    if b"content-length" in headers:
        return Received(status, len(rest) >= int(headers[b"content-length"]))
    return Received(status, True)  # until close: whatever arrived is the body


def _chunked_complete(data: bytes) -> bool:
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            return False
        try:
            size = int(size_line.split(b";", 1)[0], 16)
        except ValueError:
            return False
        if size == 0:
            return data.startswith(b"\r\n") or b"\r\n\r\n" in data
        if len(data) < size + 2:
            return False
        data = data[size + 2:]


def exchange(url: str, path: str, body: bytes, timeout: float = 60.0) -> bytes:
    """One keyed request on a fresh connection; every byte the proxy sends until it closes."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    head = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", f"content-length: {len(body)}", "connection: close",
            "content-type: application/json", "anthropic-version: 2023-06-01", f"x-teamclaude-key: {PROXY_KEY}"]
    received = bytearray()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        try:
            while data := sock.recv(65536):
                received += data
        except ConnectionResetError:
            pass  # what arrived before the reset is what the client got
    return bytes(received)


# ----- the session -----

@dataclass
class Session:
    upstream: ProgrammableUpstream
    proxy: ProxyProcess
    config: Path
    accounts: Path
    secrets: set[str] = field(default_factory=lambda: {PROXY_KEY})
    requests: int = 0  # every request sent to the proxy, local ones included
    example: int = 0

    def call(self, *args, **kwargs):
        self.requests += 1
        return call(self.proxy.url, *args, **kwargs)

    def fresh_accounts(self, script: Script) -> list[str]:
        """New accounts (two OAuth, one API key) so no bench or binding carries over."""
        self.example += 1
        n = self.example
        now_ms = int(time.time() * 1000)
        accounts = [
            Account(name=f"o{n}a", type="oauth", id=str(uuid.uuid4()), access_token=f"sk-ant-oat01-o{n}a-access-secret",
                    refresh_token=f"sk-ant-ort01-o{n}a-refresh-secret",
                    expires_at=now_ms + (60_000 if script.expiring else 3_600_000)),
            Account(name=f"o{n}b", type="oauth", id=str(uuid.uuid4()), access_token=f"sk-ant-oat01-o{n}b-access-secret",
                    refresh_token=f"sk-ant-ort01-o{n}b-refresh-secret", expires_at=now_ms + 3_600_000),
            Account(name=f"k{n}", type="apikey", api_key=f"sk-ant-api03-k{n}-key-secret"),
        ]
        for account in accounts:
            self.secrets |= {s for s in (account.access_token, account.refresh_token, account.api_key) if s}

        def replace(doc: AccountsDoc) -> None:
            doc.accounts = accounts

        AccountsStore(self.accounts).update(replace)
        values = yaml.safe_load(self.config.read_text())
        self.config.write_text(yaml.safe_dump({**values, "failover": script.failover}))
        code, _, answer = self.call("POST", "/teamclaude/reload")
        assert code == 200, answer
        return [a.name for a in accounts]

    def run(self, script: Script) -> None:
        names = self.fresh_accounts(script)
        upstream = self.upstream
        upstream.replies[:] = [reply.wire for reply in script.replies]
        upstream.expires_in[:] = list(script.expires_in)
        seen_upstream, issued = len(upstream.requests), len(upstream.issued)
        self.requests += 1
        printed = len(self.proxy.output)
        raw = exchange(self.proxy.url, script.path, json.dumps(message_body(stream=script.stream)).encode())
        upstream.replies.clear()
        upstream.expires_in.clear()
        self.secrets |= set(upstream.issued)

        # No leak: not to the client, and the proxy key not upstream either.
        leaked = [s[:16] for s in self.secrets if s.encode() in raw]
        assert leaked == [], f"the client received {leaked}: {raw[:300]!r}"
        for method, path, headers, body in upstream.requests[seen_upstream:]:
            assert PROXY_KEY not in repr(headers) and PROXY_KEY.encode() not in body, (method, path)

        # No crash: an HTTP answer, cut only where the upstream cut one.
        received = parse_response(raw)
        assert received.status is not None, f"no HTTP response: {raw[:300]!r}"
        if not received.complete:
            assert any(r.cuts_body for r in script.replies), f"cut answer {raw[:300]!r}"

        # In flight back to 0.
        def settled():
            code, _, body = self.call("GET", "/teamclaude/status")
            assert code == 200, body
            accounts = {a["name"]: a for a in json.loads(body)["accounts"]}
            return all(accounts[name]["inflight"] == 0 for name in names) and accounts

        wait_until(settled, "every account's in-flight count back to 0", timeout=15)
        # No rotated refresh token lost: the newest one the token endpoint gave is saved.
        if len(upstream.issued) > issued:
            assert upstream.issued[-1] in self.accounts.read_text(), "the newest refresh token is not saved"
        # No crash caught by the proxy's own safety nets either.
        crashes = [line for line in self.proxy.output[printed:] if "Traceback" in line or "internal error" in line]
        assert crashes == [], "".join(self.proxy.output[printed:])


def test_hostile_upstream_through_the_real_proxy(tmp_path):
    flows_file, log_dir = tmp_path / "flows.mitm", tmp_path / "requests"
    with ProgrammableUpstream(OK_REPLY) as upstream:
        cfg = write_config(
            tmp_path / "cfg", upstream.url, [], hold_budget_s=0, log_bodies=True,
            oauth_token_url=upstream.url + ProgrammableUpstream.TOKEN_PATH,
            oauth_profile_url=upstream.url + "/api/oauth/profile",
        )
        proxy = start_proxy(cfg, ["-w", str(flows_file), "--set", f"teamclaude_log_dir={log_dir}"])
        session = Session(upstream, proxy, cfg.config, cfg.accounts)
        try:
            @settings(max_examples=EXAMPLES)
            @given(script=SCRIPTS)
            def one_example(script: Script) -> None:
                assert proxy.process is not None and proxy.process.poll() is None, "the proxy died"
                session.run(script)

            one_example()
            assert proxy.process is not None
            proxy.process.send_signal(signal.SIGINT)
            assert proxy.process.wait(30) == 0, "".join(proxy.output[-30:])
        finally:
            proxy.stop()
        session.secrets |= set(upstream.issued)

    secrets = session.secrets
    raw_flows = flows_file.read_bytes()
    assert [s[:16] for s in secrets if s.encode() in raw_flows] == []
    with flows_file.open("rb") as handle:
        assert len(list(FlowReader(handle).stream())) == session.requests
    names = sorted(os.listdir(log_dir))
    assert len(names) == session.requests
    for name in names:
        text = (log_dir / name).read_text()
        assert [s[:16] for s in secrets if s in text] == [], name
        json.loads(text)
    printed = "".join(proxy.output)
    assert [s[:16] for s in secrets if s in printed] == []
