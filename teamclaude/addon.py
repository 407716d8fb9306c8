"""The mitmproxy addon class (loaded by `mitmdump -s teamclaude_addon.py`).

Thin glue: turns flows into calls on `teamclaude.service.Service` and the routing engine,
and engine answers into flow edits. With no `--mode` given it runs mitmproxy as a reverse
proxy on the configured `listen_host:port` toward `upstream`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import command, ctx, http
from mitmproxy.proxy.mode_specs import ReverseMode

from routing.failures import THROTTLED_KINDS, Verdict, classify
from routing.ratelimits import parse_ratelimit_headers
from routing.request_info import read_request
from routing.types import RequestInfo
from teamclaude import endpoints, errors, gate, rewrite, upstream_client
from teamclaude.accounts_store import Account
from teamclaude.attempt import Attempt
from teamclaude.credentials import NeedsLogin, OAuthError, UnknownAccount
from teamclaude.hold import throttled_response_parts
from teamclaude.service import ConfigError, Service, load_config
from teamclaude.usage_tap import UsageTap, usage_from_json_body

logger = logging.getLogger("teamclaude")

# Wire bytes of a streamed response kept so mitmweb can show it after the stream ended.
KEEP_STREAM_BYTES = 4 * 1024 * 1024


def _path_only(path: str) -> str:
    return path.split("?", 1)[0]


def _json_response(status: int, document: dict[str, Any], extra: dict[str, str] | None = None) -> http.Response:
    headers = {"content-type": "application/json"}
    headers.update(extra or {})
    return http.Response.make(status, json.dumps(document).encode(), headers)


def _error_response(status: int, kind: str, message: str) -> http.Response:
    return http.Response.make(status, errors.error_body(kind, message), errors.JSON_HEADERS)


class TeamClaude:
    def __init__(self) -> None:
        self.service: Service | None = None
        self._attempts: dict[str, Attempt] = {}
        self._tasks: list[asyncio.Task] = []
        self._config_path: Path | None = None
        self._auto_mode: str | None = None

    # ----- lifecycle (kept synchronous: async lifecycle hooks break script reloads) -----
    def load(self, loader) -> None:
        loader.add_option(
            "teamclaude_config", str, "",
            "teamclaude settings file (default: $TEAMCLAUDE_CONFIG or ~/.config/teamclaude/config.yaml).",
        )

    def configure(self, updated: set[str]) -> None:
        if "teamclaude_config" in updated:
            self._config_path = Path(ctx.options.teamclaude_config).expanduser() if ctx.options.teamclaude_config else None
            try:
                loaded = load_config(self._config_path)
            except ConfigError as exc:
                logger.error("teamclaude: %s", exc)
                return
            if self.service is None:
                self.service = Service(loaded)
            else:
                self.service.apply(loaded)
        if self.service is not None and ("mode" in updated or "teamclaude_config" in updated):
            self._choose_mode()

    def _choose_mode(self) -> None:
        """Without `--mode`, serve as a reverse proxy toward the configured upstream."""
        assert self.service is not None
        settings = self.service.settings
        if list(ctx.options.mode) == ["regular"]:
            self._auto_mode = f"reverse:{settings.upstream}@{settings.listen_host}:{settings.port}"
            ctx.options.update(mode=[self._auto_mode], connection_strategy="lazy")
        if any(spec.startswith("reverse") for spec in ctx.options.mode):
            self.service.mode = "reverse"
        else:
            self.service.mode = "regular"
            self.service.listen = ", ".join(ctx.options.mode)

    def running(self) -> None:
        if self.service is None:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.service.writer.run(), name="teamclaude state writer"),
            loop.create_task(self.service.watch(self._config_path), name="teamclaude file watcher"),
            loop.create_task(self._note_listen_address(), name="teamclaude listen address"),
            loop.create_task(self.service.credentials.run_background(), name="teamclaude token refresher"),
        ]

    async def _note_listen_address(self) -> None:
        """Record the real port (the settings may say 0) once the server is up."""
        proxyserver = ctx.master.addons.get("proxyserver")
        for _ in range(200):
            addresses = proxyserver.listen_addrs() if proxyserver else []
            if addresses:
                host, port = addresses[0][:2]
                if self.service is not None and self.service.mode == "reverse":
                    self.service.listen = f"http://{host}:{port}"
                    self.service.changed()
                if self.service is not None:
                    logger.info(
                        "teamclaude: serving %s with %d accounts (%s)", self.service.listen,
                        len(self.service.accounts.accounts), self.service.settings.path,
                    )
                return
            await asyncio.sleep(0.05)

    def done(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self.service is not None:
            self.service.writer.write_sync()

    # ----- commands (usable from mitmweb and the console) -----
    @command.command("teamclaude.status")
    def status_command(self) -> str:
        return json.dumps(self._require().status(), indent=2)

    @command.command("teamclaude.capacity")
    def capacity_command(self) -> str:
        return json.dumps(self._require().capacity(), indent=2)

    @command.command("teamclaude.switch")
    def switch_command(self, account: str) -> str:
        return self._require().switch(account or None)

    @command.command("teamclaude.reload")
    def reload_command(self) -> None:
        service = self._require()
        asyncio.get_running_loop().create_task(self._reload_quietly(service))

    async def _reload_quietly(self, service: Service) -> None:
        try:
            logger.info("teamclaude: %s", await service.reload(self._config_path))
        except ConfigError:
            pass

    def _require(self) -> Service:
        if self.service is None:
            raise ValueError("teamclaude is not configured (see the error at startup)")
        return self.service

    # ----- request path -----
    def _is_pooled(self, flow: http.HTTPFlow) -> bool:
        if isinstance(flow.client_conn.proxy_mode, ReverseMode):
            return True
        assert self.service is not None
        return flow.request.pretty_host == urlsplit(self.service.settings.upstream).hostname

    async def request(self, flow: http.HTTPFlow) -> None:
        service = self.service
        if service is None or flow.response is not None or not self._is_pooled(flow):
            return
        req = flow.request
        path = _path_only(req.path)
        if gate.is_browser_request(req.headers):
            flow.response = _error_response(403, "permission_error", errors.BROWSER_REFUSED)
            return
        if isinstance(flow.client_conn.proxy_mode, ReverseMode) and endpoints.is_local(path):
            await self._answer_local(flow, path)
            return
        if gate.is_pass_through(req.method, path):
            flow.comment = "teamclaude: pass-through (client's own credentials)"
            return
        if not gate.key_matches(req.headers, service.proxy_key):
            flow.response = _error_response(401, "authentication_error", errors.missing_key_message())
            return
        info = read_request(path, req.headers, req.raw_content if "content-encoding" not in req.headers else req.get_content(strict=False))
        attempt = Attempt(info, service.clock())
        self._attempts[flow.id] = attempt
        try:
            account = await self._acquire(flow, attempt)
            if account is None:
                self._respond_no_account(flow, attempt)
                return
            self._rewrite(flow, attempt, account)
            self._start_header_timer(flow, attempt)
        except Exception:
            # Never let a request go upstream half-rewritten (it could carry the proxy key).
            logger.exception("teamclaude: internal error while routing %s", path)
            self._release(attempt, None)
            flow.response = _error_response(500, "api_error", "teamclaude: internal error while routing; see the proxy log")

    async def _answer_local(self, flow: http.HTTPFlow, path: str) -> None:
        service = self.service
        assert service is not None
        if not gate.key_matches(flow.request.headers, service.proxy_key):
            flow.response = _error_response(401, "authentication_error", errors.missing_key_message())
            return
        status, document = await endpoints.answer(
            service, flow.request.method, path, flow.request.raw_content or b"", self._config_path
        )
        flow.response = _json_response(status, document)

    # ----- choosing an account (with holds) and getting its credentials -----
    async def _acquire(self, flow: http.HTTPFlow, attempt: Attempt) -> Account | None:
        """Select an account for the request (holding inference while none can serve) and
        return it with fresh credentials; None when nothing can serve within the budget."""
        service = self.service
        assert service is not None
        info = attempt.request
        while True:
            decision = service.router.select(info, service.clock(), exclude=attempt.tried)
            if decision is None and info.is_inference and service.accounts.accounts:
                began = service.clock()
                decision = await service.hold(info, attempt.refused, service.settings.hold_budget_s)
                attempt.held_s += service.clock() - began
            if decision is None:
                attempt.decision = None
                return None
            attempt.choose(decision)
            try:
                return await service.credentials.fresh(decision.account)
            except (OAuthError, UnknownAccount) as exc:
                # NeedsLogin is an OAuthError; a token endpoint that is down while the token
                # has already expired is one too: either way this account cannot serve now.
                self._release(attempt, None)
                if isinstance(exc, NeedsLogin):
                    service.router.mark_needs_login(decision.account, True)
                logger.warning("teamclaude: %s", exc)
                attempt.fail(None, "no usable token", throttled=False)

    def _rewrite(self, flow: http.HTTPFlow, attempt: Attempt, account: Account) -> None:
        if account.type == "oauth":
            rewrite.apply_oauth(flow.request.headers, account.access_token or "")
        else:
            rewrite.apply_api_key(flow.request.headers, account.api_key or "")
        self._annotate(flow, attempt)
        assert self.service is not None
        self.service.changed()

    def _release(self, attempt: Attempt, status: int | None, usage=None) -> None:
        service = self.service
        if attempt.decision is not None and service is not None:
            service.router.release(attempt.decision.ticket, service.clock(), usage, status)
            service.changed()

    def _respond_no_account(self, flow: http.HTTPFlow, attempt: Attempt) -> None:
        """No account can serve: 503 with no accounts at all, else the 429 of SPEC §6.4."""
        service = self.service
        assert service is not None
        now = service.clock()
        if not service.accounts.accounts:
            message = "teamclaude has no accounts: add one with `teamclaude login` or `teamclaude import`."
            flow.response = _error_response(503, "api_error", message)
        else:
            body, headers = throttled_response_parts(
                len(service.accounts.accounts), service.soonest_free(now), now, attempt.held_s,
                service.settings.client_retry_after_max_s,
            )
            flow.response = http.Response.make(429, body, headers)
        attempt.notes.append("no account could serve")
        self._finish(flow, attempt, flow.response.status_code, None, level="error")

    # ----- upstream header timeout -----
    def _start_header_timer(self, flow: http.HTTPFlow, attempt: Attempt) -> None:
        assert self.service is not None
        timeout = self.service.settings.upstream_timeout_s
        attempt.header_timer = asyncio.get_running_loop().call_later(timeout, self._header_timeout, flow, timeout)

    def _header_timeout(self, flow: http.HTTPFlow, timeout: float) -> None:
        """Close a server connection that sent no headers in time, so it cannot wedge the
        request (mitmproxy 11 cannot kill a flow in transit; closing its connection works)."""
        attempt = self._attempts.get(flow.id)
        if attempt is None or flow.response is not None:
            return
        attempt.notes.append(f"no response headers within {timeout:g}s")
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(flow.client_conn.id) if proxyserver else None
        if handler is not None and flow.server_conn is not None:
            handler.close_connection(flow.server_conn)

    @staticmethod
    def _stop_header_timer(attempt: Attempt) -> None:
        if attempt.header_timer is not None:
            attempt.header_timer.cancel()
            attempt.header_timer = None

    # ----- responses -----
    def _annotate(self, flow: http.HTTPFlow, attempt: Attempt, outcome: dict[str, Any] | None = None) -> None:
        flow.metadata["teamclaude"] = attempt.metadata(outcome)
        flow.comment = attempt.comment(outcome)
        if attempt.mark():
            flow.marked = attempt.mark()

    def _observe(self, attempt: Attempt, status: int, headers) -> Verdict:
        """Feed a response's headers to the engine and classify it (SPEC §4, §6)."""
        service = self.service
        assert service is not None and attempt.decision is not None
        now = service.clock()
        account = attempt.decision.account
        limits = parse_ratelimit_headers(headers)
        service.router.observe(account, status, limits, now)
        if limits.unknown:
            attempt.notes.append("new rate-limit headers: " + ", ".join(limits.unknown))
        spec = service.account(account)
        verdict = classify(
            status, limits, account=account, oauth=spec is not None and spec.type == "oauth",
            model=attempt.request.model, now=now, ladder=service.settings.backoff_ladder_s,
            streaks=service.streaks, refreshed_this_request=attempt.refreshed,
        )
        service.apply_verdict(account, verdict, now)
        return verdict

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        attempt = self._attempts.get(flow.id)
        if attempt is None or attempt.decision is None or flow.response is None:
            return
        self._stop_header_timer(attempt)
        response = flow.response
        attempt.verdict = self._observe(attempt, response.status_code, response.headers.items(multi=True))
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            attempt.tap = UsageTap(response.headers.get("content-encoding"), keep_bytes=KEEP_STREAM_BYTES)
            response.stream = attempt.tap

    async def response(self, flow: http.HTTPFlow) -> None:
        attempt = self._attempts.get(flow.id)
        service = self.service
        if attempt is None or service is None or flow.response is None or attempt.decision is None:
            return
        verdict = attempt.verdict
        if verdict is not None and attempt.tap is None and (verdict.failover or verdict.refresh_and_retry):
            try:
                if service.settings.failover == "client":
                    await self._client_throttle(flow, attempt, verdict)
                else:
                    await self._transparent_retry(flow, attempt, verdict)
            except Exception:
                logger.exception("teamclaude: internal error during failover")
                flow.response = _error_response(502, "api_error", "teamclaude: internal error during failover; see the proxy log")
            if flow.id not in self._attempts:
                return
        response = flow.response
        if attempt.tap is not None:
            usage = attempt.tap.usage
            if not attempt.tap.wire_truncated:
                response.raw_content = attempt.tap.wire_bytes()
        elif response.status_code < 300:
            usage = _usage_of_whole_body(response)
        else:
            usage = None
        self._finish(flow, attempt, response.status_code, usage, level="info" if response.status_code < 400 else "warn")

    def error(self, flow: http.HTTPFlow) -> None:
        attempt = self._attempts.get(flow.id)
        if attempt is None or self.service is None:
            return
        usage = attempt.tap.usage if attempt.tap is not None else None
        status = flow.response.status_code if flow.response is not None else None
        attempt.notes.append(flow.error.msg if flow.error else "connection error")
        self._finish(flow, attempt, status, usage, level="error")

    def _finish(self, flow: http.HTTPFlow, attempt: Attempt, status: int | None, usage, level: str) -> None:
        """Exactly once per pooled flow: release the slot, redact, annotate, log the activity."""
        service = self.service
        assert service is not None
        self._attempts.pop(flow.id, None)
        self._stop_header_timer(attempt)
        now = service.clock()
        account = attempt.decision.account if attempt.decision else attempt.last_account
        reason = attempt.decision.reason if attempt.decision else "none"
        self._release(attempt, status, usage)
        if account:
            rewrite.redact_injected(flow.request.headers, account)
        duration_ms = round((now - attempt.started) * 1000)
        tokens = usage.total if usage is not None else 0
        self._annotate(flow, attempt, {"status": status, "tokens": tokens, "duration_ms": duration_ms})
        notes = [f"{h['account']} {h['status']} {h['reason']}" for h in attempt.history] + attempt.notes
        service.activity.add(
            t=now, method=flow.request.method, path=attempt.request.path, account=account,
            session=attempt.request.session_id, model=attempt.request.model, status=status,
            duration_ms=duration_ms, reason="failover" if attempt.history else reason,
            level=level if not attempt.history or level != "info" else "warn", note="; ".join(notes),
        )

    # ----- failover (SPEC §6.1) -----
    async def _client_throttle(self, flow: http.HTTPFlow, attempt: Attempt, verdict: Verdict) -> None:
        """`failover: client`: turn the failure into a throttle Claude Code retries at once;
        the engine already benched the account, so the retry lands elsewhere, streaming."""
        service = self.service
        assert service is not None and attempt.decision is not None and flow.response is not None
        account = attempt.decision.account
        if verdict.refresh_and_retry:
            try:
                await service.credentials.fresh(account, force=True)
            except OAuthError as exc:
                service.apply_verdict(account, Verdict("unauthorized", str(exc), needs_login=isinstance(exc, NeedsLogin)), service.clock())
        elif verdict.pass_through_if_alone and not service.router.can_serve(attempt.request, service.clock(), {account}):
            return
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

    async def _transparent_retry(self, flow: http.HTTPFlow, attempt: Attempt, verdict: Verdict) -> None:
        """`failover: transparent`: re-send the request ourselves until an account answers
        well or none is left; its answer replaces the failed one (buffered, SPEC §6.1)."""
        service = self.service
        assert service is not None and flow.response is not None
        self._show_failed_attempt(flow, attempt)
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
                self._release(attempt, status)
                account = await self._acquire(flow, attempt)
                if account is None:
                    self._respond_no_account(flow, attempt)
                    return
            self._rewrite(flow, attempt, account)
            try:
                answer = await upstream_client.send(
                    flow.request.method, flow.request.url, list(flow.request.headers.items(multi=True)),
                    flow.request.raw_content or b"", header_timeout_s=service.settings.upstream_timeout_s,
                )
            except upstream_client.UpstreamError as exc:
                verdict = Verdict("connection", f"connection failed: {exc}", failover=True)
                flow.response = _error_response(502, "api_error", f"teamclaude: upstream connection failed: {exc}")
                continue
            verdict = self._observe(attempt, answer.status, answer.headers)
            flow.response = http.Response.make(
                answer.status, b"", [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers]
            )
            flow.response.raw_content = answer.body
            flow.response.headers["content-length"] = str(len(answer.body))

    def _show_failed_attempt(self, flow: http.HTTPFlow, attempt: Attempt) -> None:
        """Put a redacted copy of the failed first attempt into mitmweb's flow list."""
        view = ctx.master.addons.get("view")
        if view is None or attempt.decision is None:
            return
        failed = flow.copy()
        rewrite.redact_injected(failed.request.headers, attempt.decision.account)
        failed.comment = f"teamclaude: failed attempt on {attempt.decision.account} ({attempt.verdict.reason if attempt.verdict else ''}); retried transparently"
        failed.marked = ":x:"
        failed.metadata["teamclaude"] = {"failed_attempt_of": flow.id, "account": attempt.decision.account}
        view.add([failed])


def _usage_of_whole_body(response: http.Response):
    """Usage of a buffered response: JSON, or a whole SSE body (a transparent retry)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        tap = UsageTap(response.headers.get("content-encoding"))
        tap(response.raw_content or b"")
        tap(b"")
        return tap.usage
    return usage_from_json_body(response.get_content(strict=False))
