"""A fake Anthropic API for tests, benchmarks and `teamclaude demo`.

It answers like the real one where the proxy can tell the difference: unified rate-limit
headers computed from per-account budgets, API-key rate-limit headers, Anthropic-shaped
error bodies, SSE with the real framing sent event by event, an OAuth token endpoint that
rotates single-use refresh tokens, PKCE authorization codes, and the profile endpoint.
Faults (429 kinds, 401/403/5xx, resets before or during a response, slow or hung
responses) are injected per account for the next N requests.

The server is stdlib asyncio on 127.0.0.1, running in its own thread and event loop so sync
tests, async tests (whose loop runs mitmproxy) and the demo can all use it:

    with FakeUpstream(accounts=[FakeAccount("a", access_token="t")]) as fake:
        ... fake.url ...

`python -m teamclaude.fakeupstream [--port N] [--demo]` serves it as a process.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import json
import math
import secrets
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

from teamclaude.fake.accounts import (
    CLAIMS,
    DEMO_REFRESH_PREFIX,
    DEMO_TOKEN_PREFIX,
    MODEL_WINDOW_FAMILY,
    ApiKeyMeter,
    FakeAccount,
    WindowState,
    add_burn,
    demo_accounts,
    first_rejected,
    force_rejected,
    rfc3339,
    roll_windows,
    unified_headers,
    windows_of,
)
from teamclaude.fake.faults import DELIVERY_FAULTS, Fault, FaultQueue, make_fault
from teamclaude.fake.http11 import (
    LAST_CHUNK,
    MAX_HEAD_BYTES,
    BadRequest,
    Request,
    chunk,
    flush_all,
    read_request,
    reset_connection,
    response_head,
)
from teamclaude.fake.messages import (
    CACHE_TTL_S,
    DEFAULT_CHUNKS,
    OUTPUT_TOKENS_PER_DELTA,
    CachePlan,
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
from teamclaude.fake.oauth import CLIENT_ID, SCOPE, TokenStore

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

OAUTH_BETA = "oauth-2025-04-20"
JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream; charset=utf-8"

# Model-window aliases accepted by set_usage / set_reset besides the header names.
_WINDOW_ALIASES = {"seven_day_sonnet": "7d_sonnet", "seven_day_opus": "7d_oi"}

_FAULT_ERRORS = {
    "401": (401, "authentication_error", "OAuth token has expired. Please obtain a new token or refresh your existing token."),
    "403": (403, "permission_error", "OAuth token does not meet scope requirement user:inference"),
    "500": (500, "api_error", "Internal server error"),
    "502": (502, "api_error", "Bad gateway"),
    "503": (503, "api_error", "Service unavailable"),
    "529": (529, "overloaded_error", "Overloaded"),
}
_RATE_LIMIT_MESSAGE = "This request would exceed your account's rate limit. Please try again later."


@dataclass
class Recorded:
    """One request the fake received (control-plane requests excluded)."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    account: str | None = None
    status: int = 0  # 0: no response was sent (reset, hang)
    at: float = 0.0


@dataclass(frozen=True)
class TokenCall:
    """One call of `POST /v1/oauth/token`."""

    grant_type: str
    account: str | None
    status: int


@dataclass
class _Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class _Exchange:
    """One request being answered."""

    __slots__ = ("req", "writer", "request_id", "record", "account", "org_id", "closed")

    def __init__(self, req: Request, writer: asyncio.StreamWriter, record: Recorded | None) -> None:
        self.req = req
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

    def set_status(self, status: int) -> None:
        if self.record is not None:
            self.record.status = status


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


class _ClientError(Exception):
    """A request the fake refuses with 400 invalid_request_error."""


def _json_body(req: Request) -> Any:
    try:
        return json.loads(req.body) if req.body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _ClientError("Request body is not valid JSON") from None


def _beta_values(req: Request) -> set[str]:
    return {part.strip() for part in (req.header("anthropic-beta") or "").split(",")}


def _retry_seconds(reset: float, now: float) -> int:
    return max(1, math.ceil(reset - now))


class FakeUpstream:
    """The fake Anthropic API server. Every public method is thread-safe."""

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
        self.chunk_interval_s = chunk_interval_s
        self.token_ttl_s = token_ttl_s
        self.record = record
        self.client_id = client_id
        self.login_as: str | None = None
        self.omit_refresh_token_in_response = False
        self._host = host
        self._port = port
        self._clock = clock
        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)
        self._accounts: dict[str, FakeAccount] = {}
        self._api_keys: dict[str, str] = {}
        self._meters: dict[str, ApiKeyMeter] = {}
        self._tokens = TokenStore()
        self._faults = FaultQueue()
        self._prompt_cache: dict[tuple[str, str], float] = {}
        self._requests: list[Recorded] = []
        self._arrivals = 0
        self._token_calls: list[TokenCall] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        for acct in accounts:
            self.add_account(acct)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeUpstream:
        """Start serving in a background thread; returns once the port is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstream already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="fake-upstream", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"fake upstream could not listen on {self._host}:{self._port}: {failure[0]}")
        return self

    def stop(self) -> None:
        """Close the listener and every connection (hung requests included), join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, self._host, self._port, limit=MAX_HEAD_BYTES, backlog=1024)
            )
        except OSError as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        self._port = self._server.sockets[0].getsockname()[1]
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()
            self._loop = None

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    # ----------------------------------------------------------------- accounts

    def add_account(self, acct: FakeAccount) -> None:
        """Add (or replace, by name) an account. The fake keeps its own copy."""
        acct = copy.deepcopy(acct)
        with self._lock:
            old = self._accounts.get(acct.name)
            if old is not None:
                self._tokens.forget_account(old.name)
                if old.api_key is not None:
                    self._api_keys.pop(old.api_key, None)
            self._accounts[acct.name] = acct
            self._tokens.register(acct.name, acct.access_token, acct.refresh_token)
            if acct.api_key is not None:
                self._api_keys[acct.api_key] = acct.name
                self._meters[acct.name] = ApiKeyMeter()

    def account(self, name: str) -> FakeAccount:
        """A snapshot copy of an account's current state (tokens, usage, resets)."""
        with self._lock:
            return copy.deepcopy(self._get(name))

    def accounts(self) -> list[FakeAccount]:
        with self._lock:
            return [copy.deepcopy(acct) for acct in self._accounts.values()]

    def _get(self, name: str) -> FakeAccount:
        try:
            return self._accounts[name]
        except KeyError:
            raise KeyError(f"fake upstream has no account {name!r} (known: {', '.join(self._accounts) or 'none'})") from None

    def set_usage(
        self, name: str, five_hour: float | None = None, seven_day: float | None = None, **model_windows: float
    ) -> None:
        """Set used = fraction × budget per window (model windows by `7d_sonnet=`/`7d_oi=` via
        `**{...}`, or `seven_day_sonnet=` / `seven_day_opus=`)."""
        with self._lock:
            acct = self._get(name)
            roll_windows(acct, self._clock())
            if five_hour is not None:
                acct.five_hour_used = round(five_hour * acct.five_hour_budget)
            if seven_day is not None:
                acct.seven_day_used = round(seven_day * acct.seven_day_budget)
            for key, fraction in model_windows.items():
                window = self._model_window(acct, key)
                acct.model_windows_used[window] = round(fraction * acct.model_windows[window])

    def set_reset(
        self, name: str, five_hour: float | None = None, seven_day: float | None = None, **model_windows: float
    ) -> None:
        """Set window resets (epoch seconds). A reset in the past clears that window at the
        next request."""
        with self._lock:
            acct = self._get(name)
            if five_hour is not None:
                acct.five_hour_reset = five_hour
            if seven_day is not None:
                acct.seven_day_reset = seven_day
            for key, epoch in model_windows.items():
                acct.model_windows_reset[self._model_window(acct, key)] = epoch

    @staticmethod
    def _model_window(acct: FakeAccount, key: str) -> str:
        window = _WINDOW_ALIASES.get(key, key)
        if window not in MODEL_WINDOW_FAMILY:
            raise ValueError(f"unknown window {key!r} (use 7d_sonnet, 7d_oi, seven_day_sonnet or seven_day_opus)")
        if window not in acct.model_windows:
            raise ValueError(f"account {acct.name!r} has no {window} window (set model_windows={{{window!r}: budget}})")
        return window

    def expire_access_token(self, name: str) -> None:
        """Make the account's current access token answer 401 'OAuth token has expired'."""
        with self._lock:
            acct = self._get(name)
            if acct.access_token is None:
                raise ValueError(f"account {name!r} has no access token")
            self._tokens.expire(acct.access_token, self._clock())

    def issue_code(self, state: str, code_challenge: str, redirect_uri: str, account: str | None = None) -> str:
        """An authorization code as the authorize page would issue it (for paste-flow tests)."""
        with self._lock:
            name = account or self._login_account()
            self._get(name)
            return self._tokens.issue_code(name, code_challenge, redirect_uri, state, self._clock())

    def _login_account(self) -> str:
        if self.login_as is not None:
            return self.login_as
        for acct in self._accounts.values():
            if acct.is_oauth:
                return acct.name
        raise ValueError("fake upstream has no OAuth account to log in as")

    # ----------------------------------------------------------------- faults

    def inject(self, account: str | None, kind: str, count: int = 1, **params: Any) -> None:
        """Give the next `count` matching requests (of `account`, or any when None) a fault.

        Faults apply to `/v1/messages*` unless `path=` names another path prefix (e.g.
        `/v1/oauth/token`, matched by the refresh token's owner)."""
        fault = make_fault(account, kind, count, params)
        with self._lock:
            if account is not None:
                self._get(account)
            self._faults.add(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ----------------------------------------------------------------- recording

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return [dataclasses.replace(r, headers=list(r.headers)) for r in self._requests]

    @property
    def request_count(self) -> int:
        """Requests received since the last clear_requests (counted even with record=False)."""
        with self._lock:
            return self._arrivals

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._arrivals = 0

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Recorded]:
        """Block until at least `n` requests arrived; TimeoutError otherwise."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self._arrivals >= n, timeout):
                raise TimeoutError(f"fake upstream saw {self._arrivals} requests, expected {n} within {timeout}s")
        return self.requests

    @property
    def token_calls(self) -> list[TokenCall]:
        with self._lock:
            return list(self._token_calls)

    # ----------------------------------------------------------------- connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    req = await read_request(reader, writer)
                except BadRequest as exc:
                    body = self._error_body("req_bad", "invalid_request_error", str(exc))
                    writer.write(response_head(400, [("content-type", JSON_TYPE), ("content-length", str(len(body))), ("connection", "close")]) + body)
                    await writer.drain()
                    break
                if req is None or not await self._dispatch(req, writer):
                    break
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            # Only stop() cancels these tasks; ending quietly keeps asyncio from logging it.
            writer.transport.abort()
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _dispatch(self, req: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True when the connection stays open for the next one."""
        ex = _Exchange(req, writer, self._arrive(req))
        try:
            reply = await self._route(ex)
        except _ClientError as exc:
            reply = self._error(ex, 400, "invalid_request_error", str(exc))
        if reply is not None:
            await self._write(ex, reply)
        return not ex.closed and req.keep_alive

    def _arrive(self, req: Request) -> Recorded | None:
        if req.path.startswith("/_fake/"):
            return None
        with self._arrived:
            self._arrivals += 1
            record = None
            if self.record:
                record = Recorded(req.method, req.path, req.query, req.headers, req.body, at=time.time())
                self._requests.append(record)
            self._arrived.notify_all()
            return record

    async def _route(self, ex: _Exchange) -> _Reply | None:
        method, path = ex.req.method, ex.req.path
        if path.startswith("/_fake/"):
            return self._control(ex)
        handler = self._routes.get((method, path))
        if handler is None:
            return self._error(ex, 404, "not_found_error", "Not Found")
        return await handler(self, ex)

    async def _write(self, ex: _Exchange, reply: _Reply) -> None:
        headers = self._base_headers(ex) + reply.headers + [("content-length", str(len(reply.body)))]
        if not ex.req.keep_alive:
            headers.append(("connection", "close"))
        ex.set_status(reply.status)
        ex.writer.write(response_head(reply.status, headers) + reply.body)
        await ex.writer.drain()

    @staticmethod
    def _base_headers(ex: _Exchange) -> list[tuple[str, str]]:
        headers = [("request-id", ex.request_id)]
        if ex.org_id is not None:
            headers.append(("anthropic-organization-id", ex.org_id))
        return headers

    @staticmethod
    def _error_body(request_id: str, error_type: str, message: str) -> bytes:
        return compact({"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id})

    def _error(
        self, ex: _Exchange, status: int, error_type: str, message: str, headers: list[tuple[str, str]] | None = None
    ) -> _Reply:
        body = self._error_body(ex.request_id, error_type, message)
        return _Reply(status, [("content-type", JSON_TYPE), *(headers or [])], body)

    # ----------------------------------------------------------------- API helpers

    def _authenticate(self, req: Request, now: float) -> tuple[FakeAccount | None, str, str | None]:
        """(account, "", name) for a good credential, else (None, why not, the name of the
        account a refused but known token belongs to). Under lock."""
        authorization = req.header("authorization")
        if authorization is not None and authorization[:7].lower() == "bearer ":
            name, expired = self._tokens.access(authorization[7:].strip(), now)
            acct = self._accounts.get(name) if name is not None else None
            if acct is None:
                return None, "Invalid bearer token", None
            if expired:
                return None, _FAULT_ERRORS["401"][2], acct.name
            if OAUTH_BETA not in _beta_values(req):
                return None, "OAuth authentication is currently not supported.", acct.name
            return acct, "", acct.name
        api_key = req.header("x-api-key")
        if api_key is None:
            return None, "x-api-key header is required", None
        name = self._api_keys.get(api_key)
        if name is None or name not in self._accounts:
            return None, "invalid x-api-key", None
        return self._accounts[name], "", name

    def _rate_headers(
        self, acct: FakeAccount, now: float, model: str | None, forced_window: str | None = None
    ) -> tuple[list[tuple[str, str]], list[WindowState]]:
        """Rate-limit headers from the account's state before this request. Under lock."""
        if not acct.is_oauth:
            return self._meters[acct.name].headers(now), []
        states = windows_of(acct, now)
        if forced_window is not None:
            states = force_rejected(states, forced_window)
        return unified_headers(states, model, representative=forced_window), states

    def _cache_hit(self, name: str, plan: CachePlan | None, now: float) -> bool:
        """Was this prefix cached for the account (and still warm)? Marks it warm. Under lock."""
        if plan is None:
            return False
        key = (name, plan.key)
        expires = self._prompt_cache.get(key)
        self._prompt_cache[key] = now + CACHE_TTL_S[plan.ttl]
        return expires is not None and expires > now

    def _record_burn(self, name: str, model: str | None, input_tokens: int, output_tokens: int, burn: int) -> None:
        with self._lock:
            acct = self._accounts.get(name)
            if acct is None:
                return
            now = self._clock()
            if acct.is_oauth:
                add_burn(acct, model, burn, now)
            else:
                self._meters[acct.name].add(now, input_tokens, output_tokens)

    def _authenticated_call(self, ex: _Exchange) -> tuple[FakeAccount | None, Fault | None, _Reply | None]:
        """Authenticate and take any pending fault for this request."""
        now = self._clock()
        with self._lock:
            acct, problem, known = self._authenticate(ex.req, now)
            if acct is None:
                if ex.record is not None:
                    ex.record.account = known
                return None, None, self._error(ex, 401, "authentication_error", problem)
            ex.identify(acct)
            return acct, self._faults.take(acct.name, ex.req.path), None

    async def _fail(self, ex: _Exchange, fault: Fault, acct: FakeAccount | None, model: str | None) -> _Reply | None:
        """Answer with an injected fault (not the delivery kinds)."""
        kind = fault.kind
        if kind == "reset_before":
            reset_connection(ex.writer)
            ex.closed = True
            return None
        if kind == "hang":
            await asyncio.get_running_loop().create_future()
        if kind == "429_bare":
            return self._error(ex, 429, "rate_limit_error", _RATE_LIMIT_MESSAGE)
        if kind == "401":
            return self._error(ex, 401, "authentication_error", _FAULT_ERRORS["401"][2])
        now = self._clock()
        headers: list[tuple[str, str]] = []
        states: list[WindowState] = []
        forced = fault.params["window"] if kind == "429_window" else None
        if acct is not None:
            with self._lock:
                headers, states = self._rate_headers(self._accounts.get(acct.name, acct), now, model, forced)
        if kind == "429_window":
            if fault.params["retry_after"]:
                reset = next((s.reset for s in states if s.name == forced), now + 60)
                headers.append(("retry-after", str(_retry_seconds(reset, now))))
            return self._error(ex, 429, "rate_limit_error", _RATE_LIMIT_MESSAGE, headers)
        if kind == "429_retry_after":
            headers.append(("retry-after", str(int(fault.params["seconds"]))))
            return self._error(ex, 429, "rate_limit_error", _RATE_LIMIT_MESSAGE, headers)
        status, error_type, message = _FAULT_ERRORS[kind]
        return self._error(ex, status, error_type, message, headers)

    # ----------------------------------------------------------------- /v1/messages

    async def _messages(self, ex: _Exchange) -> _Reply | None:
        acct, fault, refusal = self._authenticated_call(ex)
        if acct is None:
            return refusal
        payload = _json_body(ex.req)
        model = payload.get("model") if isinstance(payload, dict) else None
        model = model if isinstance(model, str) else None
        if fault is not None and fault.kind not in DELIVERY_FAULTS:
            return await self._fail(ex, fault, acct, model)
        req = ex.req
        chunks = _int_header(req, "x-fake-chunks")
        interval_ms = _int_header(req, "x-fake-chunk-interval-ms")
        delay_ms = _int_header(req, "x-fake-delay-headers-ms")
        output_override = _int_header(req, "x-fake-output-tokens")
        now = self._clock()
        with self._lock:
            live = self._accounts.get(acct.name, acct)
            rate_headers, states = self._rate_headers(live, now, model)
            problem = validate_messages_body(payload)
            if problem is not None:
                return self._error(ex, 400, "invalid_request_error", problem, rate_headers)
            rejected = first_rejected(states, model)
            if rejected is not None:
                retry = ("retry-after", str(_retry_seconds(rejected.reset, now)))
                return self._error(ex, 429, "rate_limit_error", _RATE_LIMIT_MESSAGE, [*rate_headers, retry])
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

        def finish() -> None:
            self._record_burn(acct.name, model, usage.input_tokens, usage.output_tokens, usage.burn)

        msg_id = message_id()
        if payload.get("stream") is True:
            interval = self.chunk_interval_s if interval_ms is None else interval_ms / 1000
            events = sse_events(msg_id, model, pieces, usage)
            await self._stream(ex, rate_headers, events, interval, cut_after, finish)
            return None
        body = compact(message_json(msg_id, model, "".join(pieces), usage))
        finish()
        if cut_after is not None:
            await self._cut_body(ex, rate_headers, body)
            return None
        return _Reply(200, [("content-type", JSON_TYPE), *rate_headers], body)

    async def _stream(
        self,
        ex: _Exchange,
        rate_headers: list[tuple[str, str]],
        events: list[bytes],
        interval: float,
        cut_after: int | None,
        finish: Callable[[], None],
    ) -> None:
        """Send SSE events one chunk each, `interval` apart; RST after `cut_after` events."""
        headers = self._base_headers(ex) + [
            ("content-type", SSE_TYPE),
            ("transfer-encoding", "chunked"),
            ("cache-control", "no-cache"),
            *rate_headers,
        ]
        if not ex.req.keep_alive:
            headers.append(("connection", "close"))
        ex.set_status(200)
        writer = ex.writer
        writer.write(response_head(200, headers))
        last = len(events) - 1
        for index, event in enumerate(events):
            if index and interval > 0:
                await asyncio.sleep(interval)
            if cut_after is not None and index >= cut_after:
                await self._reset_after_flush(ex)
                return
            if index == last:
                finish()
                writer.write(chunk(event) + LAST_CHUNK)
            else:
                writer.write(chunk(event))
            await writer.drain()

    async def _cut_body(self, ex: _Exchange, rate_headers: list[tuple[str, str]], body: bytes) -> None:
        headers = self._base_headers(ex) + [("content-type", JSON_TYPE), *rate_headers, ("content-length", str(len(body)))]
        ex.set_status(200)
        ex.writer.write(response_head(200, headers) + body[: len(body) // 2])
        await self._reset_after_flush(ex)

    async def _reset_after_flush(self, ex: _Exchange) -> None:
        """RST the connection once the bytes written so far have reached the kernel, after a
        short pause so the peer reads them before the reset discards anything unread."""
        await flush_all(ex.writer)
        await asyncio.sleep(0.02)
        reset_connection(ex.writer)
        ex.closed = True

    async def _count_tokens(self, ex: _Exchange) -> _Reply | None:
        acct, fault, refusal = self._authenticated_call(ex)
        if acct is None:
            return refusal
        payload = _json_body(ex.req)
        model = payload.get("model") if isinstance(payload, dict) else None
        model = model if isinstance(model, str) else None
        if fault is not None and fault.kind not in DELIVERY_FAULTS:
            return await self._fail(ex, fault, acct, model)
        with self._lock:
            rate_headers, _ = self._rate_headers(self._accounts.get(acct.name, acct), self._clock(), model)
        if not isinstance(payload, dict) or model is None:
            return self._error(ex, 400, "invalid_request_error", "model: Field required", rate_headers)
        if not isinstance(payload.get("messages"), list):
            return self._error(ex, 400, "invalid_request_error", "messages: Field required", rate_headers)
        body = compact({"input_tokens": prompt_tokens(ex.req.body)})
        return _Reply(200, [("content-type", JSON_TYPE), *rate_headers], body)

    # ----------------------------------------------------------------- OAuth

    def _token_reply(self, acct: FakeAccount, access_token: str, refresh_token: str | None) -> _Reply:
        answer: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access_token,
            "expires_in": int(self.token_ttl_s),
            "scope": SCOPE,
            "organization": {"uuid": acct.org_uuid, "name": acct.org},
            "account": {"uuid": acct.uuid, "email_address": acct.email},
        }
        if refresh_token is not None:
            answer["refresh_token"] = refresh_token
        return _Reply(200, [("content-type", JSON_TYPE)], compact(answer))

    @staticmethod
    def _oauth_error(status: int, error: str, description: str) -> _Reply:
        return _Reply(status, [("content-type", JSON_TYPE)], compact({"error": error, "error_description": description}))

    def _token_params(self, req: Request) -> dict[str, str]:
        if "application/x-www-form-urlencoded" in (req.header("content-type") or ""):
            parsed = parse_qs(req.body.decode("utf-8", "replace"))
            return {key: values[0] for key, values in parsed.items()}
        payload = _json_body(req)
        if not isinstance(payload, dict):
            raise _ClientError("Request body must be a JSON object")
        return {key: value for key, value in payload.items() if isinstance(value, str)}

    async def _token(self, ex: _Exchange) -> _Reply | None:
        params = self._token_params(ex.req)
        grant = params.get("grant_type", "")
        if params.get("client_id") != self.client_id:
            reply = self._oauth_error(401, "invalid_client", "Invalid client_id")
        elif grant == "refresh_token":
            reply = await self._refresh_grant(ex, params)
        elif grant == "authorization_code":
            reply = self._code_grant(ex, params)
        else:
            reply = self._oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type {grant[:40]!r}")
        with self._lock:
            self._token_calls.append(TokenCall(grant, ex.account, reply.status if reply else 0))
        return reply

    async def _refresh_grant(self, ex: _Exchange, params: dict[str, str]) -> _Reply | None:
        refresh_token = params.get("refresh_token", "")
        with self._lock:
            owner = self._tokens.refresh_owner(refresh_token)
            acct = self._accounts.get(owner) if owner is not None else None
            if acct is not None:
                ex.identify(acct)
            fault = self._faults.take(owner, ex.req.path)
            if fault is None:
                rotated = self._tokens.rotate(
                    refresh_token, self._clock(), self.token_ttl_s, not self.omit_refresh_token_in_response
                )
                if rotated is None or acct is None:
                    return self._oauth_error(400, "invalid_grant", "Invalid refresh token")
                acct.access_token = rotated.access_token
                if rotated.refresh_token is not None:
                    acct.refresh_token = rotated.refresh_token
                return self._token_reply(acct, rotated.access_token, rotated.refresh_token)
        return await self._fail(ex, fault, None, None)

    def _code_grant(self, ex: _Exchange, params: dict[str, str]) -> _Reply:
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
                return self._oauth_error(400, "invalid_grant", "Invalid authorization code")
            ex.identify(acct)
            tokens = self._tokens.issue_tokens(acct.name, now, self.token_ttl_s)
            acct.access_token, acct.refresh_token = tokens.access_token, tokens.refresh_token
            return self._token_reply(acct, tokens.access_token, tokens.refresh_token)

    async def _authorize(self, ex: _Exchange) -> _Reply:
        """claude.ai's consent page, auto-approved for `login_as`: redirect with a code."""
        query = {key: values[0] for key, values in parse_qs(ex.req.query).items()}
        required = ("client_id", "response_type", "redirect_uri", "code_challenge", "code_challenge_method", "state")
        missing = [key for key in required if not query.get(key)]
        if missing:
            return self._oauth_error(400, "invalid_request", f"missing {', '.join(missing)}")
        if query["client_id"] != self.client_id:
            return self._oauth_error(400, "invalid_client", "Invalid client_id")
        if query["code_challenge_method"] != "S256" or query["response_type"] != "code":
            return self._oauth_error(400, "invalid_request", "only response_type=code with S256 is supported")
        try:
            code = self.issue_code(query["state"], query["code_challenge"], query["redirect_uri"])
        except (KeyError, ValueError) as exc:
            return self._oauth_error(400, "access_denied", str(exc))
        redirect = query["redirect_uri"]
        separator = "&" if "?" in redirect else "?"
        location = redirect + separator + urlencode({"code": code, "state": query["state"]})
        return _Reply(302, [("location", location), ("content-type", "text/plain")], b"")

    def _bearer_account(self, ex: _Exchange) -> tuple[FakeAccount | None, _Reply | None]:
        authorization = ex.req.header("authorization") or ""
        if authorization[:7].lower() != "bearer ":
            return None, self._error(ex, 401, "authentication_error", "OAuth token required")
        with self._lock:
            name, expired = self._tokens.access(authorization[7:].strip(), self._clock())
            acct = self._accounts.get(name) if name is not None else None
            if acct is None:
                return None, self._error(ex, 401, "authentication_error", "Invalid bearer token")
            if expired:
                return None, self._error(ex, 401, "authentication_error", _FAULT_ERRORS["401"][2])
            ex.identify(acct)
            return copy.deepcopy(acct), None

    async def _profile(self, ex: _Exchange) -> _Reply | None:
        acct, refusal = self._bearer_account(ex)
        if acct is None:
            return refusal
        local = (acct.email or acct.name).split("@")[0]
        tiers = {"max": "default_claude_max_20x", "pro": "default_claude_pro", "team": "default_claude_team"}
        profile = {
            "account": {
                "uuid": acct.uuid,
                "email": acct.email,
                "full_name": local.title(),
                "display_name": local,
                "has_claude_max": acct.plan == "max",
                "has_claude_pro": acct.plan == "pro",
            },
            "organization": {
                "uuid": acct.org_uuid,
                "name": acct.org,
                "organization_type": f"claude_{acct.plan}",
                "billing_type": "stripe_subscription",
                "rate_limit_tier": tiers.get(acct.plan, f"default_claude_{acct.plan}"),
            },
        }
        return _Reply(200, [("content-type", JSON_TYPE)], compact(profile))

    async def _usage(self, ex: _Exchange) -> _Reply | None:
        """`GET /api/oauth/usage`: the same windows in percent with ISO reset times."""
        acct, refusal = self._bearer_account(ex)
        if acct is None:
            return refusal
        with self._lock:
            states = windows_of(self._accounts[acct.name], self._clock())
        usage: dict[str, Any] = {claim: None for claim in CLAIMS.values()}
        for state in states:
            usage[CLAIMS[state.name]] = {
                "utilization": round(state.utilization * 100, 2),
                "resets_at": rfc3339(state.reset),
            }
        usage["extra_usage"] = {"is_enabled": False, "monthly_limit": None, "used_credits": None, "utilization": None}
        return _Reply(200, [("content-type", JSON_TYPE)], compact(usage))

    _routes: dict[tuple[str, str], Callable[[FakeUpstream, _Exchange], Awaitable[_Reply | None]]] = {
        ("POST", "/v1/messages"): _messages,
        ("POST", "/v1/messages/count_tokens"): _count_tokens,
        ("POST", "/v1/oauth/token"): _token,
        ("GET", "/oauth/authorize"): _authorize,
        ("GET", "/api/oauth/profile"): _profile,
        ("GET", "/api/oauth/usage"): _usage,
    }

    # ----------------------------------------------------------------- control plane

    def _control(self, ex: _Exchange) -> _Reply:
        """`/_fake/*`: drive the fake from another process (benchmarks, the demo)."""
        action = ex.req.path[len("/_fake/"):]
        method = ex.req.method
        try:
            data = _json_body(ex.req) if method == "POST" else None
            if method == "POST" and not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            result = self._control_action(method, action, data or {})
        except _ClientError as exc:
            return self._error(ex, 400, "invalid_request_error", str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            return self._error(ex, 400, "invalid_request_error", str(message))
        if result is None:
            return self._error(ex, 404, "not_found_error", f"no control action {method} /_fake/{action}")
        return _Reply(200, [("content-type", JSON_TYPE)], compact(result))

    def _control_action(self, method: str, action: str, data: dict[str, Any]) -> Any:
        if method == "POST" and action == "inject":
            data = dict(data)
            if "kind" not in data:
                raise ValueError("inject needs a 'kind'")
            self.inject(data.pop("account", None), data.pop("kind"), data.pop("count", 1), **data)
            return {"ok": True}
        if method == "POST" and action in ("set_usage", "set_reset"):
            data = dict(data)
            if "name" not in data:
                raise ValueError(f"{action} needs a 'name'")
            getattr(self, action)(data.pop("name"), **data)
            return {"ok": True}
        if method == "POST" and action == "expire_access_token":
            self.expire_access_token(data.get("name", ""))
            return {"ok": True}
        if method == "POST" and action == "clear_faults":
            self.clear_faults()
            return {"ok": True}
        if method == "POST" and action == "clear_requests":
            self.clear_requests()
            return {"ok": True}
        if method == "POST" and action == "accounts":
            self.add_account(FakeAccount(**data))
            return {"ok": True}
        if method == "GET" and action == "accounts":
            return [dataclasses.asdict(acct) for acct in self.accounts()]
        if method == "GET" and action == "requests":
            return [
                {
                    "method": r.method,
                    "path": r.path,
                    "query": r.query,
                    "headers": [list(pair) for pair in r.headers],
                    "body": r.body.decode("utf-8", "replace"),
                    "account": r.account,
                    "status": r.status,
                    "at": r.at,
                }
                for r in self.requests
            ]
        if method == "GET" and action == "token_calls":
            return [dataclasses.asdict(call) for call in self.token_calls]
        return None


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
    parser.add_argument("--no-record", action="store_true", help="do not keep a log of requests")
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
