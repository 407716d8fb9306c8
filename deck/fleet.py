"""What the Deck shows, computed from the state, presence and pins (pure, no rendering).

Only present sessions (see `deck.presence`) take part. Sessions in an orchestration tree
are listed in the tree; every other present session is listed under its account. A
session's recent subagents (seen in traffic, no pin needed) hang below it in the tree, each
under its parent agent when it names one; a node's Σ adds up its subtree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deck import fmt
from deck.model import Account, ActivityLine, Agent, Session, Shared, State
from deck.presence import LAST_TURN_WINDOW_S, Pin, Presence
from deck.tree import Forest, Member, build_forest

NEEDS_YOU_STATUSES = frozenset({"block", "blocked", "review", "in-review"})


@dataclass(frozen=True)
class SessionView:
    session: Session
    presence: Presence
    pin: Pin | None
    last_activity: ActivityLine | None
    proxy: str = ""  # which proxies of a shared pool serve it ("" when there is one proxy)

    @property
    def sid(self) -> str:
        return self.session.id

    @property
    def emoji(self) -> str:
        return fmt.session_emoji(self.session.id)

    @property
    def tokens(self) -> int:
        return self.session.usage.tokens

    @property
    def label(self) -> str:
        if self.pin is None:
            return fmt.short_id(self.session.id)
        return self.pin.title or self.pin.issue_id

    @property
    def status(self) -> str:
        return self.pin.status if self.pin else ""

    @property
    def needs_you(self) -> bool:
        return self.status in NEEDS_YOU_STATUSES

    @property
    def live(self) -> bool:
        return self.session.inflight > 0 or self.presence.tool_running or self.session.warm

    @property
    def glyph(self) -> str:
        if self.presence.tool_running:
            return "⚙"
        if self.session.inflight > 0:
            return "~"
        return " "


@dataclass(frozen=True)
class AgentView:
    agent: Agent
    session: Session
    proxy: str = ""  # as SessionView.proxy

    @property
    def node(self) -> str:
        return agent_node(self.session.id, self.agent.id)

    @property
    def label(self) -> str:
        return fmt.short_id(self.agent.id.removeprefix("d-"))

    @property
    def live(self) -> bool:
        return self.agent.inflight > 0 or self.agent.warm

    @property
    def glyph(self) -> str:
        return "~" if self.agent.inflight > 0 else " "


def agent_node(sid: str, agent_id: str) -> str:
    """A subagent's node id in the tree: unique across sessions (ids are printable)."""
    return f"{sid}\x1f{agent_id}"


def recent_agents(session: Session, now: float) -> tuple[Agent, ...]:
    """The session's subagents worth a tree row: busy, warm, or used within the half hour
    a session itself stays on screen."""
    return tuple(
        agent for agent in session.agents
        if agent.inflight > 0 or agent.warm
        or (agent.last_used is not None and now - agent.last_used <= LAST_TURN_WINDOW_S)
    )


@dataclass(frozen=True)
class AccountGroup:
    name: str
    account: Account | None  # None: sessions bound to an account the state does not list
    rows: tuple[SessionView, ...]  # present sessions not shown in a tree, by tokens
    agents: int  # all present sessions on the account, tree members included
    live: int


@dataclass(frozen=True)
class IssueRow:
    issue_id: str
    title: str
    status: str
    emojis: str
    tokens: int
    cost_usd: float


@dataclass(frozen=True)
class Fleet:
    sessions: tuple[SessionView, ...]
    forest: Forest
    groups: tuple[AccountGroup, ...]
    issues: tuple[IssueRow, ...]
    warm: int
    needs_you: int
    agents: tuple[AgentView, ...] = ()

    def session(self, sid: str) -> SessionView | None:
        return next((view for view in self.sessions if view.sid == sid), None)

    def agent(self, node: str) -> AgentView | None:
        return next((view for view in self.agents if view.node == node), None)


def _by_tokens(views: list[SessionView]) -> tuple[SessionView, ...]:
    return tuple(sorted(views, key=lambda view: (-view.tokens, view.sid)))


def _members(views: tuple[SessionView, ...], agents: tuple[AgentView, ...]) -> list[Member]:
    """Tree members: pinned sessions, sessions with recent agents, and those agents. A
    session's own tokens are what its agents shown here did not spend, so Σ is its total."""
    by_session: dict[str, list[AgentView]] = {}
    for agent in agents:
        by_session.setdefault(agent.session.id, []).append(agent)
    members = []
    for view in views:
        mine = by_session.get(view.sid, [])
        if view.pin is None and not mine:
            continue
        usage = view.session.usage
        members.append(Member(
            view.sid, view.pin.issue_id if view.pin else "", view.pin.parent_id if view.pin else "",
            max(0, usage.tokens - sum(a.agent.usage.tokens for a in mine)),
            max(0.0, usage.cost_usd - sum(a.agent.usage.cost_usd for a in mine)),
        ))
        known = {agent.agent.id for agent in mine}
        for agent in mine:
            parent = agent.agent.parent
            members.append(Member(
                agent.node, "", "", agent.agent.usage.tokens, agent.agent.usage.cost_usd,
                parent_node=agent_node(view.sid, parent) if parent in known and parent != agent.agent.id else view.sid,
            ))
    return members


def served_by(shared: Shared | None) -> dict[tuple[str, str | None], str]:
    """Which proxies serve each conversation, by (session, agent id) and (session, None) for
    the session as a whole: their tags joined by commas. Empty unless the pool has more than
    one proxy reporting (with one, every conversation is this proxy's)."""
    if shared is None or len(shared.reporting) < 2:
        return {}
    found: dict[tuple[str, str | None], list[str]] = {}
    for instance, tag in zip(shared.instances, shared.tags(), strict=True):
        if instance.stopped:
            continue
        for conversation in instance.conversations:
            for key in ((conversation.session, None), (conversation.session, conversation.conversation)):
                tags = found.setdefault(key, [])
                if tag not in tags:
                    tags.append(tag)
    return {key: ",".join(tags) for key, tags in found.items()}


def build_fleet(state: State, presence: Mapping[str, Presence], pins: Mapping[str, Pin | None],
                now: float) -> Fleet:
    last_activity: dict[str, ActivityLine] = {}
    for line in state.activity:
        if line.session:
            last_activity[line.session] = line
    served = served_by(state.shared)
    views = _by_tokens(
        [
            SessionView(session, presence[session.id], pins.get(session.id), last_activity.get(session.id),
                        served.get((session.id, None), ""))
            for session in state.sessions
            if session.id in presence and presence[session.id].visible
        ]
    )
    agents = tuple(AgentView(agent, view.session, served.get((view.sid, agent.id), ""))
                   for view in views for agent in recent_agents(view.session, now))
    forest = build_forest(_members(views, agents))
    return Fleet(
        sessions=views,
        forest=forest,
        groups=_groups(state, views, forest),
        issues=_issues(views),
        warm=sum(1 for view in views if view.session.warm),
        needs_you=sum(1 for view in views if view.needs_you),
        agents=agents,
    )


def _groups(state: State, views: tuple[SessionView, ...], forest: Forest) -> tuple[AccountGroup, ...]:
    accounts = sorted(state.accounts, key=lambda a: (-a.usage.tokens, a.name))
    names = [account.name for account in accounts]
    names += sorted({view.session.account for view in views} - set(names))
    groups = []
    for name in names:
        mine = [view for view in views if view.session.account == name]
        groups.append(
            AccountGroup(
                name=name or "(no account)",
                account=state.account(name),
                rows=_by_tokens([view for view in mine if view.sid not in forest.placed]),
                agents=len(mine),
                live=sum(1 for view in mine if view.live),
            )
        )
    return tuple(groups)


def _issues(views: tuple[SessionView, ...]) -> tuple[IssueRow, ...]:
    grouped: dict[str, list[SessionView]] = {}
    for view in views:
        if view.pin is not None:
            grouped.setdefault(view.pin.issue_id, []).append(view)
    rows = []
    for issue_id, members in grouped.items():
        titled = next((m.pin for m in members if m.pin and m.pin.title), None)
        status = next((m.status for m in members if m.status), "")
        rows.append(
            IssueRow(
                issue_id=issue_id,
                title=titled.title if titled else "",
                status=status,
                emojis="".join(m.emoji for m in members),
                tokens=sum(m.tokens for m in members),
                cost_usd=sum(m.session.usage.cost_usd for m in members),
            )
        )
    return tuple(sorted(rows, key=lambda row: (-row.tokens, row.issue_id)))
