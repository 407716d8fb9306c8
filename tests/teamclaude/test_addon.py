"""The addon's hooks and commands inside mitmproxy's own test context (no network).

Hooks are driven the way mitmproxy drives them (request, responseheaders, streamed body,
response); the end-to-end tests cover the same paths through a real mitmdump.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from mitmproxy import http
from mitmproxy.exceptions import CommandError, OptionsError
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow
from mitmproxy.io import FlowReader

from teamclaude.addon import TeamClaude
from teamclaude.attempt import HOLD_MARK

PROXY_KEY = "tc-unit-proxy-key-0123456789abcdefghij"
ALICE_ACCESS = "sk-ant-oat01-alice-access-secret"
ALICE_REFRESH = "sk-ant-ort01-alice-refresh-secret"
CI_KEY = "sk-ant-api03-ci-key-secret"
CLIENT_TOKEN = "sk-ant-oat01-the-clients-own-token"
CLIENT_REFRESH = "sk-ant-ort01-the-clients-own-refresh"
UPSTREAM = "http://127.0.0.1:9"


def write_config(root: Path, accounts: list[dict] | None = None, **settings) -> Path:
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({"port": 0, "upstream": UPSTREAM, "state_file": str(root / "state.json"),
                                      "hold_budget_s": 0, **settings}))
    if accounts is None:
        accounts = [
            {"name": "alice", "type": "oauth", "access_token": ALICE_ACCESS, "refresh_token": ALICE_REFRESH,
             "expires_at": 4_102_444_800_000},
            {"name": "ci", "type": "apikey", "api_key": CI_KEY},
        ]
    (root / "accounts.yaml").write_text(yaml.safe_dump({"proxy_key": PROXY_KEY, "accounts": accounts}))
    return config


@pytest.fixture
def config(tmp_path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def loaded(config):
    addon = TeamClaude()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, teamclaude_config=str(config))
        assert addon.service is not None
        yield addon, tctx
        addon.done()


def a_flow(method: str, path: str, body: bytes = b"", **headers: str) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.client_conn.proxy_mode = ProxyMode.parse(f"reverse:{UPSTREAM}@0")
    flow.request = http.Request.make(method, UPSTREAM + path, body,
                                     {name.replace("_", "-"): value for name, value in headers.items()})
    return flow


# ---- commands ----


def run(tctx, command: str):
    return tctx.master.commands.execute(command)


async def test_status_and_capacity_commands_answer_json_without_secrets(loaded):
    addon, tctx = loaded
    status = run(tctx, "teamclaude.status")
    assert {a["name"] for a in json.loads(status)["accounts"]} == {"alice", "ci"}
    capacity = json.loads(run(tctx, "teamclaude.capacity"))
    assert capacity["total"] == 2 and capacity["verdict"] in ("green", "yellow", "red")
    quota = run(tctx, "teamclaude.quota")
    assert json.loads(quota)["accounts"] == 1 and set(json.loads(quota)["windows"]) == {"5h", "7d"}  # ci: an API key
    for text in (status, json.dumps(capacity), quota):
        assert not [s for s in (PROXY_KEY, ALICE_ACCESS, ALICE_REFRESH, CI_KEY) if s in text]


async def test_switch_command_pins_and_refuses_unknown_names(loaded):
    addon, tctx = loaded
    assert run(tctx, "teamclaude.switch ci") == "current account pinned to ci"
    assert json.loads(run(tctx, "teamclaude.status"))["pinned"] == "ci"
    with pytest.raises(KeyError, match="no account named 'mallory'"):
        run(tctx, "teamclaude.switch mallory")
    assert json.loads(run(tctx, "teamclaude.status"))["pinned"] == "ci"


async def test_disable_enable_and_priority_commands_write_the_accounts_file_and_apply_it(loaded, config):
    addon, tctx = loaded
    accounts = config.parent / "accounts.yaml"

    async def settled() -> dict:
        for task in [t for t in asyncio.all_tasks() if t.get_name() == "teamclaude reload"]:
            await asyncio.wait_for(task, 10)
        return {a["name"]: a for a in json.loads(run(tctx, "teamclaude.status"))["accounts"]}

    assert run(tctx, "teamclaude.disable alice") == "'alice' disabled"
    assert (await settled())["alice"]["disabled"]
    assert yaml.safe_load(accounts.read_text())["accounts"][0]["disabled"] is True
    assert run(tctx, "teamclaude.disable alice") == "'alice' was already disabled"
    assert run(tctx, "teamclaude.priority ci -2") == "'ci' priority -2"
    assert run(tctx, "teamclaude.enable alice") == "'alice' enabled"
    state = await settled()
    assert not state["alice"]["disabled"] and state["ci"]["priority"] == -2
    with pytest.raises(CommandError, match="no account named 'mallory'"):
        run(tctx, "teamclaude.disable mallory")
    with pytest.raises(CommandError, match="must be an integer"):
        run(tctx, "teamclaude.priority ci first")


async def test_the_pin_header_never_goes_upstream_on_pass_through_either(loaded):
    addon, _ = loaded
    flow = a_flow("GET", "/api/oauth/profile", authorization=f"Bearer {CLIENT_TOKEN}", x_teamclaude_account="alice")
    await addon.request(flow)
    assert flow.response is None and flow.metadata["teamclaude"]["kind"] == "pass-through"
    assert "x-teamclaude-account" not in flow.request.headers


async def test_reload_command_picks_up_a_new_account_and_keeps_the_last_good_on_garbage(loaded, config):
    addon, tctx = loaded
    accounts = config.parent / "accounts.yaml"
    document = yaml.safe_load(accounts.read_text())
    document["accounts"].append({"name": "bob", "type": "apikey", "api_key": "sk-ant-api03-bob-key-secret"})
    accounts.write_text(yaml.safe_dump(document))

    async def reload() -> None:
        run(tctx, "teamclaude.reload")
        task = next(t for t in asyncio.all_tasks() if t.get_name() == "teamclaude reload")
        await asyncio.wait_for(task, 10)

    await reload()
    assert {a.name for a in addon.service.accounts.accounts} == {"alice", "ci", "bob"}
    accounts.write_text("accounts: [[[ not yaml")
    await reload()
    assert {a.name for a in addon.service.accounts.accounts} == {"alice", "ci", "bob"}
    assert "not valid YAML" in addon.service.config_error
    assert accounts.read_text() == "accounts: [[[ not yaml"  # nothing overwritten


async def test_invalid_settings_at_start_leave_every_request_a_503(tmp_path, monkeypatch):
    broken = tmp_path / "config.yaml"
    broken.write_text("prot: 1\n")
    monkeypatch.setenv("TEAMCLAUDE_CONFIG", str(broken))
    addon = TeamClaude()
    with taddons.context(Proxyserver(), addon) as tctx:
        # As at start: mitmproxy configures a freshly loaded script with every option.
        addon.configure({"teamclaude_config"})
        assert addon.service is None
        with pytest.raises(CommandError, match="cannot serve: the settings cannot be loaded"):
            run(tctx, "teamclaude.status")
        flow = a_flow("POST", "/v1/messages", b"{}", x_teamclaude_key=PROXY_KEY, authorization="Bearer " + CLIENT_TOKEN)
        await tctx.cycle(addon, flow)
        assert flow.response.status_code == 503
        assert b"unknown key 'prot'" in flow.response.content


async def test_an_exception_while_routing_answers_503_and_forwards_nothing(loaded, monkeypatch):
    addon, tctx = loaded

    def broken_select(*args, **kwargs):
        raise RuntimeError("engine bug")

    monkeypatch.setattr(addon.service.router, "select", broken_select)
    flow = a_flow("POST", "/v1/messages", b'{"model": "claude-sonnet-4-5", "messages": []}', x_teamclaude_key=PROXY_KEY)
    await addon.request(flow)
    assert flow.response is not None and flow.response.status_code == 503
    assert b"internal error while routing" in flow.response.content
    assert PROXY_KEY not in str(flow.request.headers)


async def test_a_failed_options_change_keeps_the_running_service(loaded, tmp_path):
    addon, tctx = loaded
    service = addon.service
    broken = tmp_path / "other.yaml"
    broken.write_text("port: [\n")
    with pytest.raises(OptionsError, match="other.yaml"):
        tctx.configure(addon, teamclaude_config=str(broken))
    assert addon.service is service and addon.pool is not None


# ---- the browser guard, on every path ----

PATHS = [
    ("POST", "/v1/messages"), ("GET", "/v1/models"), ("POST", "/v1/oauth/token"),
    ("GET", "/api/oauth/profile"), ("POST", "/v1/code/sessions"), ("GET", "/teamclaude/health"),
    ("POST", "/teamclaude/switch"), ("GET", "/capacity"), ("GET", "/teamclaude/nothing"),
]


@pytest.mark.parametrize("method, path", PATHS)
@pytest.mark.parametrize("browser", [{"origin": "https://evil.example"}, {"sec_fetch_site": "cross-site"},
                                     {"sec_fetch_site": "same-site"}])
async def test_browser_requests_are_refused_on_every_path_even_with_the_key(loaded, method, path, browser):
    addon, _ = loaded
    flow = a_flow(method, path, b"{}", x_teamclaude_key=PROXY_KEY, **browser)
    await addon.request(flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert json.loads(flow.response.content)["error"]["type"] == "permission_error"
    assert flow.metadata["teamclaude"]["kind"] == "refused"
    await addon.response(flow)
    assert flow.request.headers["x-teamclaude-key"] == "<redacted>"


async def test_same_origin_and_plain_clients_pass_the_guard(loaded):
    addon, _ = loaded
    flow = a_flow("GET", "/teamclaude/health", x_teamclaude_key=PROXY_KEY, sec_fetch_site="none")
    await addon.request(flow)
    assert flow.response.status_code == 200


# ---- stored flows hold no credential once finished ----


async def test_local_endpoint_and_wrong_key_flows_forget_the_presented_key(loaded):
    addon, _ = loaded
    local = a_flow("GET", "/teamclaude/status", x_teamclaude_key=PROXY_KEY)
    refused = a_flow("POST", "/v1/messages", b"{}", authorization=f"Bearer {CLIENT_TOKEN}")
    for flow, status in ((local, 200), (refused, 401)):
        await addon.request(flow)
        assert flow.response.status_code == status
        body = flow.response.content
        await addon.response(flow)
        assert flow.response.content == body  # the client's answer is untouched
        stored = json.dumps(flow.get_state(), default=repr)
        assert PROXY_KEY not in stored and CLIENT_TOKEN not in stored


async def test_pass_through_token_refresh_reaches_the_client_intact_but_is_stored_redacted(loaded):
    addon, _ = loaded
    asked = json.dumps({"grant_type": "refresh_token", "refresh_token": CLIENT_REFRESH, "client_id": "c"}).encode()
    answer = json.dumps({"access_token": "sk-ant-oat01-new-client-access", "refresh_token": "sk-ant-ort01-new-r",
                         "expires_in": 28800, "token_type": "Bearer"}).encode()
    flow = a_flow("POST", "/v1/oauth/token", asked, content_type="application/json")
    await addon.request(flow)
    assert flow.response is None  # forwarded untouched
    assert flow.request.content == asked and flow.metadata["teamclaude"]["kind"] == "pass-through"
    flow.response = http.Response.make(200, b"", {"content-type": "application/json"})
    flow.response.raw_content = None
    addon.responseheaders(flow)
    assert callable(flow.response.stream)
    received = b"".join(flow.response.stream(piece) for piece in (answer[:17], answer[17:], b""))
    assert received == answer  # byte for byte what upstream sent
    await addon.response(flow)
    stored = flow.get_state()
    text = json.dumps(stored, default=lambda b: b.decode("latin-1"))
    for secret in (CLIENT_REFRESH, "sk-ant-oat01-new-client-access", "sk-ant-ort01-new-r"):
        assert secret not in text
    assert json.loads(flow.response.content)["expires_in"] == 28800  # the rest stays readable in mitmweb
    assert json.loads(flow.request.content)["grant_type"] == "refresh_token"


async def test_pass_through_that_fails_upstream_still_forgets_the_clients_token(loaded):
    addon, _ = loaded
    flow = a_flow("GET", "/api/oauth/profile", authorization=f"Bearer {CLIENT_TOKEN}")
    await addon.request(flow)
    flow.error = tflow.terr()
    await addon.error(flow)
    assert flow.request.headers["authorization"] == "<redacted>"


async def test_a_request_no_account_can_serve_keeps_no_proxy_key(loaded):
    addon, _ = loaded
    for account in addon.service.router.snapshot(addon.service.clock())["accounts"]:
        addon.service.router.bench(account["name"], addon.service.clock() + 3600, "test", addon.service.clock())
    flow = a_flow("POST", "/v1/messages", b'{"model":"claude-sonnet-4-5"}', x_teamclaude_key=PROXY_KEY)
    await addon.request(flow)
    assert flow.response.status_code == 429
    assert PROXY_KEY not in json.dumps(flow.get_state(), default=repr)
    assert flow.comment.startswith("no account could serve")


async def test_a_served_request_shows_the_account_instead_of_its_token(loaded):
    addon, tctx = loaded
    flow = a_flow("POST", "/v1/messages", b'{"model":"claude-sonnet-4-5"}', x_teamclaude_key=PROXY_KEY)
    await addon.request(flow)
    assert flow.request.headers["authorization"] == f"Bearer {ALICE_ACCESS}"
    assert "x-teamclaude-key" not in flow.request.headers
    flow.response = http.Response.make(200, b'{"usage":{"input_tokens":3,"output_tokens":4}}',
                                       {"content-type": "application/json"})
    addon.responseheaders(flow)
    await addon.response(flow)
    assert flow.request.headers["authorization"] == "<account:alice>"
    assert flow.metadata["teamclaude"]["account"] == "alice"
    assert flow.comment.startswith("alice") and "→ 200 · 7 tok" in flow.comment


# ---- export ----


async def test_export_command_writes_a_redacted_flow_file(loaded, tmp_path):
    addon, tctx = loaded
    flow = a_flow("POST", "/v1/messages", json.dumps({"note": f"pasted {ALICE_ACCESS} and {PROXY_KEY}"}).encode(),
                  authorization=f"Bearer {ALICE_ACCESS}", cookie="a=b")
    flow.response = http.Response.make(200, f"echo {CI_KEY}".encode(), {"set-cookie": "s=1"})
    flow.comment = "alice · new session"
    flow.metadata["teamclaude"] = {"account": "alice"}
    target = tmp_path / "bug-report.mitm"
    tctx.master.commands.call("teamclaude.export", [flow], str(target))
    data = target.read_bytes()
    assert not [s for s in (ALICE_ACCESS, PROXY_KEY, CI_KEY) if s.encode() in data]
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    with target.open("rb") as handle:
        [copy] = list(FlowReader(handle).stream())
    assert copy.request.headers["authorization"] == copy.request.headers["cookie"] == "<redacted>"
    assert copy.metadata["teamclaude"] == {"account": "alice"} and copy.comment == "alice · new session"
    assert flow.request.headers["authorization"] == f"Bearer {ALICE_ACCESS}"  # the live flow is untouched


async def test_export_to_an_unwritable_place_is_a_command_error(loaded, tmp_path):
    from mitmproxy import exceptions

    addon, tctx = loaded
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(exceptions.CommandError, match="cannot write"):
        tctx.master.commands.call("teamclaude.export", [a_flow("GET", "/v1/models")], str(blocker / "x.mitm"))


async def test_a_held_flow_is_marked_and_counted_while_it_waits(loaded, config):
    addon, tctx = loaded
    write_config(config.parent, hold_budget_s=0.3)
    await addon.service.reload(config)
    now = addon.service.clock()
    for name in ("alice", "ci"):  # nothing can serve, but both free up later: the hold runs to its budget
        addon.service.router.bench(name, now + 60, "test bench", now)
    flow = a_flow("POST", "/v1/messages", b'{"model": "claude-sonnet-4-5"}', x_teamclaude_key=PROXY_KEY)
    waiting = asyncio.create_task(addon.pool.start(flow))
    while addon.service.capacity()["held"] != 1:
        assert not waiting.done()
        await asyncio.sleep(0.01)
    assert flow.marked == HOLD_MARK and "held" in flow.comment
    await waiting
    assert flow.response.status_code == 429 and "throttled" in json.loads(flow.response.content)["error"]["message"]
    assert addon.service.capacity()["held"] == 0 and flow.metadata["teamclaude"]["held_s"] >= 0.25