"""The Deck's bottom lines: the modal of the current mode (a selection, a prompt, the
legend) and the footer with the keys, each cut to the width like every section."""

from __future__ import annotations

from rich.text import Text

from deck.controller import Ui
from deck.sections import cell, cut

_MODAL_TITLES = {
    "switch": "Switch account (pins requests without a session)",
    "remove": "Remove which account?",
    "toggle": "Disable or enable which account? (turns it the other way)",
    "priority": "Set the priority of which account? (lower goes first among equals)",
    "add": "Add an account",
}


def modal_lines(ui: Ui, width: int, room: int) -> list[Text]:
    """The selection list or prompt of the current mode, at most `room` lines."""
    if ui.mode == "normal" or room <= 0:
        return []
    if ui.mode == "legend":
        return legend_lines(width, room)
    if ui.mode == "confirm-remove":
        prompt = Text(f"Remove {ui.target} from the accounts file? ", style="bold yellow")
        return [cut(prompt + Text("y / n", style="bold"), width)]
    if ui.mode == "api-key":
        typed = "•" * min(len(ui.secret), 24)
        return [cut(Text("API key (hidden): ", style="bold") + Text(typed + "▏"), width)]
    if ui.mode == "priority-value":
        prompt = Text(f"Priority for {ui.target} (an integer, lower first; default 0): ", style="bold")
        return [cut(prompt + Text(ui.typed + "▏"), width)]
    if ui.mode == "api-name":
        prompt = Text("Name for this API key (empty: automatic): ", style="bold")
        return [cut(prompt + Text(ui.typed + "▏"), width)]
    lines = [cut(Text(_MODAL_TITLES.get(ui.mode, ui.mode), style="bold reverse"), width)]
    visible = max(1, room - 1)
    first = max(0, min(ui.cursor - visible // 2, len(ui.options) - visible))
    for index in range(first, min(len(ui.options), first + visible)):
        chosen = index == ui.cursor
        text = Text((" › " if chosen else "   ") + ui.options[index], style="reverse bold" if chosen else "")
        lines.append(cut(text, width))
    return lines


# What the Deck's numbers and signs mean (the `?` key), one line each.
LEGEND = (
    ("headroom N", "sessions the pool can still take: 3 per live account − warm sessions"),
    ("", "(negative: more warm sessions than that; new ones may have to wait)"),
    ("live a/b", "accounts that can serve now / all accounts"),
    ("live ~ ⚙", "active session: ~ a request in flight, ⚙ a tool running; idle: quiet"),
    ("◆ · Σ", "tree: ◆ a lead with workers or agents, · a worker, Σ its subtree's tokens"),
    ("⤷ bg", "⤷ a subagent (from traffic), bg a background session (claude --bg)"),
    ("↑ ↓ →", "7-day pace: ↑ behind its line (wants work), ↓ ahead, → on the line"),
    ("↻ ⚑", "↻ time to a window's reset; ⚑ the pinned issue needs you"),
)


def legend_lines(width: int, room: int) -> list[Text]:
    lines = [cut(Text("Legend (any key closes)", style="bold reverse"), width)]
    for key, meaning in LEGEND:
        lines.append(cut(cell(key, 11, style="bold") + Text(" " + meaning), width))
    return lines[:max(0, room)]


def footer_line(ui: Ui, width: int) -> Text:
    if ui.selecting:
        hint = "j/k ↑/↓ move · Enter choose · Esc cancel"
    elif ui.mode in ("api-key", "api-name", "priority-value"):
        hint = "Enter continue · Esc cancel"
    elif ui.mode == "confirm-remove":
        hint = "y remove · n / Esc keep"
    elif ui.mode == "legend":
        hint = "any key closes the legend · q quit"
    else:
        hint = _normal_footer(ui, width)
    return cut(Text(hint, style="dim"), width)


def _normal_footer(ui: Ui, width: int) -> str:
    """The keys, shorter as the terminal narrows; `q quit` and `? legend` always in sight."""
    bell = "on" if ui.bell else "off"
    issues = "collapse" if ui.issues_expanded else "expand"
    for hint in (
        f"s switch · d disable/enable · p priority · a add · r remove · R reload · b bell ({bell}) · "
        f"i issues ({issues}) · ? legend · q quit",
        "s switch · d dis/enable · p priority · a add · r remove · R reload · b bell · i issues · ? legend · q quit",
        "s switch · d dis/enable · p prio · a add · r remove · R reload · ? legend · q quit",
        "keys: s d p a r R b i · ? legend · q quit",
    ):
        if len(hint) <= width:
            return hint
    return "? legend · q quit"
