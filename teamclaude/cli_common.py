"""What the CLI modules share: the user-error type and small text formatters."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from teamclaude.statefile import token_problem


class CommandError(Exception):
    """A user-facing failure of a command: its message is printed as one line, no traceback."""


def proxy_status_cell(account: dict[str, Any], now: float) -> str:
    """The running proxy's status word for an account (rich markup), one wording for
    `teamclaude status` and `teamclaude accounts`: ok, unknown (no answer seen yet),
    benched 4m (reason), needs login, disabled."""
    status = str(account.get("status", "?"))
    if account.get("needs_login") or status == "needs-login":
        return "[red]needs login[/] (teamclaude login)"
    problem = token_problem(account)
    if problem is not None:
        return f"[red]{escape(problem)}[/]"
    if status == "benched":
        until = account.get("bench_until")
        reason = account.get("bench_reason")
        text = "[yellow]benched[/]"
        if isinstance(until, (int, float)):
            text += f" {duration(until - now)}"
        return text + (f" ({reason})" if reason else "")
    if status == "unknown":
        return "[dim]unknown[/] (no answer yet)"
    colour = {"ok": "green", "disabled": "dim"}.get(status, "yellow")
    return f"[{colour}]{status}[/]"


def duration(seconds: float) -> str:
    """Compact duration: 45s, 12m, 3h 05m, 2d 4h."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def relative(epoch_s: float | None, now: float) -> str:
    """'in 3h 05m' or '12m ago'; '–' when unknown."""
    if epoch_s is None:
        return "–"
    delta = epoch_s - now
    return f"in {duration(delta)}" if delta >= 0 else f"{duration(-delta)} ago"


def percent(fraction: float | None) -> str:
    return "–" if fraction is None else f"{fraction * 100:.0f}%"


def tokens(count: float | None) -> str:
    if count is None:
        return "–"
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    if count >= 10_000:
        return f"{count / 1000:.0f}k"
    if count >= 1000:
        return f"{count / 1000:.1f}k"
    return f"{count:.0f}"


def dollars(amount: float | None) -> str:
    return "–" if amount is None else f"${amount:,.2f}"
