"""The guard left behind when the addon is unloaded while mitmproxy keeps running.

mitmproxy reloads a script when its file changes; if the new version fails to import, the
script has no addon any more and mitmproxy would relay requests untouched — with the client's
proxy key, to the upstream. This guard, registered directly with mitmproxy (it survives the
script), answers every request with a 503 until a working addon loads and lifts it.
"""

from __future__ import annotations

from mitmproxy import ctx, http

from teamclaude import errors

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
