"""A fake Anthropic API for tests, benchmarks and `teamclaude demo`.

It answers like the real one where the proxy can tell the difference: unified rate-limit
headers computed from per-account budgets, API-key rate-limit headers, Anthropic-shaped
error bodies, SSE with the real framing sent event by event, an OAuth token endpoint that
rotates single-use refresh tokens, PKCE authorization codes, and the profile endpoint.
Faults (429 kinds, 401/403/5xx, resets before or during a response, slow or hung
responses) are injected per account for the next N requests (`inject`).

Stdlib asyncio on 127.0.0.1, in its own thread and event loop (see `fake/server.py`):

    with FakeUpstream([FakeAccount("a", access_token="t")], chunk_interval_s=0.05) as fake:
        ... fake.url ...

Per-request controls, as request headers (they pass through the proxy untouched):
`x-fake-chunks: N` text deltas (default 5), `x-fake-chunk-interval-ms: N` pause between
SSE events, `x-fake-delay-headers-ms: N` pause before the response headers,
`x-fake-output-text: …` the answer's text, `x-fake-output-tokens: N` reported output tokens.

`python -m teamclaude.fakeupstream [--port N] [--demo] [--accounts-json FILE]` serves it as
a process and prints `FAKE_UPSTREAM_URL=…`; `/_fake/*` drives it from outside (`fake/control.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlencode

from teamclaude.fake.accounts import (
    DEMO_REFRESH_PREFIX,
    DEMO_TOKEN_PREFIX,
    FakeAccount,
    WindowState,
    demo_accounts,
    first_rejected,
    windows_of,
)
from teamclaude.fake.control import NOT_FOUND, control_action
from teamclaude.fake.exchange import JSON_TYPE, SSE_TYPE, Exchange, Headers, Reply
from teamclaude.fake.faults import DELIVERY_FAULTS, Fault
from teamclaude.fake.http11 import Request
from teamclaude.fake.messages import (
    DEFAULT_CHUNKS,
    OUTPUT_TOKENS_PER_DELTA,
    cache_plan,
    compact,
    message_id,
    message_json,
    prompt_tokens,
    reply_pieces,
    split_usage,
    sse_events,
    validate_messages_body,
)
from teamclaude.fake.models import models_answer
from teamclaude.fake.oauth import CLIENT_ID, profile_answer, token_answer, usage_answer
from teamclaude.fake.server import ThreadedServer
from teamclaude.fake.state import EXPIRED_TOKEN_MESSAGE, Recorded, TokenCall, UpstreamState

__all__ = [
    "DEMO_REFRESH_PREFIX",
    "DEMO_TOKEN_PREFIX",
    "FakeAccount",
    "FakeUpstream",
    "Recorded",
    "TokenCall",
    "demo_accounts",
    "main",
]

_FAULT_ERRORS = {
    "401": (401, "authentication_error", EXPIRED_TOKEN_MESSAGE),
    "403": (403, "permission_error", "OAuth token does not meet scope requirement user:inference"),
    "500": (500, "api_error", "Internal server error"),
    "502": (502, "api_error", "Bad gateway"),
    "503": (503, "api_error", "Service unavailable"),
    "529": (529, "overloaded_error", "Overloaded"),
}
_RATE_LIMIT_MESSAGE = "This request would exceed your account's rate limit. Please try again later."


class _ClientError(Exception):
    """A request the fake refuses with 400 invalid_request_error."""


def _int_header(req: Request, name: str) -> int | None:
    value = req.header(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise _ClientError(f"{name}: expected an integer, got {value[:40]!r}") from None
    if number < 0:
        raise _ClientError(f"{name}: must not be negative")
    return number


def _json_body(req: Request) -> Any:
    try:
        return json.loads(req.body) if req.body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _ClientError("Request body is not valid JSON") from None


def _model_of(payload: Any) -> str | None:
    model = payload.get("model") if isinstance(payload, dict) else None
    return model if isinstance(model, str) and model else None


def _retry_seconds(reset: float, now: float) -> int:
    return max(1, math.ceil(reset - now))


def _json_reply(status: int, data: Any, headers: Iterable[tuple[str, str]] = ()) -> Reply:
    return Reply(status, [("content-type", JSON_TYPE), *headers], compact(data))


def _oauth_error(status: int, error: str, description: str) -> Reply:
    return _json_reply(status, {"error": error, "error_description": description})


Handler = Callable[["FakeUpstream", Exchange], Awaitable["Reply | None"]]


class FakeUpstream(UpstreamState, ThreadedServer):
    """The fake Anthropic API server. Every public method is thread-safe.

    State and its public methods (accounts, usage, faults, the request log) come from
    `UpstreamState`; `start`/`stop`/`url` from `ThreadedServer`; this class answers requests.
    """

    def __init__(
        self,
        accounts: Iterable[FakeAccount] = (),
        *,
        chunk_interval_s: float = 0.0,
        token_ttl_s: float = 28800,
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        client_id: str = CLIENT_ID,
    ) -> None:
        UpstreamState.__init__(self, accounts, token_ttl_s=token_ttl_s, record=record, clock=clock, client_id=client_id)
        ThreadedServer.__init__(self, host, port)
        self.chunk_interval_s = chunk_interval_s

    # ----------------------------------------------------------------- dispatch

    async def _dispatch(self, req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        control = req.path.startswith("/_fake/")
        ex = Exchange(req, reader, writer, None if control else self._arrive(req))
        try:
            if control:
                reply: Reply | None = self._control(ex)
            else:
                handler = _ROUTES.get((req.method, req.path))
                if handler is None:
                    reply = ex.error(404, "not_found_error", "Not Found")
                else:
                    reply = await handler(self, ex)
        except _ClientError as exc:
            reply = ex.error(400, "invalid_request_error", str(exc))
        if reply is not None:
            await ex.send(reply)
        return not ex.closed and req.keep_alive

    def _authenticated_call(self, ex: Exchange) -> tuple[FakeAccount | None, Fault | None, Reply | None]:
        """Authenticate an API call and take any pending fault for it."""
        with self._lock:
            acct, problem, known = self._authenticate(ex.req, self._clock())
            if acct is None:
                if ex.record is not None:
                    ex.record.account = known
                return None, None, ex.error(401, "authentication_error", problem)
            ex.identify(acct)
            return acct, self._faults.take(acct.name, ex.req.path), None

    async def _fail(self, ex: Exchange, fault: Fault, model: str | None) -> Reply | None:
        """Answer with an injected fault (any kind but the delivery ones)."""
        kind = fault.kind
        if kind == "reset_before":
            ex.reset_now()
            return None
        if kind == "hang":
            await asyncio.get_running_loop().create_future()  # until stop() cancels it
        if kind == "429_bare":
            return ex.error(429, "rate_limit_error", _RATE_LIMIT_MESSAGE)
        if kind == "401":
            return ex.error(401, "authentication_error", EXPIRED_TOKEN_MESSAGE)
        now = self._clock()
        forced = fault.params["window"] if kind == "429_window" else None
        headers: Headers = []
        states: list[WindowState] = []
        if ex.account is not None:
            with self._lock:
                headers, states = self._rate_headers(ex.account, now, model, forced)
        if kind == "429_window":
            if fault.params["retry_after"]:
                reset = next((s.reset for s in states if s.name == forced), now + 60)
                headers.append(("retry-after", str(_retry_seconds(reset, now))))
            return ex.error(429, "rate_limit_error", _RATE_LIMIT_MESSAGE, headers)
        if kind == "429_retry_after":
            headers.append(("retry-after", str(int(fault.params["seconds"]))))
            return ex.error(429, "rate_limit_error", _RATE_LIMIT_MESSAGE, headers)
        status, error_type, message = _FAULT_ERRORS[kind]
        return ex.error(status, error_type, message, headers)

    # ----------------------------------------------------------------- /v1/messages

    async def _messages(self, ex: Exchange) -> Reply | None:
        acct, fault, refusal = self._authenticated_call(ex)
        if acct is None:
            return refusal
        req = ex.req
        payload = _json_body(req)
        model = _model_of(payload)
        if fault is not None and fault.kind not in DELIVERY_FAULTS:
            return await self._fail(ex, fault, model)
        chunks = _int_header(req, "x-fake-chunks")
        interval_ms = _int_header(req, "x-fake-chunk-interval-ms")
        delay_ms = _int_header(req, "x-fake-delay-headers-ms")
        output_override = _int_header(req, "x-fake-output-tokens")
        now = self._clock()
        with self._lock:
            rate_headers, states = self._rate_headers(acct.name, now, model)
            problem = validate_messages_body(payload)
            if problem is not None:
                return ex.error(400, "invalid_request_error", problem, rate_headers)
            rejected = first_rejected(states, model)
            if rejected is not None:
                retry = ("retry-after", str(_retry_seconds(rejected.reset, now)))
                return ex.error(429, "rate_limit_error", _RATE_LIMIT_MESSAGE, [*rate_headers, retry])
            total = prompt_tokens(req.body)
            plan = cache_plan(payload, total)
            hit = self._cache_hit(acct.name, plan, now)
        assert isinstance(payload, dict) and model is not None
        pieces = reply_pieces(DEFAULT_CHUNKS if chunks is None else chunks, req.header("x-fake-output-text"))
        output_tokens = output_override if output_override is not None else len(pieces) * OUTPUT_TOKENS_PER_DELTA
        usage = split_usage(total, plan, hit, output_tokens)
        delay_s = (delay_ms or 0) / 1000
        if fault is not None and fault.kind == "slow_headers":
            delay_s += float(fault.params["seconds"])
        cut_after = int(fault.params["after_events"]) if fault is not None and fault.kind == "reset_midstream" else None
        if delay_s > 0:
            await asyncio.sleep(delay_s)

        def burn() -> None:
            self._record_burn(acct.name, model, usage.input_tokens, usage.output_tokens, usage.burn)

        msg_id = message_id()
        if payload.get("stream") is True:
            interval_s = self.chunk_interval_s if interval_ms is None else interval_ms / 1000
            headers = [("content-type", SSE_TYPE), ("cache-control", "no-cache"), *rate_headers]
            await ex.stream(headers, sse_events(msg_id, model, pieces, usage), interval_s, cut_after, burn)
            return None
        reply = _json_reply(200, message_json(msg_id, model, "".join(pieces), usage), rate_headers)
        burn()
        if cut_after is not None:
            await ex.send_half_then_reset(reply.headers, reply.body)
            return None
        return reply

    async def _count_tokens(self, ex: Exchange) -> Reply | None:
        acct, fault, refusal = self._authenticated_call(ex)
        if acct is None:
            return refusal
        payload = _json_body(ex.req)
        model = _model_of(payload)
        if fault is not None and fault.kind not in DELIVERY_FAULTS:
            return await self._fail(ex, fault, model)
        with self._lock:
            rate_headers, _ = self._rate_headers(acct.name, self._clock(), model)
        if model is None:
            return ex.error(400, "invalid_request_error", "model: Field required", rate_headers)
        if not isinstance(payload.get("messages"), list):
            return ex.error(400, "invalid_request_error", "messages: Field required", rate_headers)
        return _json_reply(200, {"input_tokens": prompt_tokens(ex.req.body)}, rate_headers)

    async def _models(self, ex: Exchange) -> Reply | None:
        acct, fault, refusal = self._authenticated_call(ex)
        if acct is None:
            return refusal
        if fault is not None and fault.kind not in DELIVERY_FAULTS:
            return await self._fail(ex, fault, None)
        query = {key: values[0] for key, values in parse_qs(ex.req.query).items()}
        try:
            return _json_reply(200, models_answer(query))
        except ValueError as exc:
            return ex.error(400, "invalid_request_error", str(exc))

    # ----------------------------------------------------------------- OAuth

    @staticmethod
    def _token_params(req: Request) -> dict[str, str]:
        if "application/x-www-form-urlencoded" in (req.header("content-type") or ""):
            return {key: values[0] for key, values in parse_qs(req.body.decode("utf-8", "replace")).items()}
        payload = _json_body(req)
        if not isinstance(payload, dict):
            raise _ClientError("Request body must be a JSON object")
        return {key: value for key, value in payload.items() if isinstance(value, str)}

    async def _token(self, ex: Exchange) -> Reply | None:
        params = self._token_params(ex.req)
        grant = params.get("grant_type", "")
        reply: Reply | None
        if params.get("client_id") != self.client_id:
            reply = _oauth_error(401, "invalid_client", "Invalid client_id")
        elif grant == "refresh_token":
            reply = await self._refresh_grant(ex, params.get("refresh_token", ""))
        elif grant == "authorization_code":
            reply = self._code_grant(ex, params)
        else:
            reply = _oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type {grant[:40]!r}")
        with self._lock:
            self._token_calls.append(TokenCall(grant, ex.account, reply.status if reply else 0))
        return reply

    async def _refresh_grant(self, ex: Exchange, refresh_token: str) -> Reply | None:
        """Rotate a refresh token. A `token_delay` fault holds the answer first: a client that
        hangs up meanwhile gets nothing and, unless `commit_if_gone`, nothing is rotated (the
        server noticed before committing); with it, the pair is rotated and its answer lost."""
        with self._lock:
            owner = self._tokens.refresh_owner(refresh_token)
            acct = self._accounts.get(owner) if owner is not None else None
            if acct is not None:
                ex.identify(acct)
            fault = self._faults.take(owner, ex.req.path)
        if fault is not None and fault.kind == "token_delay":
            if await ex.pause(float(fault.params["seconds"])) and not fault.params["commit_if_gone"]:
                ex.closed = True
                return None
            fault = None
        with self._lock:
            if fault is None:
                rotate = not self.omit_refresh_token_in_response
                tokens = self._tokens.rotate(refresh_token, self._clock(), self.token_ttl_s, rotate)
                if tokens is None or acct is None:
                    return _oauth_error(400, "invalid_grant", "Invalid refresh token")
                acct.access_token = tokens.access_token
                if tokens.refresh_token is not None:
                    acct.refresh_token = tokens.refresh_token
                return _json_reply(200, token_answer(acct, tokens, self.token_ttl_s))
        return await self._fail(ex, fault, None)

    def _code_grant(self, ex: Exchange, params: dict[str, str]) -> Reply:
        with self._lock:
            now = self._clock()
            name = self._tokens.redeem_code(
                params.get("code", ""),
                params.get("code_verifier", ""),
                params.get("redirect_uri", ""),
                params.get("state", ""),
                now,
            )
            acct = self._accounts.get(name) if name is not None else None
            if acct is None:
                return _oauth_error(400, "invalid_grant", "Invalid authorization code")
            ex.identify(acct)
            tokens = self._tokens.issue_tokens(acct.name, now, self.token_ttl_s)
            acct.access_token, acct.refresh_token = tokens.access_token, tokens.refresh_token
            return _json_reply(200, token_answer(acct, tokens, self.token_ttl_s))

    async def _authorize(self, ex: Exchange) -> Reply:
        """claude.ai's consent page, auto-approved for `login_as`: redirect with a code."""
        query = {key: values[0] for key, values in parse_qs(ex.req.query).items()}
        required = ("client_id", "response_type", "redirect_uri", "code_challenge", "code_challenge_method", "state")
        missing = [key for key in required if not query.get(key)]
        if missing:
            return _oauth_error(400, "invalid_request", f"missing {', '.join(missing)}")
        if query["client_id"] != self.client_id:
            return _oauth_error(400, "invalid_client", "Invalid client_id")
        if query["code_challenge_method"] != "S256" or query["response_type"] != "code":
            return _oauth_error(400, "invalid_request", "only response_type=code with S256 is supported")
        try:
            code = self.issue_code(query["state"], query["code_challenge"], query["redirect_uri"])
        except (KeyError, ValueError) as exc:
            return _oauth_error(400, "access_denied", str(exc.args[0] if exc.args else exc))
        redirect = query["redirect_uri"]
        separator = "&" if "?" in redirect else "?"
        location = redirect + separator + urlencode({"code": code, "state": query["state"]})
        return Reply(302, [("location", location), ("content-type", "text/plain")], b"")

    def _bearer_call(self, ex: Exchange) -> tuple[FakeAccount | None, Reply | None]:
        """The account of a bearer token for the `/api/oauth/*` endpoints (no beta needed)."""
        authorization = ex.req.header("authorization") or ""
        if authorization[:7].lower() != "bearer ":
            return None, ex.error(401, "authentication_error", "OAuth token required")
        with self._lock:
            name, expired = self._tokens.access(authorization[7:].strip(), self._clock())
            acct = self._accounts.get(name) if name is not None else None
            if acct is None:
                return None, ex.error(401, "authentication_error", "Invalid bearer token")
            if expired:
                return None, ex.error(401, "authentication_error", EXPIRED_TOKEN_MESSAGE)
            ex.identify(acct)
            return acct, None

    async def _profile(self, ex: Exchange) -> Reply | None:
        acct, refusal = self._bearer_call(ex)
        if acct is None:
            return refusal
        with self._lock:
            return _json_reply(200, profile_answer(acct))

    async def _usage(self, ex: Exchange) -> Reply | None:
        acct, refusal = self._bearer_call(ex)
        if acct is None:
            return refusal
        with self._lock:
            return _json_reply(200, usage_answer(windows_of(acct, self._clock())))

    # ----------------------------------------------------------------- control plane

    def _control(self, ex: Exchange) -> Reply:
        action = ex.req.path[len("/_fake/"):]
        method = ex.req.method
        try:
            data = _json_body(ex.req) if method == "POST" else {}
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            result = control_action(self, method, action, data)
        except (ValueError, KeyError, TypeError) as exc:
            return ex.error(400, "invalid_request_error", str(exc.args[0] if exc.args else exc))
        if result is NOT_FOUND:
            return ex.error(404, "not_found_error", f"no control action {method} /_fake/{action}")
        return _json_reply(200, result)


_ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/messages"): FakeUpstream._messages,
    ("POST", "/v1/messages/count_tokens"): FakeUpstream._count_tokens,
    ("GET", "/v1/models"): FakeUpstream._models,
    ("POST", "/v1/oauth/token"): FakeUpstream._token,
    ("GET", "/oauth/authorize"): FakeUpstream._authorize,
    ("GET", "/api/oauth/profile"): FakeUpstream._profile,
    ("GET", "/api/oauth/usage"): FakeUpstream._usage,
}


# --------------------------------------------------------------------------- CLI


def _load_accounts(path: str) -> list[FakeAccount]:
    try:
        with open(path, encoding="utf-8") as handle:
            entries = json.load(handle)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"fakeupstream: cannot read accounts from {path}: {exc}") from None
    if not isinstance(entries, list):
        raise SystemExit(f"fakeupstream: {path} must hold a JSON list of account objects")
    accounts = []
    for index, entry in enumerate(entries):
        try:
            accounts.append(FakeAccount(**entry))
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"fakeupstream: {path} entry {index}: {exc}") from None
    return accounts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m teamclaude.fakeupstream", description="Fake Anthropic API on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--demo", action="store_true", help="serve the three demo accounts")
    parser.add_argument("--accounts-json", metavar="FILE", help="JSON list of FakeAccount objects")
    parser.add_argument("--chunk-interval-ms", type=int, default=0, help="default pause between SSE events")
    parser.add_argument("--token-ttl-s", type=int, default=28800, help="lifetime of tokens the token endpoint issues")
    parser.add_argument("--no-record", action="store_true", help="keep no log of requests (long benchmarks)")
    args = parser.parse_args(argv)

    accounts = demo_accounts(time.time()) if args.demo else []
    if args.accounts_json:
        accounts += _load_accounts(args.accounts_json)
    fake = FakeUpstream(
        accounts,
        chunk_interval_s=args.chunk_interval_ms / 1000,
        token_ttl_s=args.token_ttl_s,
        record=not args.no_record,
        port=args.port,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        fake.start()
    except RuntimeError as exc:
        print(f"fakeupstream: {exc}", file=sys.stderr)
        return 1
    print(f"FAKE_UPSTREAM_URL={fake.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
