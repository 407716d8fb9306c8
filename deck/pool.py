"""The Deck's view of a shared pool (the `shared_state` setting; the state file's `shared`).

Two pieces, both empty for a proxy that is not part of a pool: the header's health lines
(in step, or DEGRADED: since when, why, and that routing uses this proxy's own view), and
the pool section: one line per proxy with what it serves, and the pool's total usage.
Which proxy serves a conversation in the tree is decided in `deck.fleet.served_by`.
"""

from __future__ import annotations

from collections import Counter

from rich.text import Text

from deck import fmt
from deck.model import Instance, Shared, State
from deck.sections import append_whole, cut

ERROR_CHARS = 120  # an error beyond this is not "in short" any more
DEGRADED_STYLE = "bold white on red"


def health_lines(state: State | None, now: float, width: int) -> list[Text]:
    """The header's word on the shared state: one green line in step, two red ones when not."""
    shared = state.shared if state is not None else None
    if shared is None:
        return []
    if shared.healthy:
        line = Text("⇄ shared pool ")
        line.append("in step", style="bold green")
        line.append(f" · {_proxies(shared)}")
        append_whole(line, f"  {shared.url}", width, style="dim")
        return [cut(line, width)]
    since = f" for {fmt.duration(now - shared.degraded_since)}" if shared.degraded_since is not None else ""
    alarm = Text(f"⚠ SHARED POOL DEGRADED{since}: serving from this proxy's own view", style=DEGRADED_STYLE)
    why = Text(f"  {short_error(shared.error) or 'not connected'}", style="red")
    append_whole(why, f"  {shared.url}", width, style="dim")
    return [cut(alarm, width), cut(why, width)]


def short_error(error: str) -> str:
    """The error on one line, at most ERROR_CHARS long."""
    text = " ".join(error.split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def _proxies(shared: Shared) -> str:
    reporting = len(shared.reporting)
    stopped = len(shared.instances) - reporting
    text = f"{reporting} prox{'y' if reporting == 1 else 'ies'}"
    return text + (f", {stopped} stopped reporting" if stopped else "")


def section_lines(state: State | None, now: float, width: int, room: int) -> list[Text]:
    """The pool section in at most `room` lines: a title with the pool's totals, then one
    line per proxy (this one first, those that stopped reporting last)."""
    shared = state.shared if state is not None else None
    if state is None or shared is None or room < 2:
        return []
    here = {session.id for session in state.sessions}
    order = sorted(zip(shared.instances, shared.tags(), strict=True),
                   key=lambda pair: (not pair[0].this, pair[0].stopped, pair[1], -(pair[0].seen or 0.0)))
    lines = [_title(shared, width)]
    lines += [_proxy_line(instance, tag, here, now, width) for instance, tag in order]
    if len(lines) > room:
        more = Text(f"  … {len(lines) - room + 1} more proxies", style="dim")
        lines = lines[: room - 1] + [cut(more, width)]
    return lines


def _title(shared: Shared, width: int) -> Text:
    line = Text("Pool", style="bold underline")
    total = shared.total
    line.append(f" · {fmt.tokens(total.requests)} req · {fmt.tokens(total.tokens)} tok · "
                f"{fmt.money(total.cost_usd)} in total · {_proxies(shared)}")
    if not shared.healthy:
        line.append(" (as last seen)", style="red")
    return cut(line, width)


def _proxy_line(instance: Instance, tag: str, here: set[str], now: float, width: int) -> Text:
    """`● laptop-ana pid 41234 (this) · 2 in flight · 1 held · 3 warm: alice 2, bob 1`; for
    another proxy, how many of its warm sessions this state file does not list."""
    if instance.stopped:
        ago = f" {fmt.duration(now - instance.seen)} ago" if instance.seen is not None else ""
        line = Text(f"  ● {_name(instance, tag)} stopped reporting{ago}", style="red")
        return cut(line, width)
    line = Text("  ● ", style="green")
    line.append(_name(instance, tag), style="bold" if instance.this else "")
    if instance.this:
        line.append(" (this)", style="cyan")
    line.append(f" · {instance.inflight} in flight", style="cyan" if instance.inflight else "")
    if instance.held:
        line.append(f" · {instance.held} held", style="yellow")
    line.append(f" · {_warm(instance)}")
    if not instance.this:
        elsewhere = sum(1 for conversation in instance.conversations if conversation.session not in here)
        if elsewhere:
            line.append(f" ({elsewhere} not here)", style="grey62")
    return cut(line, width)


def _name(instance: Instance, tag: str) -> str:
    """`laptop-ana pid 41234` (the tag already names the pid when hosts repeat)."""
    if instance.pid is None or tag.endswith(f":{instance.pid}"):
        return tag
    return f"{tag} pid {instance.pid}"


def _warm(instance: Instance) -> str:
    """`3 warm: alice 2, bob 1`: its warm conversations and the accounts they are on."""
    count = len(instance.conversations)
    accounts = Counter(fmt.short_account(c.account) or "?" for c in instance.conversations)
    on = ", ".join(f"{name} {n}" for name, n in sorted(accounts.items(), key=lambda item: (-item[1], item[0])))
    return f"{count} warm" + (f": {on}" if on else "")
