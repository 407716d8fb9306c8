"""The mitmproxy addon (loaded by `mitmdump -s teamclaude_addon.py`, or `teamclaude server`).

Options, lifecycle, commands and the hooks, each a few lines that hand the flow to where the
work is done: `teamclaude.pool` (a pooled request), `teamclaude.failover` (after a failed
answer), `teamclaude.own_flows` (flows without an account), `teamclaude.startup` (where it
listens). It fails closed: whenever it cannot route, every request gets a 503 from the proxy.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from pathlib import Path
from typing import Any, Optional

from mitmproxy import ctx, exceptions, http

from routing.lifecycle import Answer, Send
from routing.rules import PIN_HEADER
from teamclaude import admission, endpoints, errors, failover, gate, mitm_compat, own_flows, request_log, rewrite, routes, startup
from teamclaude.accounts_store import AccountsError
from teamclaude.commands import Commands
from teamclaude.fail_closed import FailClosed
from teamclaude.urls import http_url
from teamclaude.pool import KEEP_STREAM_BYTES, Pool, usage_of_whole_body
from teamclaude.request_log import RequestLog
from teamclaude.routes import Route
from teamclaude.service import ConfigError, Service, load_config

logger = logging.getLogger("teamclaude")

STREAMED_REQUESTS = (
    "mitmproxy's stream_large_bodies would send a large request upstream before teamclaude could "
    "rewrite it (its proxy key and the client's own credential with it); teamclaude streams "
    "responses by itself: unset stream_large_bodies (use body_size_limit to cap bodies)"
)


class TeamClaude:
    def __init__(self) -> None:
        self.service: Service | None = None
        self.pool: Pool | None = None
        self.broken: str | None = "teamclaude is not configured yet"
        self._tasks: list[asyncio.Task] = []
        self._config_path: Path | None = None
        self._log: RequestLog | None = None
        self._running = False
        self.addons = [Commands(self)]  # mitmproxy registers nested addons with this one

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
            path = Path(ctx.options.teamclaude_config).expanduser() if ctx.options.teamclaude_config else None
            try:
                loaded = load_config(path)
            except ConfigError as exc:
                if self.service is not None:  # a live change: mitmproxy keeps the old value
                    raise exceptions.OptionsError(f"teamclaude: {exc}") from None
                self._refuse_to_start(f"the settings cannot be loaded: {exc}")
                return
            self._config_path = path
            if self.service is None:
                self.serve(Service(loaded))
            else:
                self.service.apply(loaded)
        if "stream_large_bodies" in updated and ctx.options.stream_large_bodies:
            self._refuse_option(STREAMED_REQUESTS)
        if self.service is not None and updated & {"mode", "listen_host", "teamclaude_config"}:
            self._listen()

    def serve(self, service: Service) -> None:
        self.service = service
        self.pool = Pool(service, self._log_flow, self._keep_stream_bytes)
        self.broken = None

    def _listen(self) -> None:
        """Listen where the settings say (behaviour §2): see `teamclaude.startup`."""
        assert self.service is not None
        settings = self.service.settings
        try:
            listen = startup.plan(
                ctx.options.mode, upstream=settings.upstream, listen_host=settings.listen_host,
                port=settings.port, listen_host_option=ctx.options.listen_host,
                web_without_token=mitm_compat.is_web_master() and not mitm_compat.web_api_has_token(),
            )
        except startup.ModeRefused as exc:
            self._refuse_option(str(exc))
            return
        self.service.mode = "reverse" if listen.reverse else "regular"
        if listen.changes(ctx.options.mode):
            ctx.options.update(mode=list(listen.modes), connection_strategy="lazy")
        if mitm_compat.release_server_setup():  # held by the shim, or pending with the old modes
            logger.debug("teamclaude: listening in %s", ", ".join(listen.modes))
        FailClosed.lift()

    def _refuse_option(self, why: str) -> None:
        if self._running:
            raise exceptions.OptionsError(f"teamclaude: {why}")
        self._refuse_to_start(why)

    def _refuse_to_start(self, why: str) -> None:
        """At start: listen nowhere, answer nothing but 503s, and say why in one line
        (mitmdump exits on it; an exception here would print a traceback)."""
        self.broken = why
        self.service = self.pool = None
        mitm_compat.cancel_server_setup()
        logger.error("teamclaude: %s", why)

    def running(self) -> None:
        self._running = True
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
        if self.service.shared is not None:
            self._tasks.append(loop.create_task(self.service.shared.run(), name="teamclaude shared state"))
        self._request_log()

    async def _note_listen_address(self) -> None:
        """Record the real port (the settings may say 0) once the server is up."""
        service = self.service
        assert service is not None
        for _ in range(200):
            addresses = mitm_compat.listen_addresses()
            if addresses:
                service.listen = http_url(addresses[0][0], addresses[0][1])
                service.changed()
                logger.info(
                    "teamclaude: serving %s with %d accounts (%s)", service.listen,
                    len(service.accounts.accounts), service.settings.path,
                )
                return
            await asyncio.sleep(0.05)

    def done(self) -> None:
        if self.pool is not None:
            self.pool.redact_in_flight()
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._log is not None:
            self._log.flush_sync()
        if self.service is not None:
            try:
                self.service.credentials.save_sync()  # a last try for pairs the disk refused
            except (OSError, AccountsError):
                pass
            self.service.writer.write_sync()
            if self.service.shared is not None:
                self.service.shared.close_sync()
        FailClosed.install_unless_exiting()  # a script reload that fails leaves no open proxy

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
            self._keep_task(self._log.run(), "teamclaude request log")
        return self._log

    def _keep_task(self, coroutine, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks = [t for t in self._tasks if not t.done()] + [task]  # held, so it is not collected mid-run

    def _log_flow(self, flow: http.HTTPFlow, facts: dict[str, Any]) -> None:
        log = self._request_log()
        if log is not None and self.service is not None:
            log.submit(request_log.entry_for(flow, facts, bodies=log.bodies, secrets=self.service.secrets()))

    def _keep_stream_bytes(self) -> int:
        """Keep streamed bodies only where someone can look at them: a flow view (mitmweb,
        the console), a `-w` flow file, a HAR export or a request log with bodies."""
        options = ctx.options
        saved = bool(getattr(options, "save_stream_file", None) or getattr(options, "hardump", None))
        logged = self._log is not None and self._log.bodies
        return KEEP_STREAM_BYTES if mitm_compat.has_flow_view() or saved or logged else 0

    def require(self) -> Service:
        if self.service is None:
            raise exceptions.CommandError(f"teamclaude cannot serve: {self.broken}")
        return self.service

    def reload_soon(self, service: Service) -> None:
        """Re-read both files in the background (a bad file keeps the last good configuration)."""
        self._keep_task(self._reload_quietly(service), "teamclaude reload")

    async def _reload_quietly(self, service: Service) -> None:
        try:
            logger.info("teamclaude: %s", await service.reload(self._config_path))
        except ConfigError:
            pass

    # ----- hooks -----
    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        pool = self.pool
        if pool is None:
            own_flows.mark(flow, own_flows.REFUSED, "refused: teamclaude cannot route")
            flow.response = errors.response(503, "api_error", f"teamclaude cannot route: {self.broken}")
            return
        try:
            await self._route(flow, pool)
        except Exception:
            # Never let a request go upstream unrewritten: it would carry the proxy key.
            logger.exception("teamclaude: internal error while routing %s", flow.request.path.split("?", 1)[0])
            flow.response = errors.response(503, "api_error", "teamclaude: internal error while routing; see the proxy log")
            attempt = pool.attempts.get(flow.id)
            if attempt is None:
                own_flows.mark(flow, own_flows.REFUSED, "internal error while routing")
            else:
                attempt.notes.append("internal error while routing")
                pool.finish(flow, attempt, 503, None, level="error")

    async def _route(self, flow: http.HTTPFlow, pool: Pool) -> None:
        req, service = flow.request, pool.service
        reverse = mitm_compat.is_reverse(flow.client_conn.proxy_mode)
        if not reverse and not gate.is_browser_request(req.headers) and not routes.targets(
                req.scheme, req.host, req.port, service.settings.upstream):
            self._forward_elsewhere(flow, service)
            return
        try:
            target = gate.normalize_target(req.path)
        except gate.BadPath as exc:
            own_flows.mark(flow, own_flows.REFUSED, f"refused: {exc}")
            flow.response = errors.response(400, "invalid_request_error", f"teamclaude: {exc}")
            return
        if target != req.path:
            req.path = target  # what is decided on below is what goes upstream
        path = target.split("?", 1)[0]
        route = routes.decide(req.method, path, req.headers, reverse=reverse,
                              telemetry=service.settings.telemetry, keys=service.keys)
        if route is Route.POOLED:
            await pool.start(flow)
            return
        own_flows.mark(flow, own_flows.KIND[route], route.value)
        if route is Route.LOCAL:
            await self._answer_local(flow, path)
        elif route is Route.PASS_THROUGH:
            rewrite.strip_proxy_key(req.headers, service.keys)
            req.headers.pop(PIN_HEADER, None)  # teamclaude's own header never goes upstream
        elif route is Route.TELEMETRY_DROP:
            mitm_compat.mark_killed(flow)
        else:
            flow.response = own_flows.answer(route)

    @staticmethod
    def _forward_elsewhere(flow: http.HTTPFlow, service: Service) -> None:
        """Forward mode, a host that is not the upstream: relayed only for keyed clients."""
        if gate.key_matches(flow.request.headers, service.keys):
            own_flows.mark(flow, own_flows.PASS_THROUGH, "forwarded to another host (key presented)")
            rewrite.strip_proxy_key(flow.request.headers, service.keys)
            flow.request.headers.pop(PIN_HEADER, None)
            return
        own_flows.mark(flow, own_flows.REFUSED, "refused: not the upstream and no key")
        flow.response = errors.response(403, "permission_error", errors.FORWARD_REFUSED)

    async def _answer_local(self, flow: http.HTTPFlow, path: str) -> None:
        service = self.service
        assert service is not None
        holder = gate.key_holder(flow.request.headers, service.keys)
        if holder is None:
            flow.response = errors.response(401, "authentication_error", errors.missing_key_message())
            return
        if holder.client is not None and flow.request.method.upper() not in ("GET", "HEAD"):
            flow.response = errors.response(403, "permission_error", errors.ADMIN_ONLY)
            return
        if endpoints.is_metrics(flow.request.method, path):
            flow.response = http.Response.make(200, *service.metrics.exposition())
            return
        status, document = await endpoints.answer(
            service, flow.request.method, path, flow.request.raw_content or b"", self._config_path
        )
        flow.response = http.Response.make(status, json.dumps(document).encode(), errors.JSON_HEADERS)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        service = self.service
        if service is None:
            flow.response = errors.response(503, "api_error", f"teamclaude cannot route: {self.broken}")
        else:
            flow.response = admission.tunnel_refusal(flow, service.settings.upstream, service.keys)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """A request that will be refused anyway is answered before a large body is read."""
        service = self.service
        if service is not None and flow.response is None:
            refusal = admission.refusal_before_body(flow, service.settings.upstream, service.keys)
            if refusal is not None:
                admission.answer_without_reading(flow, refusal)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        attempt = self.pool.attempts.get(flow.id) if self.pool is not None else None
        if attempt is None:
            own_flows.stream_pass_through(flow)
        elif isinstance(attempt.step, Send) and flow.response is not None and self.pool is not None:
            self.pool.on_headers(flow, attempt)  # the answer to the lifecycle's Send

    async def response(self, flow: http.HTTPFlow) -> None:
        pool = self.pool
        attempt = pool.attempts.get(flow.id) if pool is not None else None
        if pool is None or attempt is None:
            own_flows.finish(flow, self._log_flow)
            return
        if flow.response is None or attempt.step is None:
            return
        if not isinstance(attempt.step, Answer):  # the lifecycle did not take this answer as it is
            await failover.after_failed_answer(pool, flow, attempt)
            if flow.id not in pool.attempts:
                return
        response = flow.response
        if attempt.tap is not None:
            usage = attempt.tap.usage
            kept = attempt.tap.copy.data()
            if kept is not None:
                response.raw_content = kept
        else:
            usage = await usage_of_whole_body(response) if response.status_code < 300 else None
        pool.finish(flow, attempt, response.status_code, usage, level="info" if response.status_code < 400 else "warn")

    async def error(self, flow: http.HTTPFlow) -> None:
        pool = self.pool
        attempt = pool.attempts.get(flow.id) if pool is not None else None
        if pool is None or attempt is None:
            own_flows.finish(flow, self._log_flow)
            return
        writer = failover.client_writer_for_failover(pool, flow, attempt)
        if writer is not None:
            await failover.after_connection_error(pool, flow, attempt, writer)
            return
        usage = attempt.tap.usage if attempt.tap is not None else None
        kept = attempt.tap.copy.data() if attempt.tap is not None else None
        if kept is not None and flow.response is not None:
            flow.response.raw_content = kept  # what arrived before the cut
        status = flow.response.status_code if flow.response is not None else None
        attempt.notes.append(flow.error.msg if flow.error else "connection error")
        pool.finish(flow, attempt, status, usage, level="error")
