"""Where the proxy listens: mitmproxy's `--mode` list as the addon wants it (pure).

- No `--mode` (mitmproxy's default `regular`): a reverse proxy on the settings' `listen_host:port`
  toward `upstream` — the pool, and nothing on `*:8080`.
- Any mode without a listen address (`--mode regular@3457`): loopback, unless mitmproxy's own
  `listen_host` option names one. A forward proxy on every interface is an open proxy.
- mitmweb without an API token (mitmproxy 11.0.2, CVE-2025-23217) serves only reverse modes:
  in a forward mode any proxy client could reach mitmweb's API through the listener.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mitmproxy.proxy.mode_specs import ProxyMode

DEFAULT_MODES = ("regular",)
LOOPBACK = "127.0.0.1"


class ModeRefused(ValueError):
    """The requested modes cannot be served safely; `str()` says why and what to do."""


@dataclass(frozen=True)
class ListenPlan:
    modes: tuple[str, ...]
    reverse: bool  # every listener is a reverse proxy toward the upstream

    def changes(self, given: Sequence[str]) -> bool:
        return tuple(given) != self.modes


def plan(given: Sequence[str], *, upstream: str, listen_host: str, port: int,
         listen_host_option: str, web_without_token: bool) -> ListenPlan:
    """The modes to run for `given` (`ctx.options.mode`) and the settings."""
    if tuple(given) == DEFAULT_MODES:
        return ListenPlan((f"reverse:{upstream}@{listen_host}:{port}",), reverse=True)
    specs = [ProxyMode.parse(mode) for mode in given]
    reverse = all(spec.type_name == "reverse" for spec in specs)
    if web_without_token and not reverse:
        raise ModeRefused(
            "mitmweb of mitmproxy 11 has no API token: in a forward mode any client of the proxy "
            "could drive mitmweb's API through it (CVE-2025-23217). Use mitmdump for forward mode, "
            "run mitmweb without --mode (reverse), or use Python >= 3.12 (mitmproxy 12)."
        )
    if listen_host_option:  # mitmproxy's own option names the address of every mode without one
        return ListenPlan(tuple(given), reverse=reverse)
    return ListenPlan(tuple(_with_host(spec, LOOPBACK) for spec in specs), reverse=reverse)


def _with_host(spec: ProxyMode, host: str) -> str:
    """The spec listening on `host` when it names no address of its own."""
    port = spec.listen_port()
    if spec.custom_listen_host is not None or port is None:
        return spec.full_spec
    head = spec.type_name + (f":{spec.data}" if spec.data else "")
    return f"{head}@{host}:{port}"
