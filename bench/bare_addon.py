"""The floor this architecture can reach: mitmproxy with only the unavoidable work.

A reverse proxy whose one addon swaps the client's credential for a fixed one and streams
server-sent events. `bench/overhead.py` runs it beside teamclaude: whatever teamclaude adds
beyond this is the cost of its own logic, not of mitmproxy.

    mitmdump -s bench/bare_addon.py --mode reverse:<upstream>@127.0.0.1:0 \
        --set connection_strategy=lazy --set flow_detail=0

The credential comes from `BARE_AUTHORIZATION` (a full header value, e.g. `Bearer …`).
"""

from __future__ import annotations

import os

from mitmproxy import http

_AUTHORIZATION = os.environ.get("BARE_AUTHORIZATION", "")
_KEY_HEADER = "x-teamclaude-key"


class BareSwap:
    def request(self, flow: http.HTTPFlow) -> None:
        headers = flow.request.headers
        headers["authorization"] = _AUTHORIZATION
        if _KEY_HEADER in headers:
            del headers[_KEY_HEADER]

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is not None and response.headers.get("content-type", "").startswith("text/event-stream"):
            response.stream = True


addons = [BareSwap()]
