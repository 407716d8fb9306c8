"""The agent tree from traffic (issue 14 §3): a state whose sessions list their subagent
conversations, rendered as the Deck shows it, with no pin.json and with one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from deck.model import parse_state
from deck.monitor import Monitor
from deck.presence import PresenceTracker
from deck.statefile import StateReader
from deck.view import render
from tests.deck.claude_home import FIXTURES, NOW, build_agents_home, write_pin, write_state


def screen(monitor: Monitor, width: int, height: int) -> str:
    console = Console(record=True, width=width, height=height, color_system=None, file=io.StringIO())
    console.print(render(monitor.frame(), width, height))
    return console.export_text()


@pytest.fixture
def claude(tmp_path):
    return build_agents_home(tmp_path / "claude")


@pytest.fixture
def monitor(claude):
    clock = lambda: NOW  # noqa: E731
    return Monitor(StateReader(FIXTURES / "agents.json"), PresenceTracker(claude, clock), clock)


def line_with(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def index_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines()) if needle in line)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_agent_tree_from_traffic_without_any_pin(monitor, claude, size):
    assert not list(claude.rglob("pin.json"))
    text = screen(monitor, *size)
    lines = text.splitlines()
    assert len(lines) == size[1] and all(len(line) <= size[0] for line in lines)
    assert "3 agents +3 subagents · 3 warm" in lines[0]
    # The session, its agent, and the agent's own (nested) agent, tokens rolled up.
    assert "Tree 1 · 3 nodes · 600k tok · $6.00" in text
    lead = line_with(text, "main0001")
    assert lead.lstrip().startswith("◆") and "350k" in lead and "Σ600k" in lead and "@alice" in lead and "~" in lead
    agent = line_with(text, "⤷ a1b2c3d4")
    assert agent.startswith(" └─ ◆") and "200k" in agent and "Σ250k" in agent
    nested = line_with(text, "⤷ nest")
    assert nested.startswith("    └─ ·") and "50.0k" in nested and "~" in nested
    assert index_of(text, "main0001") < index_of(text, "a1b2c3d4") < index_of(text, "⤷ nest")
    assert "Levels  L0 1·350k  L1 1·200k  L2 1·50.0k" in text
    # An agent quiet for an hour is not drawn (its tokens stay in the session's).
    assert "idle0000" not in text


def test_background_sessions_and_agents_are_labelled(monitor):
    text = screen(monitor, 160, 48)
    assert "Tree 2 · 2 nodes · 100k tok · $1.00" in text
    assert "bg @bob" in line_with(text, "bgjob002")
    assert "bg @bob" in line_with(text, "⤷ bgagent0")
    assert "bg" not in line_with(text, "main0001").split("Σ600k")[1]


def test_a_session_without_agents_stays_under_its_account(monitor):
    text = screen(monitor, 160, 48)
    plain = line_with(text, "plain003")
    assert plain.startswith("  ") and "◆" not in plain
    assert index_of(text, "alice@example.com ★") < index_of(text, "plain003") < index_of(text, "bob@example.com")
    assert "main0001" not in text.split("alice@example.com ★")[1]  # in the tree, not repeated


def test_pin_json_still_decorates_the_node(monitor, claude):
    write_pin(claude, "main0001-aaaa", issueId="ISS-14", title="Agents in the Deck", status="review")
    text = screen(monitor, 160, 48)
    lead = line_with(text, "Agents in the Deck")
    assert lead.lstrip().startswith("◆") and "⚑[review]" in lead and "Σ600k" in lead
    assert "⤷ a1b2c3d4" in text and "3 nodes" in line_with(text, "Tree 1")


def test_sessions_parse_the_conversations_of_the_state_file():
    state = parse_state({
        "version": 1,
        "sessions": [
            {"id": "s", "conversation": None, "background": False, "usage": {"tokens": 30},
             "conversations": [
                 {"id": "s", "conversation": None, "background": True, "usage": {"tokens": 10}},
                 {"id": "s", "conversation": "agent-1", "parent_agent_id": None, "account": "a",
                  "background": True, "inflight": 1, "last_used": 5.0, "usage": {"tokens": 20}},
                 {"id": "s", "conversation": 42},  # not a string: ignored
                 "garbage",
             ]},
            {"id": "only-agents", "conversation": "x", "conversations": [{"id": "only-agents", "conversation": "x"}]},
            {"id": "old", "background": True},  # a proxy before per-conversation data
        ],
    })
    session, only_agents, old = state.sessions
    assert session.background and session.usage.tokens == 30
    (agent,) = session.agents
    assert (agent.id, agent.parent, agent.account, agent.background, agent.inflight) == ("agent-1", "", "a", True, 1)
    assert agent.usage.tokens == 20
    assert not only_agents.background and [a.id for a in only_agents.agents] == ["x"]
    assert old.background and old.agents == ()


def test_a_pool_tags_each_session_and_agent_with_the_proxies_serving_it(claude, tmp_path):
    def proxy(host: str, this: bool, *conversations: tuple[str, str | None]) -> dict:
        return {"id": host, "host": host, "pid": 1, "this": this, "seen": NOW,
                "conversations": [{"session": s, "conversation": c, "account": "alice"} for s, c in conversations]}

    shared = {"healthy": True, "instances": [
        proxy("laptop", True, ("main0001-aaaa", None), ("main0001-aaaa", "nest0000nest0000")),
        proxy("ci", False, ("main0001-aaaa", "a1b2c3d4e5f6a7b8"), ("bgjob002-bbbb", "bgagent0bgagent0")),
        proxy("gone", False, ("plain003-cccc", None)) | {"stopped": True},
    ]}
    path = write_state(tmp_path, "agents.json", shared)
    text = screen(Monitor(StateReader(path), PresenceTracker(claude, lambda: NOW), lambda: NOW), 200, 48)
    assert "@alice · via laptop,ci" in line_with(text, "main0001")  # its conversations are on both
    assert "@alice · via ci" in line_with(text, "⤷ a1b2c3d4")
    assert "@bob · via laptop" in line_with(text, "⤷ nest")
    assert "via ci" in line_with(text, "bgjob002") and "via ci" in line_with(text, "⤷ bgagent0")
    assert "via" not in line_with(text, "plain003")  # only a proxy that stopped reporting named it
