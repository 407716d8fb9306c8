"""One-line building blocks of the Deck, each a `rich.text.Text` cut to a given width.

Every function returns whole lines (never wrapping), so the layout can count them exactly.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text

from deck import fmt
from deck.controller import Ui
from deck.fleet import AccountGroup, AgentView, Fleet, IssueRow, SessionView
from deck.locallog import LocalLine
from deck.model import Account, ActivityLine, Capacity, Client, State, Window
from deck.tree import Tree, tree_lines

WEEK_S = 7 * 86400
PACE_BAND = 0.02

VERDICT_STYLE = {"green": "bold green", "yellow": "bold yellow", "red": "bold red"}
STATUS_STYLE = {
    "ok": "green",
    "benched": "yellow",
    "needs-login": "bold red",
    "disabled": "dim",
    "unknown": "grey50",
}
ISSUE_STATUS_STYLE = {
    "work": "cyan",
    "todo": "grey62",
    "queued": "blue",
    "block": "bold red",
    "blocked": "bold red",
    "review": "magenta",
    "in-review": "magenta",
}
LEVEL_STYLE = {"warn": "yellow", "error": "bold red"}


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def cut(text: Text, width: int) -> Text:
    """The line truncated with an ellipsis to `width` cells, never wrapped. A URL that does
    not fit whole is left out rather than cut mid-word (a cut link misleads)."""
    line = text.copy()
    line.no_wrap = True
    line.overflow = "ellipsis"
    width = max(1, width)
    if line.cell_len > width:
        for match in _URL.finditer(line.plain):
            start = cell_len(line.plain[:match.start()])
            if start < width <= start + cell_len(match.group()):
                line.truncate(start, overflow="crop")
                line.rstrip()
                line.append("…")
                break
    line.truncate(width, overflow="ellipsis")
    return line


def cell(value: str, width: int, style: str = "", right: bool = False) -> Text:
    """`value` in exactly `width` cells (padded or cut)."""
    text = Text(value, style=style)
    if right:
        pad = width - text.cell_len
        if pad > 0:
            text = Text(" " * pad) + text
    text.truncate(width, overflow="ellipsis", pad=True)
    return text


def utilization_style(value: float) -> str:
    if value >= 0.9:
        return "red"
    if value >= 0.7:
        return "yellow"
    return "green"


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


# ── header ──────────────────────────────────────────────────────────────────────────────


def header_lines(state: State | None, fleet: Fleet | None, ui: Ui, now: float, width: int,
                 warnings: list[str]) -> list[Text]:
    title = Text("teamclaude deck", style="bold")
    if fleet is not None and state is not None:
        title.append(f" · {len(fleet.sessions)} agents")
        if fleet.agents:
            title.append(f" +{len(fleet.agents)} subagents")
        title.append(f" · {fleet.warm} warm · ")
        title.append(f"{fleet.needs_you} needs-you", style="bold magenta" if fleet.needs_you else "")
        title.append(f" · {fmt.tokens(state.totals.tokens)} tok · {fmt.money(state.totals.cost_usd)}")
    if ui.bell:
        title.append("  bell on", style="dim")
    lines = [cut(title, width)]
    if state is not None:
        lines.append(cut(capacity_chip(state, now, width), width))
    lines += [cut(Text(f"⚠ {warning}", style="bold red"), width) for warning in warnings]
    return lines


def held_text(capacity: Capacity) -> str:
    """`⏳ 3 held, oldest 42s, next look in 2s`: requests waiting for an account."""
    text = f"⏳ {capacity.held} held"
    if capacity.held_oldest_sec is not None:
        text += f", oldest {fmt.duration(capacity.held_oldest_sec)}"
    if capacity.held_next_wake_sec is not None:
        text += f", next look in {fmt.duration(capacity.held_next_wake_sec)}"
    return text


def append_whole(line: Text, part: str, width: int, style: str = "") -> None:
    """Append `part` only if all of it fits in `width`: a URL or a name is never cut."""
    if line.cell_len + len(part) <= width:
        line.append(part, style=style)


def capacity_chip(state: State, now: float, width: int = 10_000) -> Text:
    capacity = state.capacity
    style = VERDICT_STYLE.get(capacity.verdict, "dim")
    chip = Text("● ", style=style) + Text(capacity.verdict.upper(), style=style)
    parts = []
    if capacity.headroom is not None:
        parts.append(f"headroom {capacity.headroom}")
    if capacity.live_accounts is not None and capacity.total is not None:
        parts.append(f"live {capacity.live_accounts}/{capacity.total}")
    if capacity.benched:
        parts.append(f"benched {capacity.benched}")
    if capacity.soonest_reset_sec is not None:
        elapsed = now - capacity.at if capacity.at is not None else 0.0
        parts.append(f"next reset {fmt.duration(capacity.soonest_reset_sec - elapsed)}")
    if capacity.held:
        parts.append(held_text(capacity))
    if parts:
        chip.append("  " + " · ".join(parts))
    if state.pinned:
        append_whole(chip, f"  pinned → {fmt.short_account(state.pinned)}", width, style="cyan")
    if state.proxy.listen:
        append_whole(chip, f"  {state.proxy.listen}", width, style="dim")
    return chip


# ── accounts ────────────────────────────────────────────────────────────────────────────


def account_header(group: AccountGroup, state: State, now: float, width: int, hidden: int) -> Text:
    account = group.account
    status = account.status if account else "unknown"
    if account is not None and account.needs_login:
        status = "needs-login"
    style = STATUS_STYLE.get(status, "grey50")
    if account is not None and (account.token_unsaved or account.refresh_error) and status != "needs-login":
        style = STATUS_STYLE["needs-login"]
    line = Text("● ", style=style)
    line.append(group.name, style="bold")
    if group.name == state.current:
        line.append(" ★", style="yellow")
    if account is not None:
        line.append(" " + _status_chip(account, status, now, wide=width >= 100), style=style)
        kind = account.plan or account.kind
        if kind:
            line.append(f" {kind}", style="dim")
    line.append(f"  {group.agents} agents · {group.live} live")
    if hidden:
        line.append(f" +{hidden} more", style="dim")
    if account is not None:
        line.append(f" · {fmt.tokens(account.usage.tokens)} tok · {fmt.money(account.usage.cost_usd)}")
    return cut(line, width)


def _status_chip(account: Account, status: str, now: float, wide: bool) -> str:
    if status == "needs-login":
        return "needs login → teamclaude login" if wide else "needs login"
    if account.token_unsaved:
        return f"new token not saved ({account.token_unsaved}; retrying)" if wide else "new token not saved"
    if account.refresh_error:
        return f"refresh failing ({account.refresh_error})" if wide else "refresh failing"
    if account.bench_until is not None and account.bench_until > now:
        reason = f" ({account.bench_reason})" if account.bench_reason else ""
        return f"benched {fmt.duration(account.bench_until - now)}{reason}"
    return status


def bar(utilization: float, width: int) -> Text:
    filled = max(0, min(width, round(utilization * width)))
    return Text("█" * filled, style=utilization_style(utilization)) + Text("░" * (width - filled), style="grey35")


def window_segment(label: str, window: Window | None, bar_width: int, now: float) -> Text:
    segment = Text(f"{label} ", style="bold")
    if window is None or window.utilization is None:
        return segment + Text("·" * bar_width, style="grey35") + Text("   —")
    segment += bar(window.utilization, bar_width)
    segment.append(f" {round(window.utilization * 100):>3}%", style=utilization_style(window.utilization))
    if window.reset is not None:
        segment.append(f" ↻{fmt.duration(window.reset - now)}", style="dim")
    return segment


def time_to_empty(window: Window, pace_line: float | None, now: float) -> float | None:
    """Seconds until the 7-day window is used up at its average rate so far, if knowable."""
    used = window.utilization
    if used is None or used <= 0:
        return None
    if used >= 1:
        return 0.0
    elapsed_fraction = pace_line
    if elapsed_fraction is None and window.reset is not None:
        elapsed_fraction = 1 - (window.reset - now) / WEEK_S
    if elapsed_fraction is None or elapsed_fraction <= 0:
        return None
    rate = used / (elapsed_fraction * WEEK_S)
    return (1 - used) / rate


def pace_segment(account: Account, now: float, wide: bool) -> Text:
    gap = account.pace_gap
    if gap is None:
        return Text("")
    gap_text = f" {gap * 100:+.0f}pt" if wide else ""
    if gap > PACE_BAND:
        return Text(f"↑ behind{gap_text}", style="green")
    if gap >= -PACE_BAND:
        return Text(f"→ on line{gap_text}", style="dim")
    segment = Text(f"↓ ahead{gap_text}", style="yellow")
    week = account.windows.get("7d")
    tte = time_to_empty(week, account.pace_line, now) if week is not None else None
    if tte is not None:
        before_reset = week is not None and week.reset is not None and now + tte < week.reset
        segment.append(f" empty ~{fmt.duration(tte)}", style="bold red" if before_reset else "yellow")
    return segment


def account_bars(account: Account | None, now: float, width: int) -> Text:
    if account is None:
        return cut(Text("  (not in the proxy's account list)", style="dim"), width)
    bar_width = 10 if width < 100 else max(10, min(24, (width - 70) // 2))
    line = Text("  ")
    line += window_segment("5h", account.windows.get("5h"), bar_width, now)
    line.append("  ")
    line += window_segment("7d", account.windows.get("7d"), bar_width, now)
    line.append(" ")
    line += pace_segment(account, now, wide=width >= 100)
    return cut(line, width)


# ── sessions ────────────────────────────────────────────────────────────────────────────


def _label_width(width: int) -> int:
    return max(10, min(40, (width - 36) * 2 // 5))


def session_row(view: SessionView, width: int, now: float, prefix: str = "  ",
                subtree_tokens: int | None = None, show_account: bool = False,
                own: tuple[int, float] | None = None) -> Text:
    """One session; in a tree, `own` is what it spent without its agents (Σ adds them)."""
    line = Text(prefix, style="grey50")
    line.append(view.emoji + " ")
    # Deeper tree rows give their indent back from the label, so the columns stay aligned.
    label_width = max(6, _label_width(width) - max(0, line.cell_len - 5))
    line += cell(view.label, label_width, style="bold" if view.pin else "")
    line.append(" ")
    line.append("⚑" if view.needs_you else " ", style="bold magenta")
    status = view.status
    line += cell(f"[{status}]" if status else "", 9, style=ISSUE_STATUS_STYLE.get(status, "grey62"))
    line += cell("live" if view.live else "idle", 5, style="green" if view.live else "grey50")
    line.append(view.glyph + " ", style="bold cyan")
    tokens, cost = own if own is not None else (view.tokens, view.session.usage.cost_usd)
    line += cell(fmt.tokens(tokens), 6, right=True)
    line.append(" ")
    line += cell(fmt.money(cost), 7, style="dim", right=True)
    if subtree_tokens is not None:
        line.append(f" Σ{fmt.tokens(subtree_tokens)}", style="bold")
    line.append("  ")
    if view.session.background:
        line.append("bg ", style="bold yellow")
    line.append(_activity_text(view, now, show_account), style="grey62")
    return cut(line, width)


def agent_row(view: AgentView, width: int, now: float, prefix: str, subtree_tokens: int | None) -> Text:
    """A subagent seen in traffic, in the same columns as a session row."""
    agent = view.agent
    line = Text(prefix, style="grey50")
    line.append("⤷ ", style="cyan")
    label_width = max(6, _label_width(width) - max(0, line.cell_len - 5))
    line += cell(view.label, label_width)
    line.append("  ")
    line += cell("", 9)
    line += cell("live" if view.live else "idle", 5, style="green" if view.live else "grey50")
    line.append(view.glyph + " ", style="bold cyan")
    line += cell(fmt.tokens(agent.usage.tokens), 6, right=True)
    line.append(" ")
    line += cell(fmt.money(agent.usage.cost_usd), 7, style="dim", right=True)
    if subtree_tokens is not None:
        line.append(f" Σ{fmt.tokens(subtree_tokens)}", style="bold")
    line.append("  ")
    if agent.background:
        line.append("bg ", style="bold yellow")
    parts = ["@" + fmt.short_account(agent.account)] if agent.account else []
    if view.proxy:
        parts.append(f"via {view.proxy}")
    if agent.model:
        parts.append(agent.model.removeprefix("claude-"))
    if agent.last_used is not None:
        parts.append(f"{fmt.duration(now - agent.last_used)} ago")
    line.append(" · ".join(parts), style="grey62")
    return cut(line, width)


def _activity_text(view: SessionView, now: float, show_account: bool) -> str:
    parts = []
    if show_account:
        parts.append("@" + fmt.short_account(view.session.account))
    if view.proxy:
        parts.append(f"via {view.proxy}")
    trouble = view.last_activity
    if trouble is not None and trouble.level in LEVEL_STYLE:
        parts.append(f"last {trouble.status or '—'} {trouble.note or trouble.reason}".rstrip())
    if view.pin is not None and view.pin.intent:
        parts.append(view.pin.intent)
    else:
        if view.session.model:
            parts.append(view.session.model.removeprefix("claude-"))
        last = view.session.last_used or view.presence.last_turn
        if last is not None:
            parts.append(f"{fmt.duration(now - last)} ago")
    return " · ".join(parts)


# ── tree ────────────────────────────────────────────────────────────────────────────────


def tree_header(tree: Tree, index: int, width: int) -> Text:
    line = Text("Tree", style="bold underline")
    line.append(f" {index}" if index else "")
    line.append(f" · {tree.nodes} nodes · {fmt.tokens(tree.tokens)} tok · {fmt.money(tree.cost_usd)}")
    return cut(line, width)


def tree_node_lines(tree: Tree, fleet: Fleet, width: int, now: float) -> list[Text]:
    lines = []
    for connector, node in tree_lines(tree):
        prefix = " " + connector + ("◆ " if node.is_lead else "· ")
        subtree = node.subtree_tokens if node.is_lead else None
        view = fleet.session(node.member.sid)
        if view is not None:
            own = (node.member.tokens, node.member.cost_usd)
            lines.append(session_row(view, width, now, prefix=prefix, subtree_tokens=subtree, show_account=True, own=own))
            continue
        agent = fleet.agent(node.member.sid)
        if agent is not None:
            lines.append(agent_row(agent, width, now, prefix, subtree))
    return lines


def levels_line(tree: Tree, width: int) -> Text:
    line = Text("  Levels", style="dim")
    for level in tree.levels:
        line.append(f"  L{level.depth} ", style="bold")
        line.append(f"{level.count}·{fmt.tokens(level.tokens)}")
    return cut(line, width)


# ── by issue ────────────────────────────────────────────────────────────────────────────


def issues_title(count: int, shown: int, width: int) -> Text:
    line = Text("By issue", style="bold underline")
    line.append(f" · {count} active")
    if shown < count:
        line.append(f" (top {shown}; i expands)", style="dim")
    return cut(line, width)


def issue_row(row: IssueRow, width: int) -> Text:
    line = Text("  ")
    line.append(row.emojis + " ")
    line += cell(row.title or row.issue_id, _label_width(width) + 4, style="bold")
    line.append(" ")
    line += cell(f"[{row.status}]" if row.status else "", 9, style=ISSUE_STATUS_STYLE.get(row.status, "grey62"))
    line += cell(fmt.tokens(row.tokens), 6, right=True)
    line.append(" ")
    line += cell(fmt.money(row.cost_usd), 8, style="dim", right=True)
    if row.title:
        line.append(f"  {row.issue_id}", style="grey50")
    return cut(line, width)


# ── clients ──────────────────────────────────────────────────────────────────────────────


def clients_title(count: int, shown: int, width: int) -> Text:
    line = Text("Clients", style="bold underline")
    line.append(f" · {count} keys")
    if shown < count:
        line.append(f" (busiest {shown})", style="dim")
    return cut(line, width)


def client_row(client: Client, width: int) -> Text:
    """name, in flight (of its limit, red when at it), requests, refused, tokens, cost."""
    line = Text("  ")
    line += cell(client.name, _label_width(width), style="bold")
    limit = client.max_concurrent
    full = limit is not None and client.in_flight >= limit
    flight = f"{client.in_flight}/{limit}" if limit is not None else str(client.in_flight)
    line += cell(flight, 6, style="bold red" if full else "", right=True)
    line += cell(f"{client.requests} req", 9, right=True)
    line += cell(f"{client.refused} 429" if client.refused else "", 8, style="yellow", right=True)
    line += cell(fmt.tokens(client.tokens), 7, right=True)
    line.append(" ")
    line += cell(fmt.money(client.cost_usd), 8, style="dim", right=True)
    return cut(line, width)


# ── activity ────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class _Entry:
    t: float
    text: Text


def activity_title(width: int) -> Text:
    return cut(Text("Activity", style="bold underline"), width)


def activity_lines(lines: tuple[ActivityLine, ...], local: tuple[LocalLine, ...], width: int) -> list[Text]:
    """Proxy requests and the Deck's own action results, oldest first."""
    entries = [_Entry(line.t, _request_line(line, width)) for line in lines]
    entries += [_Entry(line.t, _local_line(line, width)) for line in local]
    entries.sort(key=lambda entry: entry.t)
    return [entry.text for entry in entries]


def _request_line(line: ActivityLine, width: int) -> Text:
    style = LEVEL_STYLE.get(line.level, "")
    text = Text(clock(line.t) + " ", style="dim")
    text += cell(line.method, 5, style=style)
    text += cell(line.path, 22 if width >= 100 else 16, style=style)
    text.append(" ")
    text += cell(fmt.short_account(line.account), 12 if width >= 100 else 9)
    text.append(" ")
    text += cell(str(line.status) if line.status is not None else "—", 3, style=style or _status_style(line.status))
    text.append(" ")
    duration = f"{line.duration_ms / 1000:.1f}s" if line.duration_ms is not None else ""
    text += cell(duration, 6, right=True)
    detail = " · ".join(part for part in (line.note, line.reason) if part)
    if detail:
        text.append("  " + detail, style=style or "grey62")
    return cut(text, width)


def _status_style(status: int | None) -> str:
    if status is None:
        return "grey50"
    if status >= 500 or status == 429:
        return "red"
    if status >= 400:
        return "yellow"
    return "green"


def _local_line(line: LocalLine, width: int) -> Text:
    text = Text(clock(line.t) + " ", style="dim")
    text.append("deck  ", style="bold cyan")
    text.append(line.text, style=LEVEL_STYLE.get(line.level, "cyan"))
    return cut(text, width)
