"""The mitmproxy addon class (loaded by `mitmdump -s teamclaude_addon.py`).

Thin glue: turns flows into calls on `teamclaude.service.Service` and the routing engine,
and engine answers into flow edits. With no `--mode` given it runs mitmproxy as a reverse
proxy on the configured `listen_host:port` toward `upstream`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

import mitmproxy.flow
import mitmproxy.types
from mitmproxy import command, ctx, exceptions, http
from mitmproxy.log import ALERT
from mitmproxy.connection import ConnectionState
from mitmproxy.net.http.http1.assemble import assemble_response
from mitmproxy.proxy.mode_specs import ReverseMode

from routing.failures import THROTTLED_KINDS, Verdict, classify
from routing.ratelimits import parse_ratelimit_headers
from routing.request_info import read_request
from routing.types import RequestInfo
from teamclaude import endpoints, errors, export, gate, request_log, rewrite, stored_flows, upstream_client
from teamclaude.accounts_store import Account
from teamclaude.attempt import Attempt
from teamclaude.credentials import NeedsLogin, OAuthError, UnknownAccount
from teamclaude.hold import throttled_response_parts
from teamclaude.request_log import RequestLog
from teamclaude.service import ConfigError, Service, load_config
from teamclaude.usage_tap import UsageTap, WireCopy, usage_from_json_body

logger = logging.getLogger("teamclaude")

# `failover: client`: how long an account that failed without a bench is kept off the retry.
CLIENT_RETRY_COOLDOWN_S = 5.0

# Wire bytes of a streamed response kept so mitmweb can show it after the stream ended.
KEEP_STREAM_BYTES = 4 * 1024 * 1024

# `flow.metadata["teamclaude"]["kind"]` of flows the addon answers or passes without an account.
PASS_THROUGH, LOCAL, REFUSED = "pass-through", "local", "refused"


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
        self._log: RequestLog | None = None

    # ----- lifecycle (kept synchronous: async lifecycle hooks break script reloads) -----
    def load(self, loader) -> None:
        loader.add_option(
            "teamclaude_config", str, "",
            "teamclaude settings file (default: $TEAMCLAUDE_CONFIG or ~/.config/teamclaude/config.yaml).",
        )
        loader.add_option(
            "teamclaude_log_dir", Optional[str], None,
            "Write one JSON file per request into this directory, credentials redacted "
            "(overrides log_dir in the settings; see docs/request-log.md).",
        )
        loader.add_option(
            "teamclaude_log_keep_days", int, request_log.DEFAULT_KEEP_DAYS,
            "Delete request log files older than this many days (0 keeps them all).",
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
        # Everything loaded so far lives as long as the proxy: keep it out of the cyclic
        # collector's full passes (measured: 60-120 ms pauses with 500 live streams).
        gc.freeze()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.service.writer.run(), name="teamclaude state writer"),
            loop.create_task(self.service.watch(self._config_path), name="teamclaude file watcher"),
            loop.create_task(self._note_listen_address(), name="teamclaude listen address"),
            loop.create_task(self.service.credentials.run_background(), name="teamclaude token refresher"),
        ]
        self._request_log()

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
        if self._log is not None:
            self._log.flush_sync()
        if self.service is not None:
            self.service.writer.write_sync()

    def _request_log(self) -> RequestLog | None:
        """The request log for the current option and settings (restarted when they change)."""
        service = self.service
        if service is None:
            return None
        option = ctx.options.teamclaude_log_dir
        directory = Path(option).expanduser() if option else service.settings.log_dir
        wanted = None if directory is None else (directory, service.settings.log_bodies, ctx.options.teamclaude_log_keep_days)
        if self._log is not None and self._log.config == wanted:
            return self._log
        if self._log is not None:
            self._log.close()
            self._log = None
        if wanted is not None:
            self._log = RequestLog(wanted[0], bodies=wanted[1], keep_days=wanted[2])
            task = asyncio.get_running_loop().create_task(self._log.run(), name="teamclaude request log")
            self._tasks = [t for t in self._tasks if not t.done()] + [task]
        return self._log

    def _log_flow(self, flow: http.HTTPFlow, facts: dict[str, Any]) -> None:
        log = self._request_log()
        if log is not None and self.service is not None:
            log.submit(request_log.entry_for(flow, facts, bodies=log.bodies, secrets=self.service.secrets()))

    def _keep_stream_bytes(self) -> int:
        """Keep streamed bodies only where someone can look at them: a flow view (mitmweb,
        the console), a `-w` flow file, a HAR export or a request log with bodies."""
        options = ctx.options
        viewed = ctx.master.addons.get("view") is not None
        saved = bool(getattr(options, "save_stream_file", None) or getattr(options, "hardump", None))
        logged = self._log is not None and self._log.bodies
        return KEEP_STREAM_BYTES if viewed or saved or logged else 0

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
        task = asyncio.get_running_loop().create_task(self._reload_quietly(service), name="teamclaude reload")
        self._tasks = [t for t in self._tasks if not t.done()] + [task]  # held, so it is not collected mid-run

    @command.command("teamclaude.export")
    def export_command(self, flows: Sequence[mitmproxy.flow.Flow], path: mitmproxy.types.Path) -> None:
        """Write the flows as a flow file with every credential redacted (for bug reports)."""
        secrets = self.service.secrets() if self.service is not None else []
        try:
            count = export.export_flows(flows, Path(path).expanduser(), secrets)
        except OSError as exc:
            raise exceptions.CommandError(f"cannot write {path}: {exc.strerror or exc.__class__.__name__}") from None
        logger.log(ALERT, "teamclaude: wrote %d redacted flows to %s", count, path)

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
        try:
            await self._handle_request(flow, service)
        except Exception:
            # Never let a request go upstream unrewritten: it would carry the proxy key.
            logger.exception("teamclaude: internal error while routing %s", _path_only(flow.request.path))
            flow.response = _error_response(500, "api_error", "teamclaude: internal error while routing; see the proxy log")
            attempt = self._attempts.get(flow.id)
            if attempt is None:
                self._mark_own(flow, REFUSED, "internal error while routing")
            else:
                attempt.notes.append("internal error while routing")
                self._finish(flow, attempt, 500, None, level="error")

    async def _handle_request(self, flow: http.HTTPFlow, service: Service) -> None:
        req = flow.request
        path = _path_only(req.path)
        if gate.is_browser_request(req.headers):
            self._mark_own(flow, REFUSED, "refused: browser request (Origin / Sec-Fetch-Site)")
            flow.response = _error_response(403, "permission_error", errors.BROWSER_REFUSED)
            return
        if isinstance(flow.client_conn.proxy_mode, ReverseMode) and endpoints.is_local(path):
            self._mark_own(flow, LOCAL, "local endpoint")
            await self._answer_local(flow, path)
            return
        if gate.is_pass_through(req.method, path):
            self._mark_own(flow, PASS_THROUGH, "pass-through (client's own credentials)")
            rewrite.strip_proxy_key(req.headers, service.proxy_key)
            return
        if not gate.key_matches(req.headers, service.proxy_key):
            self._mark_own(flow, REFUSED, "refused: missing or wrong proxy key")
            flow.response = _error_response(401, "authentication_error", errors.missing_key_message())
            return
        info = read_request(path, req.headers, req.raw_content if "content-encoding" not in req.headers else req.get_content(strict=False))
        attempt = Attempt(info, service.clock())
        self._attempts[flow.id] = attempt
        account = await self._acquire(flow, attempt)
        if account is None:
            self._respond_no_account(flow, attempt)
            return
        self._rewrite(flow, attempt, account)
        self._start_header_timer(flow, attempt)

    @staticmethod
    def _mark_own(flow: http.HTTPFlow, kind: str, what: str) -> None:
        """Tag a flow the addon handles without an account, so its hooks can finish it."""
        flow.metadata["teamclaude"] = {"kind": kind, "reason": what}
        flow.comment = f"teamclaude: {what}"

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
            budget = service.settings.hold_budget_s - attempt.held_s  # one budget per request
            if decision is None and info.is_inference and budget > 0 and service.may_free_up(attempt.refused):
                began = service.clock()
                decision = await service.hold(info, attempt.refused, budget)
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
        attempt.rewritten_for = account.name
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
        """No account can serve: 503 when there is none or waiting cannot help (needs-login,
        disabled, refused), else the 429 of SPEC §6.4."""
        service = self.service
        assert service is not None
        now = service.clock()
        if not service.accounts.accounts:
            message = "teamclaude has no accounts: add one with `teamclaude login` or `teamclaude import`."
            flow.response = _error_response(503, "api_error", message)
        elif not service.may_free_up(attempt.refused):
            message = (
                "teamclaude: no account can serve this request and none will free up by waiting "
                "(see `teamclaude accounts`: run `teamclaude login` for accounts that need a new login)."
            )
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
        if handler is None:
            return
        # While the upstream connection is still being opened (TCP or TLS), the flow holds a
        # placeholder; the pending connection is the client's only other transport.
        if flow.server_conn in handler.transports:
            pending = [flow.server_conn]
        else:
            pending = [conn for conn in handler.transports if conn is not flow.client_conn]
        for connection in pending:
            try:
                handler.close_connection(connection)
            except KeyError:
                pass

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
        if attempt is None and _own_kind(flow) == PASS_THROUGH and flow.response is not None:
            # Streamed, so the stored copy can be redacted later without touching the client's bytes.
            flow.response.stream = WireCopy()
            return
        if attempt is None or attempt.decision is None or flow.response is None:
            return
        self._stop_header_timer(attempt)
        response = flow.response
        attempt.verdict = self._observe(attempt, response.status_code, response.headers.items(multi=True))
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            attempt.tap = UsageTap(response.headers.get("content-encoding"), keep_bytes=self._keep_stream_bytes())
            response.stream = attempt.tap

    async def response(self, flow: http.HTTPFlow) -> None:
        attempt = self._attempts.get(flow.id)
        service = self.service
        if attempt is None and service is not None:
            self._finish_own(flow)
            return
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
            kept = attempt.tap.copy.data()
            if kept is not None:
                response.raw_content = kept
        elif response.status_code < 300:
            usage = _usage_of_whole_body(response)
        else:
            usage = None
        self._finish(flow, attempt, response.status_code, usage, level="info" if response.status_code < 400 else "warn")

    async def error(self, flow: http.HTTPFlow) -> None:
        attempt = self._attempts.get(flow.id)
        if attempt is None and self.service is not None:
            self._finish_own(flow)
            return
        if attempt is None or self.service is None:
            return
        writer = self._client_writer_for_failover(flow, attempt)
        if writer is not None:
            await self._fail_over_after_connection_error(flow, attempt, writer)
            return
        usage = attempt.tap.usage if attempt.tap is not None else None
        kept = attempt.tap.copy.data() if attempt.tap is not None else None
        if kept is not None and flow.response is not None:
            flow.response.raw_content = kept  # what arrived before the cut
        status = flow.response.status_code if flow.response is not None else None
        attempt.notes.append(flow.error.msg if flow.error else "connection error")
        self._finish(flow, attempt, status, usage, level="error")

    def _client_writer_for_failover(self, flow: http.HTTPFlow, attempt: Attempt):
        """The client's socket writer when a connection failure before any response can still
        be failed over transparently, else None.

        mitmproxy 11 answers such failures with its own 502 right after the `error` hook and
        offers no way to replace it. For a plain HTTP/1 client (the reverse-proxy setup) the
        addon can answer on the client's socket itself and then mark the flow killed, which
        makes mitmproxy close the connection without writing anything more.
        """
        service = self.service
        if (
            service is None or service.settings.failover != "transparent" or attempt.decision is None
            or attempt.header_timer is None or flow.response is not None or flow.error is None
            or flow.error.msg == mitmproxy.flow.Error.KILLED_MESSAGE
            or flow.client_conn.tls_established or not flow.request.http_version.startswith("HTTP/1")
            or not flow.client_conn.state & ConnectionState.CAN_WRITE
        ):
            return None
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(flow.client_conn.id) if proxyserver else None
        io = handler.transports.get(flow.client_conn) if handler is not None else None
        writer = getattr(io, "writer", None)
        if writer is None or writer.is_closing():
            return None
        return writer

    async def _fail_over_after_connection_error(self, flow: http.HTTPFlow, attempt: Attempt, writer) -> None:
        message = flow.error.msg if flow.error else "connection error"
        self._stop_header_timer(attempt)
        flow.response = _error_response(502, "api_error", f"teamclaude: upstream connection failed: {message}")
        try:
            await self._transparent_retry(flow, attempt, _connection_failed(message))
        except Exception:
            logger.exception("teamclaude: internal error during failover")
            flow.response = _error_response(502, "api_error", "teamclaude: internal error during failover; see the proxy log")
        response = flow.response
        response.headers["connection"] = "close"
        response.headers["content-length"] = str(len(response.raw_content or b""))
        writer.write(assemble_response(response))
        attempt.notes.append("answered by teamclaude on the client connection (mitmproxy shows the flow as killed)")
        flow.error = mitmproxy.flow.Error(mitmproxy.flow.Error.KILLED_MESSAGE)
        if flow.id in self._attempts:
            usage = _usage_of_whole_body(response) if response.status_code < 300 else None
            self._finish(flow, attempt, response.status_code, usage, level="warn")

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
        if attempt.rewritten_for:
            rewrite.redact_injected(flow.request.headers, attempt.rewritten_for)
        stored_flows.redact_headers(flow.request.headers)  # a flow never rewritten still holds the client's key
        duration_ms = round((now - attempt.started) * 1000)
        tokens = usage.total if usage is not None else 0
        self._annotate(flow, attempt, {"status": status, "tokens": tokens, "duration_ms": duration_ms})
        meta = flow.metadata["teamclaude"]
        self._log_flow(flow, {
            "kind": "pooled", "status": status, "duration_ms": duration_ms,
            "account": account, "session": meta["session"], "model": meta["model"], "stream": meta["stream"],
            "reason": meta["reason"], "detail": meta["detail"],
            "failovers": meta.get("failed_attempts", []), "held_s": meta.get("held_s", 0.0),
            "notes": meta.get("notes", []), "error": flow.error.msg if flow.error else None,
            "usage": _usage_fields(usage, service),
        })
        notes = [f"{h['account']} {h['status']} {h['reason']}" for h in attempt.history] + attempt.notes
        service.activity.add(
            t=now, method=flow.request.method, path=attempt.request.path, account=account,
            session=attempt.request.session_id, model=attempt.request.model, status=status,
            duration_ms=duration_ms, reason="failover" if attempt.history else reason,
            level=level if not attempt.history or level != "info" else "warn", note="; ".join(notes),
        )

    def _finish_own(self, flow: http.HTTPFlow) -> None:
        """`response`/`error` of a flow served without an account: redact what is stored, log it."""
        meta = flow.metadata.get("teamclaude")
        kind = _own_kind(flow)
        if kind is None or not isinstance(meta, dict):
            return
        stored_flows.redact_request(flow.request)
        response = flow.response
        if response is not None and isinstance(response.stream, WireCopy):
            response.raw_content = response.stream.data()
            stored_flows.redact_sent_response(flow.request, response)
        started = flow.request.timestamp_start
        ended = flow.error.timestamp if flow.error else (response.timestamp_end if response else None)
        self._log_flow(flow, {
            "kind": kind, "status": response.status_code if response is not None else None,
            "duration_ms": round(((ended or started) - started) * 1000),
            "account": None, "reason": meta.get("reason"),
            "error": flow.error.msg if flow.error else None,
        })

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
                    flow.request.method, flow.request.url, list(flow.request.headers.fields),
                    flow.request.raw_content or b"", header_timeout_s=service.settings.upstream_timeout_s,
                )
            except upstream_client.UpstreamError as exc:
                verdict = _connection_failed(str(exc))
                flow.response = _error_response(502, "api_error", f"teamclaude: upstream connection failed: {exc}")
                continue
            flow.response = http.Response.make(answer.status, b"", answer.headers)
            verdict = self._observe(attempt, answer.status, flow.response.headers.items(multi=True))
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


def _own_kind(flow: http.HTTPFlow) -> str | None:
    meta = flow.metadata.get("teamclaude")
    kind = meta.get("kind") if isinstance(meta, dict) else None
    return kind if kind in (PASS_THROUGH, LOCAL, REFUSED) else None


def _usage_fields(usage, service: Service) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {**usage.as_dict(), "model": usage.model, "cost_usd": round(service.router.prices.cost(usage), 6)}


def _connection_failed(message: str) -> Verdict:
    """No answer at all: try another account; with none left the client gets the 502."""
    return Verdict("connection", f"connection failed: {message}", failover=True, pass_through_if_alone=True)


def _usage_of_whole_body(response: http.Response):
    """Usage of a buffered response: JSON, or a whole SSE body (a transparent retry)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        tap = UsageTap(response.headers.get("content-encoding"))
        tap(response.raw_content or b"")
        tap(b"")
        return tap.usage
    return usage_from_json_body(response.get_content(strict=False))
