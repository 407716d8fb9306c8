"""What the proxy does with a request, decided from its method, path and headers (pure).

Checked in this order: a browser is refused; local endpoints (reverse mode), Claude Code's
preconnects and telemetry (per the `telemetry` setting) are answered without an account;
pass-through paths keep the client's own credentials; everything else needs the proxy key
or a client key and is pooled.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from urllib.parse import urlsplit

from teamclaude import endpoints, gate
from teamclaude.client_keys import Keyring


class Route(Enum):
    BROWSER = "refused: browser request (Origin / Sec-Fetch-Site)"
    LOCAL = "local endpoint"
    PRECONNECT = "Claude Code's preconnect, answered locally"
    TELEMETRY_ANSWER = "telemetry answered locally (telemetry: answer)"
    TELEMETRY_DROP = "telemetry dropped: connection closed (telemetry: drop)"
    PASS_THROUGH = "pass-through (client's own credentials)"
    NO_KEY = "refused: missing or wrong proxy key"
    POOLED = "pooled"


def decide(method: str, path: str, headers: Mapping[str, str], *, reverse: bool,
           telemetry: gate.TelemetryMode, keys: Keyring) -> Route:
    """The route of a request to `path` (normalized, without the query)."""
    if gate.is_browser_request(headers):
        return Route.BROWSER
    if reverse and endpoints.is_local(path):
        return Route.LOCAL
    if gate.is_preconnect(method, path):
        return Route.PRECONNECT
    action = gate.telemetry_action(telemetry, path)
    if action == "answer":
        return Route.TELEMETRY_ANSWER
    if action == "drop":
        return Route.TELEMETRY_DROP
    if gate.is_pass_through(method, path):
        return Route.PASS_THROUGH
    if not gate.key_matches(headers, keys):
        return Route.NO_KEY
    return Route.POOLED


def targets(scheme: str, host: str, port: int, upstream: str) -> bool:
    """Whether a forward-mode request really goes to the upstream: the connection's target
    (scheme, host and port of the absolute-form URL or the CONNECT tunnel), not its Host header."""
    return scheme == urlsplit(upstream).scheme and targets_host(host, port, upstream)


def targets_host(host: str, port: int, upstream: str) -> bool:
    """Whether a CONNECT tunnel goes to the upstream's host and port."""
    wanted = urlsplit(upstream)
    wanted_port = wanted.port or (443 if wanted.scheme == "https" else 80)
    return (host.lower(), port) == ((wanted.hostname or "").lower(), wanted_port)
