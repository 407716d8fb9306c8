"""What happens after an account failed a request (behaviour §6.1): another account serves it
before the client sees anything (`failover: transparent`), or the client gets a throttle it
retries at once and the retry lands elsewhere (`failover: client`).

mitmproxy cannot re-send a live flow, so a transparent retry is the addon's own upstream call
(`teamclaude.upstream_client`), buffered; its answer replaces the failed one.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import http

from routing.failures import THROTTLED_KINDS, Verdict
from teamclaude import errors, mitm_compat, rewrite, upstream_client
from teamclaude.accounts_store import Account
from teamclaude.attempt import Attempt
from teamclaude.credentials import NeedsLogin, OAuthError
from teamclaude.pool import Pool, usage_of_whole_body

logger = logging.getLogger("teamclaude")

# `failover: client`: how long an account that failed without a bench is kept off the retry.
CLIENT_RETRY_COOLDOWN_S = 5.0


def connection_failed(message: str) -> Verdict:
    """No answer at all: try another account; with none left the client gets the 502."""
    return Verdict("connection", f"connection failed: {message}", failover=True, pass_through_if_alone=True)


async def after_failed_answer(pool: Pool, flow: http.HTTPFlow, attempt: Attempt, verdict: Verdict) -> None:
    """The first answer failed (a buffered 429/401/403/5xx): recover in the configured way."""
    try:
        if pool.service.settings.failover == "client":
            await client_throttle(pool, flow, attempt, verdict)
        else:
            await transparent_retry(pool, flow, attempt, verdict)
    except Exception:
        logger.exception("teamclaude: internal error during failover")
        flow.response = errors.response(502, "api_error", "teamclaude: internal error during failover; see the proxy log")


async def client_throttle(pool: Pool, flow: http.HTTPFlow, attempt: Attempt, verdict: Verdict) -> None:
    """Turn the failure into a throttle Claude Code retries at once; the engine already
    benched the account, so the retry lands elsewhere, streaming."""
    service = pool.service
    assert attempt.decision is not None and flow.response is not None
    account = attempt.decision.account
    if verdict.refresh_and_retry:
        try:
            await service.credentials.fresh(account, force=True)
        except OAuthError as exc:
            service.apply_verdict(account, Verdict("unauthorized", str(exc), needs_login=isinstance(exc, NeedsLogin)), service.clock())
    elif verdict.pass_through_if_alone and not service.router.can_serve(attempt.request, service.clock(), {account}):
        return
    elif verdict.bench_until is None and not verdict.needs_login:
        # Nothing benched it (a 403, a first bare 429): keep the client's retry, a new
        # request, off this account for a moment.
        now = service.clock()
        service.router.bench(account, now + CLIENT_RETRY_COOLDOWN_S, f"{verdict.reason}; client retries elsewhere", now)
    original = flow.response.status_code
    for name in [n for n in flow.response.headers if n.lower().startswith("anthropic-ratelimit-unified")]:
        del flow.response.headers[name]
    can_serve = service.router.can_serve(attempt.request, service.clock())
    flow.response.status_code = 429
    flow.response.headers["retry-after"] = "0" if can_serve else "1"
    flow.response.headers["x-should-retry"] = "true"
    flow.response.headers["content-type"] = "application/json"
    flow.response.content = errors.error_body(
        "rate_limit_error", f"teamclaude: {account} answered {original} ({verdict.reason}); retry to use another account",
    )
    attempt.history.append({"account": account, "status": original, "reason": verdict.reason + " (client retries)"})


async def transparent_retry(pool: Pool, flow: http.HTTPFlow, attempt: Attempt, verdict: Verdict) -> None:
    """Re-send the request ourselves until an account answers well or none is left."""
    service = pool.service
    assert flow.response is not None
    _show_failed_attempt(flow, attempt)
    while verdict.failover or verdict.refresh_and_retry:
        assert attempt.decision is not None
        status = flow.response.status_code
        account: Account | None = None
        if verdict.refresh_and_retry:
            try:
                account = await service.credentials.fresh(attempt.decision.account, force=True)
                attempt.refreshed = True
                attempt.notes.append(f"{attempt.decision.account}: token refreshed after 401")
            except OAuthError as exc:
                service.apply_verdict(attempt.decision.account, Verdict("unauthorized", str(exc), needs_login=isinstance(exc, NeedsLogin)), service.clock())
        if account is None:
            alone = not service.router.can_serve(attempt.request, service.clock(), attempt.tried | {attempt.decision.account})
            if verdict.pass_through_if_alone and alone:
                return
            attempt.fail(status, verdict.reason, throttled=verdict.kind in THROTTLED_KINDS)
            pool.release(attempt, status)
            account = await pool.acquire(flow, attempt)
            if account is None:
                pool.respond_no_account(flow, attempt)
                return
        await pool.rewrite(flow, attempt, account)
        try:
            answer = await upstream_client.send(
                flow.request.method, flow.request.url, list(flow.request.headers.fields),
                flow.request.raw_content or b"", header_timeout_s=service.settings.upstream_timeout_s,
            )
        except upstream_client.UpstreamError as exc:
            verdict = connection_failed(str(exc))
            flow.response = errors.response(502, "api_error", f"teamclaude: upstream connection failed: {exc}")
            continue
        finally:
            pool.redact_sent(flow, attempt)
        flow.response = http.Response.make(answer.status, b"", answer.headers)
        verdict = pool.observe(attempt, answer.status, flow.response.headers.items(multi=True))
        pool.present_quota(flow.response, attempt)
        flow.response.raw_content = answer.body
        flow.response.headers["content-length"] = str(len(answer.body))


def client_writer_for_failover(pool: Pool, flow: http.HTTPFlow, attempt: Attempt) -> asyncio.StreamWriter | None:
    """The client's socket when a connection failure before any response can still be failed
    over transparently, else None.

    mitmproxy answers such failures with its own 502 right after the `error` hook and offers
    no way to replace it. For a plain HTTP/1 client (the reverse-proxy setup) the addon can
    answer on the client's socket itself and then mark the flow killed, which makes
    mitmproxy close the connection without writing anything more.
    """
    if (
        pool.service.settings.failover != "transparent" or attempt.decision is None
        or attempt.header_timer is None or flow.response is not None or flow.error is None
        or mitm_compat.was_killed(flow)
        or flow.client_conn.tls_established or not flow.request.http_version.startswith("HTTP/1")
    ):
        return None
    return mitm_compat.client_socket_writer(flow)


async def after_connection_error(pool: Pool, flow: http.HTTPFlow, attempt: Attempt, writer: asyncio.StreamWriter) -> None:
    message = flow.error.msg if flow.error else "connection error"
    pool.stop_header_timer(attempt)
    pool.redact_sent(flow, attempt)
    flow.response = errors.response(502, "api_error", f"teamclaude: upstream connection failed: {message}")
    try:
        await transparent_retry(pool, flow, attempt, connection_failed(message))
    except Exception:
        logger.exception("teamclaude: internal error during failover")
        flow.response = errors.response(502, "api_error", "teamclaude: internal error during failover; see the proxy log")
    response = flow.response
    response.headers["connection"] = "close"
    response.headers["content-length"] = str(len(response.raw_content or b""))
    mitm_compat.write_response(writer, response)
    attempt.notes.append("answered by teamclaude on the client connection (mitmproxy shows the flow as killed)")
    mitm_compat.mark_killed(flow)
    if flow.id in pool.attempts:
        usage = await usage_of_whole_body(response) if response.status_code < 300 else None
        pool.finish(flow, attempt, response.status_code, usage, level="warn")


def _show_failed_attempt(flow: http.HTTPFlow, attempt: Attempt) -> None:
    """Put a redacted copy of the failed first attempt into mitmweb's flow list."""
    if attempt.decision is None or not mitm_compat.has_flow_view():
        return
    failed = flow.copy()
    rewrite.redact_injected(failed.request.headers, attempt.decision.account)
    failed.comment = f"teamclaude: failed attempt on {attempt.decision.account} ({attempt.verdict.reason if attempt.verdict else ''}); retried transparently"
    failed.marked = ":x:"
    failed.metadata["teamclaude"] = {"failed_attempt_of": flow.id, "account": attempt.decision.account}
    mitm_compat.show_in_flow_list(failed)
