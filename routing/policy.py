"""The selection procedure of SPEC §5, over a per-request view of the usable accounts.

Pure functions: the engine builds one `Candidate` per usable account (O(accounts)) and
asks `keep_failure` whether a bound account may keep its session, `drain_target` whether
it should move to an account whose quota is about to expire, and `choose` which account
should take new work. No sorting beyond the candidates, no history.

Three refinements go beyond the letter of §5; each stops a cache-breaking pattern or a
loss of quota that bench/simulate.py showed:
- A warm session whose account is at its in-flight cap moves only to an account with a
  steady free slot (not one its own warm sessions will claim again in a moment); when no
  account has one, it stays. Otherwise a saturated fleet ping-pongs sessions.
- Step 2 also narrows away from accounts far over their line (never to nothing), so that
  what it picks passes step 1 on the next request.
- Use it or lose it: an account in the last ramp tier is drained. `AccountState.draining`
  lifts its 5h warn band, 5h soft ceiling and switch threshold (it is used until it is
  rejected), and while at least `far_over_line` of its week is unused, warm sessions move
  to it when it has a steady free slot (reason `ramp`).
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
RAMP = "ramp"


@dataclass(frozen=True)
class Candidate:
    """One usable account as the policy sees it at this instant."""

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
    expiring_quota: bool = False  # last ramp tier, at least `far_over_line` of its week unused

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


def has_steady_room(candidate: Candidate) -> bool:
    """A free slot not already claimed by the account's own warm sessions."""
    return max(candidate.inflight, candidate.warm_sessions) < candidate.inflight_cap


def drain_target(
    candidates: Sequence[Candidate], config: RoutingConfig, bound: Candidate
) -> Candidate | None:
    """Use it or lose it: a warm session moves to an account whose unused weekly quota
    expires within the last ramp tier, if that account can take a steady session. The
    cache rewrite is paid from quota that would be lost anyway; once there, the session
    stays until that account is spent or resets."""
    if bound.expiring_quota:
        return None
    targets = [
        c
        for c in candidates
        if c.expiring_quota and c.name != bound.name and c.under_rail and has_steady_room(c)
        and c.warm_sessions < config.max_sessions_per_account
    ]
    if not targets:
        return None
    return max(targets, key=lambda c: (c.rank_score, -c.warm_sessions, c.name))


def _narrow(stage: list[Candidate], keep: list[Candidate]) -> list[Candidate]:
    return keep if keep else stage


def choose(
    candidates: Sequence[Candidate], config: RoutingConfig, bound: Candidate | None = None
) -> Choice:
    """Step 2 of §5: narrow by the 5h rail, then the in-flight cap, then the session cap,
    then away from accounts far over their line, never to nothing; take the best score,
    ties within `pace_tie_band` broken by priority, fewest warm sessions, fewest in
    flight, then name.

    `bound` is the account a warm session is bound to but which failed the keep test. If
    it survives every narrowing step (every other account shares its problem), moving the
    session would break its cache for nothing, so it stays.
    """
    if not candidates:
        raise ValueError("choose() needs at least one candidate")
    stage = list(candidates)
    stage = _narrow(stage, [c for c in stage if c.under_rail])
    if bound is not None and keep_failure(bound) == BLOCKED:
        # A warm session whose account is at its in-flight cap moves only to an account
        # that can take a steady session: a free slot not already claimed by that
        # account's own warm sessions. Moving to a slot freed for a moment would only
        # start a ping-pong of cache-breaking rebinds; if no account can take it, every
        # account is full and the session stays where its cache is.
        movers = [c for c in stage if c.name != bound.name and has_steady_room(c)]
        if not movers:
            return Choice(bound, kept=True, why="every account is at its in-flight cap")
        stage = movers
    stage = _narrow(stage, [c for c in stage if c.has_room])
    stage = _narrow(
        stage,
        [
            c
            for c in stage
            if c.warm_sessions - (1 if bound is not None and c.name == bound.name else 0)
            < config.max_sessions_per_account
        ],
    )
    # What step 2 picks must pass step 1 on the next request, or the session is moved
    # again at once: so avoid accounts far over their line too (never to nothing).
    stage = _narrow(stage, [c for c in stage if not c.far_over_line])
    if bound is not None:
        survivor = next((c for c in stage if c.name == bound.name), None)
        if survivor is not None:
            return Choice(survivor, kept=True, why=_kept_why(survivor))
    best = max(c.rank_score for c in stage)
    if math.isinf(best):
        tied = [c for c in stage if math.isinf(c.rank_score)]
    else:
        tied = [c for c in stage if c.rank_score >= best - config.pace_tie_band]
    winner = min(tied, key=lambda c: (c.priority, c.warm_sessions, c.inflight, c.name))
    return Choice(winner, kept=False, why=describe_pick(winner, len(tied)))


def _kept_why(candidate: Candidate) -> str:
    if not candidate.under_rail:
        return "every account is over its 5h soft ceiling"
    if not candidate.has_room:
        return "every account is at its in-flight cap"
    return "every account is far over its weekly line"


def describe_pick(candidate: Candidate, tied: int = 1) -> str:
    """Why this account: the human half of a decision's detail."""
    if candidate.score is None:
        why = "API key, no weekly line" if candidate.api_key else "no quota data yet: probing"
    elif candidate.boost > 0 and candidate.hours_to_weekly_reset is not None:
        unused = 1.0 - (candidate.util_7d or 0.0)
        why = f"weekly reset in {candidate.hours_to_weekly_reset:.1f}h with {unused:.0%} unused"
    else:
        why = f"furthest behind its weekly line: gap {candidate.gap:+.2f}"
    if tied > 1:
        why += f"; tied with {tied - 1} other(s), fewest warm sessions"
    return why
