"""Parsing the state file's `shared` key (a pool of proxies on Redis) into `deck.model.Shared`."""

from __future__ import annotations

import json

import pytest

from deck.model import Instance, PoolConversation, Shared, Usage, parse_state
from tests.deck.claude_home import FIXTURES, shared_pool


def state_with(shared: object) -> dict:
    return {"version": 1, "shared": shared}


def test_a_valid_shared_key_is_parsed_whole():
    shared = parse_state(state_with(shared_pool(healthy=False, degraded_since=1794999870.5,
                                                error="ConnectionError: refused"))).shared
    assert shared is not None
    assert (shared.url, shared.instance) == ("redis://:***@10.0.0.5:6379/0", "laptop-ana:41234:9f2c1a")
    assert (shared.healthy, shared.degraded_since, shared.error) == (False, 1794999870.5, "ConnectionError: refused")
    ci, laptop, build = shared.instances
    assert laptop == Instance(
        id="laptop-ana:41234:9f2c1a", host="laptop-ana", pid=41234, version="0.1.0", listen="http://127.0.0.1:3456",
        started_at=1794990000.0, seen=1795000000.0, held=0, inflight=2, stopped=False, this=True,
        conversations=(PoolConversation("lead0001-aaaa", "", "alice@example.com", 1),
                       PoolConversation("work0002-bbbb", "", "alice@example.com", 1),
                       PoolConversation("deep0004-dddd", "", "bob@example.com", 0)),
    )
    assert (ci.held, ci.inflight, ci.this, ci.stopped) == (1, 3, False, False)
    assert build.stopped and build.conversations == ()
    assert shared.reporting == (ci, laptop)
    assert shared.usage["alice@example.com"] == Usage(tokens=3400000, cost_usd=12.5, requests=1200)
    assert shared.total == Usage(tokens=3402000, cost_usd=12.51, requests=1210)


@pytest.mark.parametrize("document", [{"version": 1}, state_with(None), state_with("redis://x"), state_with([1, 2])])
def test_no_pool_when_the_key_is_missing_null_or_not_an_object(document):
    assert parse_state(document).shared is None


def test_garbled_values_fall_back_to_neutral_defaults():
    shared = parse_state(state_with({
        "url": 5, "instance": None, "healthy": "true", "degraded_since": "yesterday", "error": {"x": 1},
        "instances": [
            None, 7, "laptop",
            {"host": ["h"], "pid": "41234", "seen": True, "held": "2", "inflight": -1.5, "stopped": "yes",
             "this": 1, "conversations": [5, {"session": 3}, {"session": "s", "conversation": 7, "account": None,
                                                              "inflight": "x"}]},
            {"conversations": "none"},
        ],
        "usage": {"alice": "lots", "bob": {"tokens": "1", "cost_usd": None, "requests": 3}},
    })).shared
    assert shared is not None
    assert (shared.url, shared.instance, shared.healthy, shared.degraded_since, shared.error) == ("", "", False, None, "")
    odd, empty = shared.instances
    assert odd == Instance(id="", host="", pid=None, seen=None, held=0, inflight=-1, stopped=False, this=False,
                           conversations=(PoolConversation("s", "", "", 0),))
    assert empty.conversations == ()
    assert shared.usage == {"bob": Usage(tokens=0, cost_usd=0.0, requests=3)}
    assert shared.tags() == ("?:?", "?:?")  # no host, no pid: still one tag each


def test_instances_or_usage_of_the_wrong_type_give_an_empty_pool():
    shared = parse_state(state_with({"healthy": True, "instances": {"a": 1}, "usage": [1, 2]})).shared
    assert shared is not None and shared.healthy
    assert (shared.instances, shared.usage, shared.total) == ((), {}, Usage())


def test_nan_infinity_and_huge_numbers_are_unknown_not_a_crash():
    raw = '{"version": 1, "shared": {"degraded_since": NaN, "instances": [{"id": "a", "seen": Infinity, ' \
          '"pid": 1e999, "inflight": ' + "9" * 400 + '}]}}'
    shared = parse_state(json.loads(raw)).shared
    assert shared is not None and shared.degraded_since is None
    (instance,) = shared.instances
    assert (instance.seen, instance.pid, instance.inflight) == (None, None, 0)


def test_tags_name_the_host_without_its_domain_and_add_the_pid_where_hosts_repeat():
    shared = Shared(instances=(Instance("1", host="ci-runner-3.internal", pid=7), Instance("2", host="box", pid=10),
                               Instance("3", host="box.lan", pid=11), Instance("4", host="box")))
    assert shared.tags() == ("ci-runner-3", "box:10", "box:11", "box:?")


def test_the_fleet_fixture_has_no_pool():
    assert parse_state(json.loads((FIXTURES / "fleet.json").read_text())).shared is None


def test_no_string_of_the_state_file_reaches_the_terminal_with_control_characters():
    """Model names, session ids and notes come from clients: an escape sequence in one must
    not reach the operator's terminal."""
    state = parse_state({
        "version": 1,
        "accounts": [{"name": "alice\x1b[2J", "status": "ok"}],
        "sessions": [{"id": "s\x1b[2J", "model": "claude\x1b]0;owned\x07", "account": "alice"}],
        "activity": [{"t": 1.0, "method": "POST", "path": "/v1/messages\r", "note": "n\x1b[31m"}],
    })
    assert state.accounts[0].name == "alice [2J"
    assert (state.sessions[0].id, state.sessions[0].model) == ("s [2J", "claude ]0;owned ")
    assert (state.activity[0].path, state.activity[0].note) == ("/v1/messages ", "n [31m")
