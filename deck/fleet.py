"""What the Deck shows, computed from the state, presence and pins (pure, no rendering).

Only present sessions (see `deck.presence`) take part. Sessions in an orchestration tree
are listed in the tree; every other present session is listed under its account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deck import fmt
from deck.model import Account, ActivityLine, Session, State
from deck.presence import Pin, Presence
from deck.tree import Forest, Member, build_forest

NEEDS_YOU_STATUSES = frozenset({"block", "blocked", "review", "in-review"})


@dataclass(frozen=True)
class SessionView:
    session: Session
    presence: Presence
    pin: Pin | None
    last_activity: ActivityLine | None

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

    def session(self, sid: str) -> SessionView | None:
        return next((view for view in self.sessions if view.sid == sid), None)


def _by_tokens(views: list[SessionView]) -> tuple[SessionView, ...]:
    return tuple(sorted(views, key=lambda view: (-view.tokens, view.sid)))


def build_fleet(state: State, presence: Mapping[str, Presence], pins: Mapping[str, Pin | None]) -> Fleet:
    last_activity: dict[str, ActivityLine] = {}
    for line in state.activity:
        if line.session:
            last_activity[line.session] = line
    views = _by_tokens(
        [
            SessionView(session, presence[session.id], pins.get(session.id), last_activity.get(session.id))
            for session in state.sessions
            if session.id in presence and presence[session.id].visible
        ]
    )
    forest = build_forest(
        [
            Member(view.sid, view.pin.issue_id, view.pin.parent_id, view.tokens, view.session.usage.cost_usd)
            for view in views
            if view.pin is not None
        ]
    )
    return Fleet(
        sessions=views,
        forest=forest,
        groups=_groups(state, views, forest),
        issues=_issues(views),
        warm=sum(1 for view in views if view.session.warm),
        needs_you=sum(1 for view in views if view.needs_you),
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
