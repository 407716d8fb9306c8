"""What happens after an account failed a request (behaviour §6.1), as the request's
lifecycle (`routing.lifecycle`) decides it: another account serves it before the client sees
anything (`failover: transparent`), or the client gets a throttle it retries at once and the
retry lands elsewhere (`failover: client`). This module carries out the steps.

mitmproxy cannot re-send a live flow, so a transparent retry is the addon's own upstream call
(`teamclaude.upstream_client`), buffered; its answer replaces the failed one.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import http

from routing.lifecycle import Answer, ClientRetry, Failed, NoAccount, Refresh, Refreshed, Send, Step
from teamclaude import errors, mitm_compat, rewrite, upstream_client
from teamclaude.attempt import Attempt
from teamclaude.credentials import NeedsLogin, OAuthError, UnknownAccount
from teamclaude.pool import Pool, usage_of_whole_body

logger = logging.getLogger("teamclaude")


async def after_failed_answer(pool: Pool, flow: http.HTTPFlow, attempt: Attempt) -> None:
    """The lifecycle did not take the first answer as it is (a buffered 429/401/403/5xx):
    carry out its steps until the client's answer is decided."""
    try:
        assert attempt.step is not None and attempt.verdict is not None
        if pool.service.settings.failover == "transparent" and attempt.rewritten_for:
            _show_failed_attempt(flow, attempt.rewritten_for, attempt.verdict.reason)
        await _carry_out(pool, flow, attempt, attempt.step)
    except Exception:
        logger.exception("teamclaude: internal error during failover")
        flow.response = errors.response(502, "api_error", "teamclaude: internal error during failover; see the proxy log")


async def _carry_out(pool: Pool, flow: http.HTTPFlow, attempt: Attempt, step: Step) -> None:
    """Refresh, hold and re-send as the lifecycle asks, then answer as it decides: the last
    answer as it is, the throttle of `failover: client`, or the no-account answer."""
    while not step.final:
        if isinstance(step, Refresh):
            step = await _refresh(pool, attempt, step)
            continue
        step = await pool.prepare(flow, attempt, step)  # holds, and a Send's credentials
        if isinstance(step, Send):
            step = await _resend(pool, flow, attempt)
    if isinstance(step, NoAccount):
        pool.respond_no_account(flow, attempt, step)
    elif isinstance(step, ClientRetry):
        _client_throttle(flow, step)
    else:
        assert isinstance(step, Answer)  # flow.response is that answer


async def _refresh(pool: Pool, attempt: Attempt, step: Refresh) -> Step:
    """An OAuth 401: a new access token for the account, then the lifecycle goes on."""
    service = pool.service
    try:
        await service.credentials.fresh(step.account, force=True)
    except (OAuthError, UnknownAccount) as exc:
        return pool.advance(attempt, Refreshed(False, service.clock(), str(exc), needs_login=isinstance(exc, NeedsLogin)))
    return pool.advance(attempt, Refreshed(True, service.clock()))


async def _resend(pool: Pool, flow: http.HTTPFlow, attempt: Attempt) -> Step:
    """Send the rewritten request ourselves, buffered; its answer (or a 502 for a failed
    connection) becomes the flow's response and goes to the lifecycle."""
    service = pool.service
    try:
        answer = await upstream_client.send(
            flow.request.method, flow.request.url, list(flow.request.headers.fields),
            flow.request.raw_content or b"", header_timeout_s=service.settings.upstream_timeout_s,
        )
    except upstream_client.UpstreamError as exc:
        flow.response = errors.response(502, "api_error", f"teamclaude: upstream connection failed: {exc}")
        return pool.advance(attempt, Failed(str(exc), service.clock(), connection=True))
    finally:
        pool.redact_sent(flow, attempt)
    flow.response = http.Response.make(answer.status, b"", answer.headers)
    step = pool.observe(flow, attempt, streaming=False)
    flow.response.raw_content = answer.body
    flow.response.headers["content-length"] = str(len(answer.body))
    return step


def _client_throttle(flow: http.HTTPFlow, step: ClientRetry) -> None:
    """`failover: client`: the failed answer becomes a throttle Claude Code retries at once;
    the lifecycle benched the account, so the retry lands elsewhere, streaming."""
    response = flow.response
    assert response is not None
    for name in [n for n in response.headers if n.lower().startswith("anthropic-ratelimit-unified")]:
        del response.headers[name]
    response.status_code = 429
    response.headers["retry-after"] = str(step.retry_after)
    response.headers["x-should-retry"] = "true"
    response.headers["content-type"] = "application/json"
    response.content = errors.error_body(
        "rate_limit_error",
        f"teamclaude: {step.decision.account} answered {step.status} ({step.verdict.reason}); retry to use another account",
    )


def client_writer_for_failover(pool: Pool, flow: http.HTTPFlow, attempt: Attempt) -> asyncio.StreamWriter | None:
    """The client's socket when a connection failure before any response can still be failed
    over transparently, else None.

    mitmproxy answers such failures with its own 502 right after the `error` hook and offers
    no way to replace it. For a plain HTTP/1 client (the reverse-proxy setup) the addon can
    answer on the client's socket itself and then mark the flow killed, which makes
    mitmproxy close the connection without writing anything more.
    """
    if (
        pool.service.settings.failover != "transparent" or not isinstance(attempt.step, Send)
        or attempt.header_timer is None or flow.response is not None or flow.error is None
        or mitm_compat.was_killed(flow)
    ):
        return None
    return mitm_compat.client_socket_writer(flow)


async def after_connection_error(pool: Pool, flow: http.HTTPFlow, attempt: Attempt, writer: asyncio.StreamWriter) -> None:
    message = flow.error.msg if flow.error else "connection error"
    pool.stop_header_timer(attempt)
    pool.redact_sent(flow, attempt)
    flow.response = errors.response(502, "api_error", f"teamclaude: upstream connection failed: {message}")
    try:
        if attempt.rewritten_for:
            _show_failed_attempt(flow, attempt.rewritten_for, f"connection failed: {message}")
        step = pool.advance(attempt, Failed(message, pool.service.clock(), connection=True))
        await _carry_out(pool, flow, attempt, step)
    except Exception:
        logger.exception("teamclaude: internal error during failover")
        flow.response = errors.response(502, "api_error", "teamclaude: internal error during failover; see the proxy log")
    response = flow.response
    mitm_compat.answer_and_close(flow, writer, response)
    attempt.notes.append("answered by teamclaude on the client connection (mitmproxy shows the flow as killed)")
    if flow.id in pool.attempts:
        usage = await usage_of_whole_body(response) if response.status_code < 300 else None
        pool.finish(flow, attempt, response.status_code, usage, level="warn")


def _show_failed_attempt(flow: http.HTTPFlow, account: str, reason: str) -> None:
    """Put a redacted copy of the failed first attempt (on `account`) into mitmweb's flow list."""
    if not mitm_compat.has_flow_view():
        return
    failed = flow.copy()
    rewrite.redact_injected(failed.request.headers, account)
    failed.comment = f"teamclaude: failed attempt on {account} ({reason}); retried transparently"
    failed.marked = ":x:"
    failed.metadata["teamclaude"] = {"failed_attempt_of": flow.id, "account": account}
    mitm_compat.show_in_flow_list(failed)
