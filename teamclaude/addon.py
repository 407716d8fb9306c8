"""The mitmproxy addon class (loaded by `mitmdump -s teamclaude_addon.py`).

Thin glue: turns flows into calls on `teamclaude.service.Service` and the routing engine,
and engine answers into flow edits. With no `--mode` given it runs mitmproxy as a reverse
proxy on the configured `listen_host:port` toward `upstream`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import command, ctx, http
from mitmproxy.proxy.mode_specs import ReverseMode

from routing.ratelimits import parse_ratelimit_headers
from routing.request_info import read_request
from routing.types import Decision, RequestInfo
from teamclaude import endpoints, errors, gate, rewrite
from teamclaude.credentials import NeedsLogin, OAuthError, UnknownAccount
from teamclaude.service import ConfigError, Service, load_config
from teamclaude.usage_tap import UsageTap, usage_from_json_body

logger = logging.getLogger("teamclaude")

# Wire bytes of a streamed response kept so mitmweb can show it after the stream ended.
KEEP_STREAM_BYTES = 4 * 1024 * 1024


@dataclass
class Attempt:
    """What the addon remembers about a pooled flow between its hooks."""

    decision: Decision
    request: RequestInfo
    started: float
    tap: UsageTap | None = None
    notes: list[str] = field(default_factory=list)


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
        try:
            await self._route(flow, info)
        except Exception:
            # Never let a request go upstream half-rewritten (it could carry the proxy key).
            logger.exception("teamclaude: internal error while routing %s", path)
            attempt = self._attempts.pop(flow.id, None)
            if attempt is not None:
                service.router.release(attempt.decision.ticket, service.clock())
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

    async def _route(self, flow: http.HTTPFlow, info: RequestInfo) -> None:
        service = self.service
        assert service is not None
        tried: set[str] = set()
        while True:
            now = service.clock()
            decision = service.router.select(info, now, exclude=tried)
            if decision is None:
                self._refuse_no_account(flow, info, tried)
                return
            attempt = Attempt(decision, info, now)
            self._attempts[flow.id] = attempt
            try:
                account = await service.credentials.fresh(decision.account)
            except (OAuthError, UnknownAccount) as exc:
                # NeedsLogin is an OAuthError; a token endpoint that is down while the token
                # has already expired is one too: either way this account cannot serve now.
                self._attempts.pop(flow.id, None)
                service.router.release(decision.ticket, service.clock())
                if isinstance(exc, NeedsLogin):
                    service.router.mark_needs_login(decision.account, True)
                logger.warning("teamclaude: %s", exc)
                tried.add(decision.account)
                continue
            if flow.id not in self._attempts:
                # The client went away while the token was refreshed; `error` released the slot.
                return
            if account.type == "oauth":
                rewrite.apply_oauth(flow.request.headers, account.access_token or "")
            else:
                rewrite.apply_api_key(flow.request.headers, account.api_key or "")
            self._annotate(flow, attempt)
            service.changed()
            return

    def _refuse_no_account(self, flow: http.HTTPFlow, info: RequestInfo, tried: set[str]) -> None:
        service = self.service
        assert service is not None
        if not service.accounts.accounts:
            message = "teamclaude has no accounts: add one with `teamclaude login` or `teamclaude import`."
            flow.response = _error_response(503, "api_error", message)
        else:
            message = "teamclaude: no account can serve this request now"
            if tried:
                message += f" ({', '.join(sorted(tried))} need a new login: run `teamclaude login`)"
            flow.response = _error_response(429, "rate_limit_error", message)
            flow.response.headers["retry-after"] = "5"
            flow.response.headers["x-should-retry"] = "true"
        flow.comment = message
        service.activity.add(
            t=service.clock(), method=flow.request.method, path=info.path, account=None,
            session=info.session_id, model=info.model, status=flow.response.status_code,
            duration_ms=0, reason="none", level="error", note=message,
        )
        service.changed()

    def _annotate(self, flow: http.HTTPFlow, attempt: Attempt, outcome: dict[str, Any] | None = None) -> None:
        decision = attempt.decision
        meta = {
            "account": decision.account,
            "reason": decision.reason,
            "detail": decision.detail,
            "session": attempt.request.session_id,
            "model": attempt.request.model,
            "stream": attempt.request.stream,
        }
        if outcome:
            meta["outcome"] = outcome
        if attempt.notes:
            meta["notes"] = list(attempt.notes)
        flow.metadata["teamclaude"] = meta
        comment = f"{decision.account} · {decision.reason}: {decision.detail}"
        if outcome:
            comment += f" → {outcome.get('status')}"
            if outcome.get("tokens"):
                comment += f" · {outcome['tokens']} tok"
        flow.comment = comment

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        attempt = self._attempts.get(flow.id)
        service = self.service
        if attempt is None or service is None or flow.response is None:
            return
        response = flow.response
        limits = parse_ratelimit_headers(response.headers.items(multi=True))
        service.router.observe(attempt.decision.account, response.status_code, limits, service.clock())
        if limits.unknown:
            attempt.notes.append("new rate-limit headers: " + ", ".join(limits.unknown))
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            attempt.tap = UsageTap(response.headers.get("content-encoding"), keep_bytes=KEEP_STREAM_BYTES)
            response.stream = attempt.tap
        service.changed()

    def response(self, flow: http.HTTPFlow) -> None:
        attempt = self._attempts.pop(flow.id, None)
        service = self.service
        if attempt is None or service is None or flow.response is None:
            return
        response = flow.response
        if attempt.tap is not None:
            usage = attempt.tap.usage
            if not attempt.tap.wire_truncated:
                response.raw_content = attempt.tap.wire_bytes()
        elif response.status_code < 300:
            usage = usage_from_json_body(response.get_content(strict=False))
        else:
            usage = None
        self._finish(flow, attempt, response.status_code, usage, level="info" if response.status_code < 400 else "warn")

    def error(self, flow: http.HTTPFlow) -> None:
        attempt = self._attempts.pop(flow.id, None)
        if attempt is None or self.service is None:
            return
        usage = attempt.tap.usage if attempt.tap is not None else None
        status = flow.response.status_code if flow.response is not None else None
        message = flow.error.msg if flow.error else "connection error"
        attempt.notes.append(message)
        self._finish(flow, attempt, status, usage, level="error")

    def _finish(self, flow: http.HTTPFlow, attempt: Attempt, status: int | None, usage, level: str) -> None:
        service = self.service
        assert service is not None
        now = service.clock()
        service.router.release(attempt.decision.ticket, now, usage, status)
        rewrite.redact_injected(flow.request.headers, attempt.decision.account)
        tokens = usage.total if usage is not None else 0
        self._annotate(flow, attempt, {"status": status, "tokens": tokens, "duration_ms": round((now - attempt.started) * 1000)})
        service.activity.add(
            t=now, method=flow.request.method, path=attempt.request.path, account=attempt.decision.account,
            session=attempt.request.session_id, model=attempt.request.model, status=status,
            duration_ms=round((now - attempt.started) * 1000), reason=attempt.decision.reason,
            level=level, note="; ".join(attempt.notes),
        )
        service.changed()

