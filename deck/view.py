"""The Deck's screen: lays the sections out to fit any terminal (pure, state → renderable).

Height goes, in order of priority, to the header, the accounts with their bars, the tree
and session rows, the by-issue list, and finally the activity log (trimmed to what is
left). A shared pool's section (`deck.pool`) takes up to a third of the body first, below
the sessions. From `TWO_COLUMNS_MIN_WIDTH` columns on, pool, by-issue and activity move to a
right-hand column so big terminals show more of everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.text import Text

from deck import footer, pool, sections
from deck.controller import Ui
from deck.fleet import Fleet
from deck.locallog import LocalLine
from deck.statefile import Snapshot, staleness

MIN_WIDTH, MIN_HEIGHT = 40, 8
TWO_COLUMNS_MIN_WIDTH = 140
ISSUES_COLLAPSED = 3
ISSUES_COLLAPSED_WIDE = 8
SUMMARY_ACTIVITY = 10
# With this much room left after the account blocks, keep the newest requests in sight
# (title + 2 lines) even when sessions could use every line.
ACTIVITY_RESERVE_FROM = 12
ACTIVITY_RESERVED = 3
CLIENTS_SHOWN = 5
GUTTER = " │ "
POOL_SHARE = 3  # a shared pool's section takes at most this fraction of the body (1/3)


@dataclass(frozen=True)
class Frame:
    """Everything one screen shows."""

    snapshot: Snapshot
    fleet: Fleet | None
    now: float
    ui: Ui = Ui()
    local: tuple[LocalLine, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. settings could not be loaded


def render(frame: Frame, width: int, height: int) -> RenderableType:
    """The full screen for a `width`×`height` terminal: exactly `height` lines."""
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return Text(f"terminal too small (need at least {MIN_WIDTH}×{MIN_HEIGHT})", style="bold red")
    head = _header(frame, width)
    foot = [footer.footer_line(frame.ui, width)]
    room = height - len(head) - len(foot)
    wanted = len(footer.LEGEND) + 1 if frame.ui.mode == "legend" else len(frame.ui.options) + 1
    modal = footer.modal_lines(frame.ui, width, room=min(room // 2, wanted))
    room -= len(modal)
    if width >= TWO_COLUMNS_MIN_WIDTH:
        body = _two_columns(frame, width, room)
    else:
        lent = _expanded_issue_room(frame, room)
        pooled = pool.section_lines(frame.snapshot.state, frame.now, width, room // POOL_SHARE)
        main, left = _main_column(frame, width, room - lent - len(pooled), reserve_activity=True)
        body = main + pooled + _side(frame, width, left + lent, ISSUES_COLLAPSED, None)
    body += [Text("")] * (room - len(body))
    return Group(*head, *body[:room], *modal, *foot)


def render_summary(frame: Frame, width: int) -> RenderableType:
    """Plain periodic output when stdout is not a terminal: everything, last few requests."""
    head = _header(frame, width)
    main, _ = _main_column(frame, width, 10_000)
    pooled = pool.section_lines(frame.snapshot.state, frame.now, width, 10_000)
    side = _side(frame, width, 10_000, 10_000, SUMMARY_ACTIVITY)
    return Group(*head, *main, *pooled, *side)


def _header(frame: Frame, width: int) -> list[Text]:
    state = frame.snapshot.state
    warnings = []
    stale = staleness(frame.snapshot, frame.now)
    if stale:
        warnings.append(stale)
    if state is not None and state.proxy.config_error:
        warnings.append(f"config: {state.proxy.config_error}")
    warnings += frame.notes
    lines = sections.header_lines(state, frame.fleet, frame.ui, frame.now, width, warnings)
    return lines + pool.health_lines(state, frame.now, width)


def _expanded_issue_room(frame: Frame, room: int) -> int:
    """Lines the expanded by-issue list takes from the sessions (at most half of theirs)."""
    fleet = frame.fleet
    if not frame.ui.issues_expanded or fleet is None or not fleet.issues:
        return 0
    spare = room - 2 * len(fleet.groups)
    return max(0, min(len(fleet.issues) + 1, spare // 2))


def _two_columns(frame: Frame, width: int, room: int) -> list[Text]:
    left_width = (width - len(GUTTER)) * 11 // 20
    right_width = width - len(GUTTER) - left_width
    left, _ = _main_column(frame, left_width, room)
    right = pool.section_lines(frame.snapshot.state, frame.now, right_width, room // POOL_SHARE)
    right += _side(frame, right_width, room - len(right), ISSUES_COLLAPSED_WIDE, None)
    rows = []
    for index in range(max(len(left), len(right))):
        line = left[index].copy() if index < len(left) else Text("")
        line.truncate(left_width, overflow="ellipsis", pad=True)
        line.append(GUTTER, style="grey35")
        if index < len(right):
            line += right[index]
        rows.append(line)
    return rows


def _main_column(frame: Frame, width: int, room: int, reserve_activity: bool = False) -> tuple[list[Text], int]:
    """Tree, then accounts with their session rows; returns the lines and the room left."""
    state, fleet, now = frame.snapshot.state, frame.fleet, frame.now
    if state is None or fleet is None:
        waiting = Text(f"waiting for the proxy's state file at {frame.snapshot.path}", style="dim")
        return [sections.cut(waiting, width)], room - 1
    groups = list(fleet.groups)
    if 2 * len(groups) > room:
        shown = max(0, (room - 1) // 2)
        lines = []
        for group in groups[:shown]:
            lines.append(sections.account_header(group, state, now, width, hidden=len(group.rows)))
            lines.append(sections.account_bars(group.account, now, width))
        more = Text(f"… {len(groups) - shown} more accounts", style="dim")
        return (lines + [sections.cut(more, width)])[:room], 0

    spare = room - 2 * len(groups)
    if reserve_activity and spare >= ACTIVITY_RESERVE_FROM:
        spare -= ACTIVITY_RESERVED
    tree = _tree_lines(frame, width)
    wanted = sum(len(group.rows) for group in groups)
    tree_room = min(len(tree), max(spare - wanted, spare // 2))
    shown_tree = _trim(tree, tree_room, width, "tree lines")
    allowance = _share_rows([len(group.rows) for group in groups], spare - len(shown_tree))

    lines = list(shown_tree)
    for group, count in zip(groups, allowance, strict=True):
        hidden = len(group.rows) - count
        lines.append(sections.account_header(group, state, now, width, hidden))
        lines.append(sections.account_bars(group.account, now, width))
        lines += [sections.session_row(view, width, now) for view in group.rows[:count]]
    return lines, room - len(lines)


def _tree_lines(frame: Frame, width: int) -> list[Text]:
    assert frame.fleet is not None
    trees = frame.fleet.forest.trees
    lines: list[Text] = []
    for index, tree in enumerate(trees, start=1):
        lines.append(sections.tree_header(tree, index if len(trees) > 1 else 0, width))
        lines += sections.tree_node_lines(tree, frame.fleet, width, frame.now)
        lines.append(sections.levels_line(tree, width))
    return lines


def _trim(lines: list[Text], room: int, width: int, what: str) -> list[Text]:
    if len(lines) <= room:
        return lines
    if room <= 0:
        return []
    more = Text(f"  … {len(lines) - room + 1} more {what}", style="dim")
    return lines[: room - 1] + [sections.cut(more, width)]


def _share_rows(wanted: list[int], room: int) -> list[int]:
    """Session rows per account: one each in turn until the room is used (fair when tight)."""
    given = [0] * len(wanted)
    room = max(0, room)
    while room > 0:
        progressed = False
        for index, want in enumerate(wanted):
            if room > 0 and given[index] < want:
                given[index] += 1
                room -= 1
                progressed = True
        if not progressed:
            break
    return given


def _side(frame: Frame, width: int, room: int, issues_collapsed: int, activity_limit: int | None) -> list[Text]:
    """By-issue list, the clients (when there are client keys), then as much of the
    activity log as fits."""
    lines: list[Text] = []
    fleet = frame.fleet
    clients = frame.snapshot.state.clients if frame.snapshot.state is not None else ()
    issues_room = room - ACTIVITY_RESERVED if activity_limit is None else room
    if fleet is not None and fleet.issues and issues_room >= 2:
        limit = len(fleet.issues) if frame.ui.issues_expanded else issues_collapsed
        shown = min(limit, len(fleet.issues), issues_room - 1)
        lines.append(sections.issues_title(len(fleet.issues), shown, width))
        lines += [sections.issue_row(row, width) for row in fleet.issues[:shown]]
        room -= len(lines)
    clients_room = room - ACTIVITY_RESERVED if activity_limit is None else room
    if clients and clients_room >= 2:
        busiest = sorted(clients, key=lambda c: (-c.in_flight, -c.requests))
        shown = min(len(clients), CLIENTS_SHOWN, clients_room - 1)
        part = [sections.clients_title(len(clients), shown, width)]
        part += [sections.client_row(client, width) for client in busiest[:shown]]
        lines += part
        room -= len(part)
    if room >= 2:
        state = frame.snapshot.state
        activity = sections.activity_lines(state.activity if state else (), frame.local, width)
        keep = room - 1 if activity_limit is None else min(room - 1, activity_limit)
        lines.append(sections.activity_title(width))
        lines += activity[-keep:] if activity else []
    return lines
