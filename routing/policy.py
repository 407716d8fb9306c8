"""The selection procedure of behaviour §5, over a per-request view of the usable accounts.

Pure functions: the engine builds one `Candidate` per usable account (O(accounts)) and
asks `keep_failure` whether the sticky account of requests without a session may keep
them, `leaves_line` whether a warm conversation's account is too far past its line, and
`choose` which account should take new work. No sorting beyond the candidates, no history.

Three refinements go beyond the letter of §5; each stops a cache-breaking pattern or a
loss of quota that bench/simulate.py showed:
- A warm session that fails step 1 moves only to an account that passes step 1 with room
  to spare (`can_take_session`); when none does, it stays. Sequential narrowing "never to
  nothing" would otherwise bounce sessions between accounts that each fail a different
  test (a slot freed for a moment, an account just under its line).
- For new work, step 2 also narrows away from accounts far over their line (never to
  nothing), so that what it picks passes step 1 on the next request.
- Use it or lose it: an account in the last ramp tier is drained. `AccountState.facts`
  lifts its 5h soft ceiling and switch threshold (it is used until it is rejected); its
  ramp boost draws new conversations (warm ones are not moved to it: issue 13).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from routing.config import RoutingConfig

# Reasons (docs/state-file.md).
BOUND = "bound"
NEW_SESSION = "new-session"
WINDOW_LAPSED = "window-lapsed"
BLOCKED = "blocked"
FAR_OVER_LINE = "far-over-line"
RAIL = "rail"
CURRENT = "current"
PINNED = "pinned"
API_KEY_LAST_RESORT = "api-key-last-resort"
CLIENT_PIN = "client-pin"  # the client's x-teamclaude-account moved its conversation
DETOUR = "detour"  # this one request served elsewhere; the conversation's binding stays
# A warm conversation leaves an account only this many times `far_over_line` past its
# line, while new work already avoids it at 1x and a target must be within 0.5x: the
# hysteresis keeps a conversation from being moved back and forth around the line.
LEAVE_LINE_FACTOR = 1.5


@dataclass(slots=True)
class Candidate:
    """One usable account as the policy sees it at this instant. The engine keeps one per
    account between requests and refreshes `inflight` and `warm_sessions` before each use;
    the policy only reads it."""

    name: str
    api_key: bool
    priority: int
    score: float | None  # gap + ramp boost; None = no weekly data yet
    gap: float | None
    boost: float
    util_5h: float | None
    util_7d: float | None
    hours_to_weekly_reset: float | None
    under_rail: bool
    inflight: int
    inflight_cap: int
    warm_sessions: int
    far_over_line: bool

    @property
    def has_room(self) -> bool:
        return self.inflight < self.inflight_cap

    @property
    def rank_score(self) -> float:
        """Accounts without weekly data rank above all others (self-priming); an API key
        has no weekly line and ranks as exactly on it."""
        if self.score is not None:
            return self.score
        return 0.0 if self.api_key else math.inf


@dataclass(frozen=True)
class Choice:
    candidate: Candidate
    kept: bool  # the bound account was kept although it failed the keep test
    why: str


def keep_failure(candidate: Candidate) -> str | None:
    """Why a warm binding may not stay on its account (None: it stays). Step 1 of §5."""
    if not candidate.under_rail:
        return RAIL
    if not candidate.has_room:
        return BLOCKED
    if candidate.far_over_line:
        return FAR_OVER_LINE
    return None


def leaves_line(candidate: Candidate, config: RoutingConfig) -> bool:
    """A warm conversation's account is so far past its weekly line that it should move."""
    return candidate.gap is not None and -candidate.gap > config.far_over_line * LEAVE_LINE_FACTOR


def has_steady_room(candidate: Candidate) -> bool:
    """A free slot not already claimed by the account's own warm sessions."""
    return max(candidate.inflight, candidate.warm_sessions) < candidate.inflight_cap


def _narrow(stage: list[Candidate], keep: list[Candidate]) -> list[Candidate]:
    return keep if keep else stage


def can_take_session(candidate: Candidate, config: RoutingConfig) -> bool:
    """Could this account take a warm session from elsewhere and keep it?

    It must pass step 1 with room to spare: under the 5h rail, a steady free slot (one its
    own warm sessions will not claim back in a moment), under the session cap, and at
    least half the band clear of far-over-line. Anything less and the moved session would
    be moved again soon, paying a second cache rewrite.
    """
    return (
        candidate.under_rail
        and has_steady_room(candidate)
        and candidate.warm_sessions < config.max_sessions_per_account
        and (candidate.gap is None or candidate.gap >= -config.far_over_line / 2)
    )


def choose(
    candidates: Sequence[Candidate], config: RoutingConfig, bound: Candidate | None = None
) -> Choice:
    """Step 2 of §5.

    New work: narrow by the 5h rail, then the in-flight cap, then the session cap, then
    away from accounts far over their line, never to nothing; take the best score, ties
    within `pace_tie_band` broken by priority, fewest warm sessions, fewest in flight,
    then name.

    `bound` is the account a warm session is bound to but which failed the keep test. It
    moves only to an account that can take it for good (`can_take_session`), the best of
    those by the same ranking; if none can, every other account shares its problem and
    moving would break the session's cache for nothing, so it stays.
    """
    if not candidates:
        raise ValueError("choose() needs at least one candidate")
    if bound is not None:
        targets = [c for c in candidates if c.name != bound.name and can_take_session(c, config)]
        if not targets:
            return Choice(bound, kept=True, why="no other account can take it for good")
        return _best(targets, config)
    stage = list(candidates)
    stage = _narrow(stage, [c for c in stage if c.under_rail])
    # An account far over its weekly line is kept for later: new work avoids it before the
    # load-spreading caps narrow further (never to nothing).
    stage = _narrow(stage, [c for c in stage if not c.far_over_line])
    stage = _narrow(stage, [c for c in stage if c.has_room])
    stage = _narrow(stage, [c for c in stage if c.warm_sessions < config.max_sessions_per_account])
    return _best(stage, config)


def _best(stage: list[Candidate], config: RoutingConfig) -> Choice:
    best = max(c.rank_score for c in stage)
    if math.isinf(best):
        tied = [c for c in stage if math.isinf(c.rank_score)]
    else:
        tied = [c for c in stage if c.rank_score >= best - config.pace_tie_band]
    winner = min(tied, key=lambda c: (c.priority, c.warm_sessions, c.inflight, c.name))
    by_priority = any(c.priority != winner.priority for c in tied)
    return Choice(winner, kept=False, why=describe_pick(winner, len(tied), by_priority))


def describe_pick(candidate: Candidate, tied: int = 1, by_priority: bool = False) -> str:
    """Why this account: the human half of a decision's detail."""
    if candidate.score is None:
        why = "API key, no weekly line" if candidate.api_key else "no quota data yet: probing"
    elif candidate.boost > 0 and candidate.hours_to_weekly_reset is not None:
        unused = 1.0 - (candidate.util_7d or 0.0)
        why = f"weekly reset in {candidate.hours_to_weekly_reset:.1f}h with {unused:.0%} unused"
    else:
        why = f"furthest behind its weekly line: gap {candidate.gap:+.2f}"
    if tied > 1:
        then = f"priority {candidate.priority} first" if by_priority else "fewest warm sessions"
        why += f"; tied with {tied - 1} other(s), {then}"
    return why
