"""Every use of mitmproxy internals, in one place.

mitmproxy's addon API covers options, hooks, commands and flows. A few things the proxy needs
are not part of it; each is reached here, through one small function, and each has a canary
test (tests/teamclaude/test_mitm_compat.py) that fails naming the internal when a mitmproxy
release changes it. Checked against mitmproxy 11.0.2 (Python 3.11) and 12.3.1 (3.12+).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

import mitmproxy.flow
from mitmproxy import ctx, http
from mitmproxy.connection import Connection, ConnectionState
from mitmproxy.net.http.http1.assemble import assemble_response
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.version import VERSION

logger = logging.getLogger("teamclaude")

# The coroutine of the task mitmproxy's master starts to bring up its listeners (`Master.run`).
SETUP_SERVERS_CORO = "Proxyserver.setup_servers"

MITMPROXY_MAJOR = int(VERSION.split(".")[0])


def web_api_has_token() -> bool:
    """mitmweb protects its API with a token (or password) from 12.x on; 11.0.2 does not
    (CVE-2025-23217: any client that reaches the proxy can drive mitmweb's API)."""
    return MITMPROXY_MAJOR >= 12


def is_web_master() -> bool:
    """Whether this process is mitmweb (its web addon is loaded)."""
    return ctx.master.addons.get("webaddon") is not None


def tcp_timeout_s() -> int:
    """The idle cut of client connections: the `tcp_timeout` option on 12.x, a constant before."""
    timeout = getattr(ctx.options, "tcp_timeout", None)
    if isinstance(timeout, int):
        return timeout
    from mitmproxy.proxy import server  # 11.x: a module constant

    return int(server.TCP_TIMEOUT)


def listen_addresses() -> list[tuple[Any, ...]]:
    proxyserver = ctx.master.addons.get("proxyserver")
    return proxyserver.listen_addrs() if proxyserver is not None else []


def hold_server_setup() -> None:
    """Keep mitmproxy from listening until `release_server_setup` (see there)."""
    global _held_setup
    cancelled = cancel_server_setup()
    if cancelled is not None:
        _held_setup = cancelled


def release_server_setup() -> bool:
    """Make mitmproxy listen in the modes now in `ctx.options.mode`, when its listener setup
    was held or is still pending.

    On Python >= 3.12 mitmproxy runs with eager tasks: `Master.run` starts `setup_servers` with
    the modes of the command line before `-s` scripts are loaded, so a mode chosen in the
    addon's `configure` comes too late (its listener would be the default `*:8080`). That
    setup is still pending when the script loads (binding waits on a getaddrinfo in a worker
    thread, and the script loads on the loop iteration before), so: cancel it, forget the
    listeners it had not started, and run the setup again with the current modes. On 3.11
    the pending setup has not started yet; the same steps are harmless there. Returns
    whether it did.
    """
    global _held_setup
    cancelled = cancel_server_setup() or _held_setup
    _held_setup = None
    if cancelled is None:
        return False
    proxyserver = ctx.master.addons.get("proxyserver")
    restart = asyncio.get_running_loop().create_task(_set_up_after(cancelled, proxyserver), name="teamclaude listener")
    _KEEP.add(restart)
    restart.add_done_callback(_KEEP.discard)
    return True


def cancel_server_setup() -> asyncio.Task | None:
    """Stop a pending listener setup before it binds (see above); the cancelled task, or None.

    Only a setup still waiting for its getaddrinfo can be stopped before it binds: one for an
    IP literal (`--mode reverse:…@127.0.0.1:PORT`, `--listen-host 127.0.0.1`) binds at once
    on 3.12+, so it is left alone (and such a mode already names its own address)."""
    task = _pending_setup_task()
    proxyserver = ctx.master.addons.get("proxyserver")
    if task is None or proxyserver is None or _binds_at_once(ctx.options.mode, ctx.options.listen_host):
        return None
    task.cancel()
    servers = proxyserver.servers
    servers._instances = {spec: server for spec, server in servers._instances.items() if server.is_running}
    return task


_KEEP: set[asyncio.Task] = set()
_held_setup: asyncio.Task | None = None


def _binds_at_once(modes: Iterable[str], listen_host: str) -> bool:
    for mode in modes:
        try:
            ipaddress.ip_address(ProxyMode.parse(mode).listen_host(listen_host))
        except ValueError:
            continue
        return True
    return False


def _pending_setup_task() -> asyncio.Task | None:
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # no running loop (mitmproxy's test context)
        return None
    for task in tasks:
        coroutine = getattr(task.get_coro(), "__qualname__", "")
        if coroutine == SETUP_SERVERS_CORO and not task.done():
            return task
    return None


async def _set_up_after(cancelled: asyncio.Task, proxyserver) -> None:
    await asyncio.wait([cancelled])
    if not await proxyserver.setup_servers():
        logger.error("teamclaude: cannot listen where the settings say (see the error above)")
        ctx.master.shutdown()


def unapplied_options() -> dict[str, object]:
    """`--set` options mitmproxy could not apply (an addon's option given a bad value: the
    script that declares it is then skipped without a word)."""
    found = {}
    for name, value in ctx.options.deferred.items():
        raw = getattr(value, "val", value)  # 12.x keeps command-line strings unconverted
        found[name] = " ".join(map(str, raw)) if isinstance(raw, list) else raw
    return found


def client_socket_writer(flow: http.HTTPFlow) -> asyncio.StreamWriter | None:
    """The stream writer of a live plain HTTP/1 client connection (no TLS), for answering on it
    directly where mitmproxy offers no API: to replace its own 502, or to answer before a body
    is read. None for any other client."""
    if (
        flow.client_conn.tls_established or not flow.request.http_version.startswith("HTTP/1")
        or not flow.client_conn.state & ConnectionState.CAN_WRITE
    ):
        return None
    handler = _connection_handler(flow)
    io = handler.transports.get(flow.client_conn) if handler is not None else None
    writer = getattr(io, "writer", None)
    if writer is None or writer.is_closing():
        return None
    return writer


def answer_and_close(flow: http.HTTPFlow, writer: asyncio.StreamWriter, response: http.Response) -> None:
    """Write a whole HTTP/1 response on the client's socket (mitmproxy's own serializer) and
    mark the flow killed, so mitmproxy closes the connection without writing anything more."""
    response.headers["connection"] = "close"
    response.headers["content-length"] = str(len(response.raw_content or b""))
    writer.write(assemble_response(response))
    mark_killed(flow)


def close_pending_server_connections(flow: http.HTTPFlow) -> None:
    """Close the server connection of a flow waiting for response headers, also while it is
    still being opened (TCP or TLS): mitmproxy cannot kill a flow in transit, but closing its
    connection ends the wait with an error the addon can fail over from."""
    handler = _connection_handler(flow)
    if handler is None:
        return
    # While the connection is being opened the flow holds a placeholder; the pending
    # connection is then the handler's only transport besides the client's.
    if flow.server_conn in handler.transports:
        pending: Iterable[Connection] = [flow.server_conn]
    else:
        pending = [conn for conn in handler.transports if conn is not flow.client_conn]
    for connection in list(pending):
        try:
            handler.close_connection(connection)
        except KeyError:
            pass


def _connection_handler(flow: http.HTTPFlow):
    proxyserver = ctx.master.addons.get("proxyserver")
    return proxyserver.connections.get(flow.client_conn.id) if proxyserver is not None else None


def mark_killed(flow: http.HTTPFlow) -> None:
    """Mark a flow killed, so mitmproxy closes its client connection without an answer of its own."""
    flow.error = mitmproxy.flow.Error(mitmproxy.flow.Error.KILLED_MESSAGE)


def was_killed(flow: http.HTTPFlow) -> bool:
    return flow.error is not None and flow.error.msg == mitmproxy.flow.Error.KILLED_MESSAGE


def show_in_flow_list(flow: http.HTTPFlow) -> bool:
    """Add a flow of the addon's own making to the flow list of mitmweb or the console."""
    view = ctx.master.addons.get("view")
    if view is None:
        return False
    view.add([flow])
    return True


def has_flow_view() -> bool:
    return ctx.master.addons.get("view") is not None


def active_flows() -> list[http.HTTPFlow]:
    """Flows still in flight: what mitmproxy's `Save.done` writes to a `-w` file at shutdown.
    Scripts see `done` first (`ScriptLoader` precedes `Save` among mitmproxy's addons)."""
    save = ctx.master.addons.get("save")
    active = getattr(save, "active_flows", None)
    return [flow for flow in active or () if isinstance(flow, http.HTTPFlow)]


def is_reverse(mode: ProxyMode | str) -> bool:
    spec = ProxyMode.parse(mode) if isinstance(mode, str) else mode
    return spec.type_name == "reverse"

