"""Small text formatters shared by the Deck's views (numbers, money, durations, emoji)."""

from __future__ import annotations

# Single-codepoint, double-width pictographs only: no variation selectors or joiners, so
# every terminal gives each the same two cells.
SESSION_EMOJI = (
    "🦊", "🐙", "🦉", "🐝", "🐢", "🦀", "🐳", "🦋", "🐧", "🦁", "🐸", "🐼", "🦄", "🐨",
    "🐯", "🐰", "🐻", "🐮", "🐷", "🐵", "🦈", "🐬", "🦜", "🐞", "🌵", "🍄", "🌻", "🍀",
    "🍉", "🍋", "🍒", "🚀",
)


def session_emoji(sid: str) -> str:
    """The same emoji for a session id in every run (not Python's randomised hash)."""
    import hashlib  # here: `teamclaude statusline` uses this module and must start fast

    digest = hashlib.sha1(sid.encode("utf-8")).digest()
    return SESSION_EMOJI[int.from_bytes(digest[:4], "big") % len(SESSION_EMOJI)]


def tokens(count: int | float) -> str:
    value = float(count)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.1f}{suffix}" if abs(scaled) < 100 else f"{scaled:.0f}{suffix}"
    return f"{int(value)}"


def money(usd: float) -> str:
    if usd >= 1000:
        return f"${usd:,.0f}"
    return f"${usd:.2f}"


def duration(seconds: float) -> str:
    """Compact countdown: 45s, 12m05s, 3h07m, 2d04h."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def short_id(sid: str, length: int = 8) -> str:
    return sid[:length]


def short_account(name: str) -> str:
    """`alice@example.com` → `alice`: enough to tell accounts apart on a crowded row."""
    return name.split("@", 1)[0] if "@" in name else name
