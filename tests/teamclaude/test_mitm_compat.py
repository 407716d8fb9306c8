"""Canaries: each mitmproxy internal `teamclaude.mitm_compat` relies on, checked against the
installed mitmproxy. A failure here names the internal that a mitmproxy release changed."""

from __future__ import annotations

import inspect

import mitmproxy.flow
from mitmproxy.addons import default_addons, proxyserver, save, view
from mitmproxy.addons.proxyserver import Proxyserver, Servers
from mitmproxy.master import Master
from mitmproxy.net.http.http1 import assemble
from mitmproxy.proxy import server
from mitmproxy.test import taddons, tflow

from teamclaude import mitm_compat


def test_master_run_starts_listeners_in_a_task_running_proxyserver_setup_servers():
    source = inspect.getsource(Master.run)
    assert "ps.setup_servers()" in source, "Master.run no longer calls Proxyserver.setup_servers in a task"
    assert Proxyserver.setup_servers.__qualname__ == mitm_compat.SETUP_SERVERS_CORO


def test_servers_keep_their_instances_in_a_dict_of_mode_to_instance_with_is_running():
    servers = Servers(manager=None)  # type: ignore[arg-type]
    assert servers._instances == {}, "proxyserver.Servers._instances changed"
    assert "is_running" in dir(proxyserver.ServerInstance), "ServerInstance.is_running is gone"


def test_connection_handlers_are_found_by_client_id_and_hold_their_transports():
    assert hasattr(Proxyserver(), "connections"), "Proxyserver.connections is gone"
    assert "transports" in inspect.getsource(server.ConnectionHandler.__init__), "ConnectionHandler.transports is gone"
    assert callable(getattr(server.ConnectionHandler, "close_connection", None)), "ConnectionHandler.close_connection is gone"
    assert "writer" in inspect.signature(server.ConnectionIO).parameters, "ConnectionIO.writer is gone"


def test_assemble_response_and_the_killed_error_message_exist():
    assert callable(assemble.assemble_response), "http1.assemble.assemble_response is gone"
    flow = tflow.tflow(resp=True)
    mitm_compat.mark_killed(flow)
    assert mitm_compat.was_killed(flow) and not flow.killable, "Error.KILLED_MESSAGE no longer marks a flow killed"
    assert mitmproxy.flow.Error.KILLED_MESSAGE


def test_the_view_addon_takes_new_flows_and_save_tracks_active_flows():
    with taddons.context(view.View(), save.Save()) as tctx:
        assert mitm_compat.has_flow_view(), "the flow view addon is no longer called 'view'"
        flow = tflow.tflow(resp=True)
        assert mitm_compat.show_in_flow_list(flow)
        assert tctx.master.addons.get("view").get_by_id(flow.id) is flow
        assert isinstance(tctx.master.addons.get("save").active_flows, set), "Save.active_flows is gone"


def test_scripts_see_done_before_save_writes_the_flows_still_in_flight():
    names = [type(addon).__name__ for addon in default_addons()]
    assert names.index("ScriptLoader") < names.index("Save"), "scripts no longer precede Save in the addon chain"


def test_tcp_timeout_is_known_on_both_major_versions():
    with taddons.context():
        assert mitm_compat.tcp_timeout_s() == 600
