"""One pooled request, from the key check to its last byte, carrying out the steps of its
lifecycle (`routing.lifecycle`, the code bench/simulate.py runs too): hold while it says
`Wait`, put a `Send`'s credentials in, hand it each answer's headers, finish exactly once.

The addon's hooks call in here; `teamclaude.failover` carries out the steps after an answer
the lifecycle did not accept (refresh, re-send, throttle the client).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.hooks import UpdateHook

from routing.lifecycle import Failed, LifecycleSettings, NoAccount, Outcome, Refreshed, Send, Step, Upstream, Wait, Woke, exchange
from routing.ratelimits import parse_ratelimit_headers
from routing.rules import Refusal
from teamclaude import errors, gate, mitm_compat, own_flows, request_body, rewrite, stored_flows, tool_pairs, user_id
from teamclaude.accounts_store import Account
from teamclaude.client_keys import ClientKey
from teamclaude.attempt import HOLD_MARK, Attempt
from teamclaude.credentials import NeedsLogin, OAuthError, UnknownAccount
from teamclaude.hold import hold_ceiling_s, throttled_response_parts
from teamclaude.inflate import MAX_INFLATED_BODY, BodyTooLarge, UndecodableBody, inflate
from teamclaude.pool_headers import apply_pool_headers
from teamclaude.service import Service
from teamclaude.usage_tap import UsageTap, usage_from_json_body

logger = logging.getLogger("teamclaude")

# Wire bytes of a streamed response kept so mitmweb can show it after the stream ended.
KEEP_STREAM_BYTES = 4 * 1024 * 1024
# A client at its `max_concurrent` is told to retry after this many seconds.
CLIENT_LIMIT_RETRY_AFTER_S = 2


class Pool:
    def __init__(self, service: Service, log_flow: Callable[[http.HTTPFlow, dict[str, Any]], None],
                 keep_stream_bytes: Callable[[], int]) -> None:
        self.service = service
        self.attempts: dict[str, Attempt] = {}
        self.flows: dict[str, http.HTTPFlow] = {}  # the flows of `attempts`
        self._log_flow = log_flow
        self._keep_stream_bytes = keep_stream_bytes

    # ----- request -----
    async def start(self, flow: http.HTTPFlow) -> None:
        """A keyed request to a pooled path: read it, choose an account, rewrite the request."""
        req = flow.request
        service = self.service
        holder = gate.key_holder(req.headers, service.keys)
        rewrite.strip_proxy_key(req.headers, service.keys)  # never shown while the request waits
        try:
            body = await request_body.read(req.path.split("?", 1)[0], req.headers, req.raw_content)
        except BodyTooLarge:
            own_flows.mark(flow, own_flows.REFUSED, f"refused: body inflates past {MAX_INFLATED_BODY} bytes")
            flow.response = http.Response.make(413, request_body.too_large_body(), errors.JSON_HEADERS)
            return
        info = service.admit(body.info, req.headers)
        if isinstance(info, Refusal):
            own_flows.mark(flow, own_flows.REFUSED, f"refused: {info.message}")
            flow.response = errors.response(info.status, info.kind, info.message)
            return
        client = holder.client if holder is not None else None
        if client is not None and not service.clients.begin(client):  # counted until `finish`
            self._refuse_over_limit(flow, client)
            return
        attempt = Attempt(info, started=service.clock(), client=client.name if client is not None else None)
        self.attempts[flow.id] = attempt
        self.flows[flow.id] = flow
        await _repair_tool_blocks(flow, attempt, body.content)
        if service.shared is not None:
            await service.shared.prepare(attempt.request)  # a conversation another proxy bound
        attempt.lifecycle = exchange(service.router, attempt.request, service.streaks,
                                     self.lifecycle_settings(), service.clock(), attempt)
        attempt.step = next(attempt.lifecycle)
        step = await self.prepare(flow, attempt, attempt.step)
        if isinstance(step, NoAccount):
            self.respond_no_account(flow, attempt, step)
            return
        assert isinstance(step, Send), step  # nothing else comes before the first answer
        self._start_header_timer(flow, attempt)

    def _refuse_over_limit(self, flow: http.HTTPFlow, client: ClientKey) -> None:
        """The client has `max_concurrent` requests in flight: a 429 from the proxy itself,
        before any account is chosen."""
        message = (f"teamclaude: client '{client.name}' already has {client.max_concurrent} requests in flight, "
                   "its limit (max_concurrent); retry when one finishes")
        own_flows.mark(flow, own_flows.REFUSED, f"refused: client '{client.name}' at its limit of "
                                                f"{client.max_concurrent} requests in flight")
        flow.metadata["teamclaude"]["client"] = client.name
        flow.response = errors.response(429, "rate_limit_error", message)
        flow.response.headers["retry-after"] = str(CLIENT_LIMIT_RETRY_AFTER_S)
        self.service.changed()

    def lifecycle_settings(self) -> LifecycleSettings:
        settings = self.service.settings
        return LifecycleSettings(settings.failover, self.hold_budget_s(), settings.hold_poll_s)

    def hold_budget_s(self) -> float:
        return min(self.service.settings.hold_budget_s, hold_ceiling_s(mitm_compat.tcp_timeout_s()))

    def advance(self, attempt: Attempt, outcome: Outcome) -> Step:
        """Tell the lifecycle what happened; it benches, releases and chooses (behaviour §6)."""
        account = attempt.decision.account if attempt.decision else None
        failures = len(attempt.history)
        step = attempt.advance(outcome)
        self.service.metrics.advanced(attempt, account, failures, outcome)
        self.service.changed()
        if account is not None and self.service.shared is not None:
            self.service.shared.account_changed(account)
        verdict = attempt.verdict
        if isinstance(outcome, Upstream) and verdict is not None and verdict.bench_until is not None:
            logger.warning("teamclaude: %s benched: %s", account, verdict.reason)
        why = verdict.reason if isinstance(outcome, Upstream) and verdict and verdict.needs_login else (
            outcome.reason if isinstance(outcome, Refreshed) and outcome.needs_login else None)
        if why is not None:
            logger.warning("teamclaude: %s needs a new login (%s): run `teamclaude login`", account, why)
        return step

    async def prepare(self, flow: http.HTTPFlow, attempt: Attempt, step: Step) -> Step:
        """Carry out holds (`Wait`) and a `Send`'s credentials until the request is rewritten
        for a `Send`'s account (that step is returned) or the lifecycle asks for another step."""
        service = self.service
        while True:
            if isinstance(step, Wait):
                step = await self._hold(flow, attempt, step)
                continue
            if not isinstance(step, Send):
                return step
            try:
                account = await service.credentials.fresh(step.decision.account)
            except (OAuthError, UnknownAccount) as exc:
                # NeedsLogin is an OAuthError; a token endpoint that is down while the token
                # has already expired is one too: either way this account cannot serve now.
                logger.warning("teamclaude: %s", exc)
                step = self.advance(attempt, Failed(str(exc), service.clock(), needs_login=isinstance(exc, NeedsLogin)))
                continue
            self.service.metrics.sending(attempt, step.decision)
            await self.rewrite(flow, attempt, account)
            return step

    async def _hold(self, flow: http.HTTPFlow, attempt: Attempt, step: Wait) -> Step:
        """`Wait` steps in a row are one hold: the flow marked ⏳ (and shown so) and counted
        in the capacity meanwhile, woken early by `Service.changed` (releases, headers)."""
        service = self.service
        budget = self.hold_budget_s() - attempt.held_s
        began = service.clock()
        token = service.holds.begin(began)
        flow.marked = HOLD_MARK
        flow.comment = f"teamclaude: held, waiting for an account (up to {budget:.0f}s)"
        _show_update(flow)
        service.changed()
        try:
            while isinstance(step, Wait):
                service.holds.waking_at(token, step.until)
                await service.waker.wait(step.until - service.clock())
                step = attempt.advance(Woke(service.clock()))
        finally:
            service.holds.end(token)
            service.metrics.held(service.clock() - began)
            service.changed()
        return step

    async def rewrite(self, flow: http.HTTPFlow, attempt: Attempt, account: Account) -> None:
        """Put `account` into the request: its credential, and its UUID in `metadata.user_id`
        (every attempt, failovers included)."""
        await self._identify(flow, attempt, account)
        attempt.rewritten_for = account.name
        if account.name in self.service.credentials.unsaved:
            attempt.notes.append(f"{account.name}: new token not saved yet (disk); serving it from memory")
        if account.type == "oauth":
            rewrite.apply_oauth(flow.request.headers, account.access_token or "")
        else:
            rewrite.apply_api_key(flow.request.headers, account.api_key or "")
        self.annotate(flow, attempt)
        self.service.changed()
        if self.service.shared is not None and attempt.decision is not None:
            self.service.shared.sent(flow.id, account.name, attempt.request)

    async def _identify(self, flow: http.HTTPFlow, attempt: Attempt, account: Account) -> None:
        """The body for this attempt: the client's, with the account's UUID in `metadata.user_id`
        for an OAuth account whose UUID is known (an API-key account gets the client's own)."""
        body = attempt.client_body
        if body is None:
            return
        serving = None
        if account.type == "oauth":
            uuid, why = await self.service.account_uuids.uuid(account)
            if uuid is None:
                if user_id.has_user_id(body):
                    _note_once(attempt, f"metadata.user_id sent as the client wrote it: {why}")
            else:
                result = await request_body.off_loop_if_large(user_id.rewrite_account_uuid, body, uuid)
                if result.status == "malformed":
                    _note_once(attempt, "metadata.user_id has an unknown form: sent as the client wrote it")
                elif result.status != "absent":
                    body, serving = result.body, account.name
        if serving != attempt.user_id_for:
            flow.request.set_content(body)
        attempt.user_id_for = serving

    def redact_sent(self, flow: http.HTTPFlow, attempt: Attempt) -> None:
        """The credential of an attempt whose request has left: out of the stored flow."""
        if attempt.rewritten_for:
            rewrite.redact_injected(flow.request.headers, attempt.rewritten_for)
        stored_flows.redact_headers(flow.request.headers)

    def respond_no_account(self, flow: http.HTTPFlow, attempt: Attempt, step: NoAccount) -> None:
        """No account can serve: 503 when there is none or waiting cannot help (needs-login,
        disabled, refused), else the 429 of behaviour §6.4."""
        service = self.service
        now = service.clock()
        if not service.accounts.accounts:
            message = "teamclaude has no accounts: add one with `teamclaude login` or `teamclaude import`."
            flow.response = errors.response(503, "api_error", message)
        elif not step.throttled:
            flow.response = errors.response(503, "api_error", service.no_account_message())
        else:
            body, headers = throttled_response_parts(
                service.serving_count(attempt.request), service.soonest_free(now, attempt.request), now, step.held_s,
                service.settings.client_retry_after_max_s,
            )
            flow.response = http.Response.make(429, body, headers)
        attempt.notes.append("no account could serve")
        self.finish(flow, attempt, flow.response.status_code, None, level="error")

    # ----- upstream header timeout -----
    def _start_header_timer(self, flow: http.HTTPFlow, attempt: Attempt) -> None:
        timeout = self.service.settings.upstream_timeout_s
        attempt.header_timer = asyncio.get_running_loop().call_later(timeout, self._header_timeout, flow, timeout)

    def _header_timeout(self, flow: http.HTTPFlow, timeout: float) -> None:
        attempt = self.attempts.get(flow.id)
        if attempt is None or flow.response is not None:
            return
        attempt.notes.append(f"no response headers within {timeout:g}s")
        mitm_compat.close_pending_server_connections(flow)

    @staticmethod
    def stop_header_timer(attempt: Attempt) -> None:
        if attempt.header_timer is not None:
            attempt.header_timer.cancel()
            attempt.header_timer = None

    # ----- answers -----
    def observe(self, flow: http.HTTPFlow, attempt: Attempt, *, streaming: bool) -> Step:
        """The answer's headers (`flow.response`) to the lifecycle, which observes, classifies
        and says what next (behaviour §4, §6); with `pool_headers` the answer then describes
        the pool, this answer included."""
        response = flow.response
        assert response is not None
        limits = parse_ratelimit_headers(response.headers.items(multi=True))
        if self.service.shared is not None and attempt.decision is not None:
            self.service.shared.observed(attempt.decision.account, response.status_code, limits)
        step = self.advance(attempt, Upstream(response.status_code, limits, self.service.clock(), streaming))
        if self.service.settings.pool_headers:
            own = apply_pool_headers(response.headers, self.service.pool_windows(), attempt.request.model)
            attempt.account_ratelimit = own or attempt.account_ratelimit
        return step

    def on_headers(self, flow: http.HTTPFlow, attempt: Attempt) -> None:
        """Response headers arrived: the request has left, so its credential leaves the flow.
        A stream goes on to the client as it comes (the lifecycle answers it as it is)."""
        assert flow.response is not None
        self.stop_header_timer(attempt)
        self.redact_sent(flow, attempt)
        response = flow.response
        # An interim (1xx) answer is not streamed: the final one may still replace it.
        streaming = response.status_code >= 200 and response.headers.get("content-type", "").startswith("text/event-stream")
        self.observe(flow, attempt, streaming=streaming)
        if streaming:
            attempt.tap = UsageTap(response.headers.get("content-encoding"), keep_bytes=self._keep_stream_bytes())
            response.stream = attempt.tap

    def finish(self, flow: http.HTTPFlow, attempt: Attempt, status: int | None, usage, level: str) -> None:
        """Exactly once per pooled flow: redact, release the slot, annotate, log the activity.

        Redaction and the release come first; nothing after them can undo either."""
        self.attempts.pop(flow.id, None)
        self.flows.pop(flow.id, None)
        self.stop_header_timer(attempt)
        self.redact_sent(flow, attempt)
        if attempt.lifecycle is not None:
            attempt.lifecycle.close()
        if attempt.decision is not None:  # failed attempts' tickets: released by the lifecycle
            self.service.router.release(attempt.decision.ticket, self.service.clock(), usage, status)
            self.service.changed()
        if attempt.client is not None:
            cost = self.service.router.prices.cost(usage) if usage is not None else 0.0
            self.service.clients.end(attempt.client, usage.total if usage is not None else 0, cost)
            self.service.changed()
        try:
            if self.service.shared is not None:
                self._share_finish(flow, attempt, usage)
            self._report(flow, attempt, status, usage, level)
        except Exception:
            logger.exception("teamclaude: internal error while finishing a request")

    def _share_finish(self, flow: http.HTTPFlow, attempt: Attempt, usage) -> None:
        assert self.service.shared is not None
        account = attempt.decision.account if attempt.decision else None
        cost = self.service.router.prices.cost(usage) if usage is not None else 0.0
        self.service.shared.finished(flow.id, account, attempt.request, usage, cost, attempt.client)

    def _report(self, flow: http.HTTPFlow, attempt: Attempt, status: int | None, usage, level: str) -> None:
        service = self.service
        now = service.clock()
        account = attempt.decision.account if attempt.decision else attempt.last_account
        reason = attempt.decision.reason if attempt.decision else "none"
        duration_ms = round((now - attempt.started) * 1000)
        tokens = usage.total if usage is not None else 0
        service.metrics.finished(attempt, account, status, usage)
        self.annotate(flow, attempt, {"status": status, "tokens": tokens, "duration_ms": duration_ms})
        meta = flow.metadata["teamclaude"]
        self._log_flow(flow, {
            "kind": "pooled", "status": status, "duration_ms": duration_ms,
            "account": account, "client": attempt.client, "session": meta["session"], "model": meta["model"], "stream": meta["stream"],
            "reason": meta["reason"], "detail": meta["detail"],
            "failovers": meta.get("failed_attempts", []), "held_s": meta.get("held_s", 0.0),
            "notes": meta.get("notes", []), "error": flow.error.msg if flow.error else None,
            "usage": self._usage_fields(usage),
        })
        notes = [f"{h['account']} {h['status']} {h['reason']}" for h in attempt.history] + attempt.notes
        service.activity.add(
            t=now, method=flow.request.method, path=attempt.request.path, account=account,
            session=attempt.request.session_id, model=attempt.request.model, status=status,
            duration_ms=duration_ms, reason="failover" if attempt.history else reason,
            level=level if not attempt.history or level != "info" else "warn", note="; ".join(notes),
        )

    def _usage_fields(self, usage) -> dict[str, Any] | None:
        if usage is None:
            return None
        return {**usage.as_dict(), "model": usage.model, "cost_usd": round(self.service.router.prices.cost(usage), 6)}

    @staticmethod
    def annotate(flow: http.HTTPFlow, attempt: Attempt, outcome: dict[str, Any] | None = None) -> None:
        flow.metadata["teamclaude"] = attempt.metadata(outcome)
        flow.comment = attempt.comment(outcome)
        flow.marked = attempt.mark()

    def redact_in_flight(self) -> None:
        """The addon ends (shutdown, a script reload): every flow still in flight loses its
        credential — ours, and the pass-through ones `-w` would save now — before anything
        stores it; a flow the next addon finishes is not known to it."""
        for flow in list(self.flows.values()):
            attempt = self.attempts.get(flow.id)
            if attempt is not None:
                self.redact_sent(flow, attempt)
                attempt.notes.append("in flight when the addon ended")
        for flow in [*self.flows.values(), *mitm_compat.active_flows()]:
            stored_flows.redact_request(flow.request)


async def _repair_tool_blocks(flow: http.HTTPFlow, attempt: Attempt, body: bytes | None) -> None:
    """Once, before the first attempt: a Messages body (`body`, decoded) loses its provably
    unpaired tool blocks (teamclaude.tool_pairs), and is kept for the per-account
    `metadata.user_id` rewrite."""
    req = flow.request
    if req.method != "POST" or not attempt.request.path.startswith("/v1/messages"):
        return
    if body is None:
        attempt.notes.append("request body not decodable or too large to read: sent as it is")
        return
    repaired = await request_body.off_loop_if_large(tool_pairs.repair, body)
    if repaired.body is not body:
        req.set_content(repaired.body)
    attempt.notes.extend(repaired.notes)
    attempt.client_body = repaired.body


def _note_once(attempt: Attempt, note: str) -> None:
    if note not in attempt.notes:
        attempt.notes.append(note)


async def usage_of_whole_body(response: http.Response):
    """Usage of a buffered response: JSON, or a whole SSE body (a transparent retry); an
    encoded body is inflated (up to `MAX_INFLATED_BODY`) in a worker thread."""
    content_encoding = response.headers.get("content-encoding")
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        tap = UsageTap(content_encoding)
        if content_encoding:
            await asyncio.to_thread(tap, response.raw_content or b"")
        else:
            tap(response.raw_content or b"")
        return tap.usage
    if not content_encoding:
        return usage_from_json_body(response.raw_content)
    try:
        body = await asyncio.to_thread(inflate, response.raw_content or b"", content_encoding, MAX_INFLATED_BODY)
    except (BodyTooLarge, UndecodableBody):
        return None
    return usage_from_json_body(body)


def _show_update(flow: http.HTTPFlow) -> None:
    """Tell the flow views (mitmweb, the console) that a flow in a long hook changed."""
    ctx.master.addons.trigger(UpdateHook([flow]))
