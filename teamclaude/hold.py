"""Holding requests while every account is throttled (behaviour §6.4)."""

from __future__ import annotations

import asyncio
import itertools
import math
import time

from teamclaude import errors

# A held request keeps a minute for its answer, inside mitmproxy's idle cut (`tcp_timeout`).
ANSWER_MARGIN_S = 60


def hold_ceiling_s(tcp_timeout_s: float) -> float:
    """The longest a request may be held with mitmproxy's idle cut at `tcp_timeout_s` (the
    settings already keep the budget inside Claude Code's own 600 s)."""
    return max(0.0, tcp_timeout_s - ANSWER_MARGIN_S)


class Waker:
    """Wakes every waiting request at once when capacity may have come back."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        event = self._event
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await event.wait()
        except TimeoutError:
            pass


class Holds:
    """The requests waiting for an account now: how many, since when, when they next look."""

    def __init__(self) -> None:
        self._since: dict[int, float] = {}
        self._wake: dict[int, float] = {}
        self._tokens = itertools.count()

    def begin(self, now: float) -> int:
        token = next(self._tokens)
        self._since[token] = now
        return token

    def waking_at(self, token: int, when: float) -> None:
        self._wake[token] = when

    def end(self, token: int) -> None:
        self._since.pop(token, None)
        self._wake.pop(token, None)

    def summary(self, now: float) -> dict[str, float | int | None]:
        """`{"count", "oldest_wait_s", "next_wake_at"}` for the status, capacity and the Deck."""
        oldest = min(self._since.values(), default=None)
        return {
            "count": len(self._since),
            "oldest_wait_s": round(now - oldest, 1) if oldest is not None else None,
            "next_wake_at": min(self._wake.values(), default=None),
        }


def retry_after_seconds(free_at: float | None, now: float, ceiling: int) -> int:
    """Seconds to the soonest reset, clamped to [1, ceiling] (Claude Code gives up above 60)."""
    if free_at is None:
        return ceiling
    return int(min(max(1, math.ceil(free_at - now)), ceiling))


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def throttled_message(accounts: int, soonest: tuple[str, float] | None, now: float, held_s: float) -> str:
    if accounts == 1:
        text = "teamclaude: the one account that may serve this request is throttled"
    else:
        text = f"teamclaude: all {accounts} accounts that may serve this request are throttled"
    if soonest is not None:
        name, at = soonest
        stamp = time.strftime("%H:%M UTC", time.gmtime(at))
        text += f"; the soonest, {name}, frees up in {_duration(at - now)} (at {stamp})"
    if held_s >= 1:
        text += f"; this request was held {_duration(held_s)}"
    return text + "."


def throttled_response_parts(
    accounts: int, soonest: tuple[str, float] | None, now: float, held_s: float, ceiling: int
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of the 429 a client gets when no account can serve."""
    body = errors.error_body("rate_limit_error", throttled_message(accounts, soonest, now, held_s))
    headers = {
        **errors.JSON_HEADERS,
        "retry-after": str(retry_after_seconds(soonest[1] if soonest else None, now, ceiling)),
        "x-should-retry": "true",
    }
    return body, headers
