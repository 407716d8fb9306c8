"""The guard that stands in while no working addon is loaded.

A script that fails to load leaves mitmproxy a plain relay: requests would go upstream
untouched, with the client's proxy key and its own credential (or, in mitmproxy's default
mode, to any host). mitmproxy loads a script silently past some failures (a bad value for one
of its options, say), and reloads it when its file changes. So the shim
(`teamclaude_addon.py`) installs this guard, registered directly with mitmproxy, before the
addon loads, and keeps mitmproxy from listening; the addon lifts both once it is configured.
An addon unloaded while mitmproxy keeps running puts the guard back. The guard answers every
request with a 503; at start it logs an error, so mitmdump exits.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, http

from teamclaude import errors, mitm_compat

logger = logging.getLogger("teamclaude")

UNLOADED = (
    "teamclaude: the addon is not loaded (the script failed to load; see the proxy's log). "
    "Fix it or restart the proxy; nothing is forwarded meanwhile."
)


class FailClosed:
    name = "teamclaude-fail-closed"

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            flow.response = http.Response.make(503, errors.error_body("api_error", UNLOADED), errors.JSON_HEADERS)
            flow.comment = "teamclaude: refused, the addon is not loaded"

    def running(self) -> None:
        unapplied = mitm_compat.unapplied_options()
        why = "see the messages above"
        if unapplied:
            given = ", ".join(f"{name}={value}" for name, value in unapplied.items())
            why = f"mitmproxy could not apply --set {given}: check their values"
        logger.error("teamclaude: the addon did not load (%s); refusing to serve", why)

    @classmethod
    def install_before_loading(cls) -> None:
        """From the shim, before the addon loads: nothing is relayed, nothing listens."""
        if ctx.master.addons.get(cls.name) is None:
            ctx.master.addons.add(cls())
        mitm_compat.hold_server_setup()

    @classmethod
    def install_unless_exiting(cls) -> None:
        master = ctx.master
        if master.should_exit.is_set() or master.addons.get(cls.name) is not None:
            return
        master.addons.add(cls())

    @classmethod
    def lift(cls) -> None:
        guard = ctx.master.addons.get(cls.name)
        if guard is not None:
            ctx.master.addons.remove(guard)
