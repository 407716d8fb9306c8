"""The pool's quota per window: what `GET /teamclaude/quota`, `teamclaude statusline` and the
pool headers say (issue 14 §5). Pure: accounts in the state file's shape in, numbers out.

Only subscription (OAuth) accounts that can serve count: API-key accounts have no unified
windows, and a disabled account or one waiting for a new login adds nothing to the pool.

Pooled utilization is the plan-weighted mean of the accounts' utilizations, the weight being
the plan's size relative to Pro (`PLAN_WEIGHT`). A Max account at 50 % has used about five
times the tokens a Pro account at 50 % has, so the weighted mean is the share of the pool's
tokens used, as far as limits scale with the plan. The profile says `max` without telling 5x
from 20x: such an account counts as 5x (the pool is never shown emptier than it may be).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from routing.ratelimits import window_applies_to_model

# Plan size relative to Pro; an unknown plan counts as 1.
PLAN_WEIGHT = {"pro": 1.0, "team": 1.0, "enterprise": 1.0, "max": 5.0, "max_5x": 5.0, "max_20x": 20.0}
# From this pooled utilization on, a window is `allowed_warning` (as Anthropic warns an account).
WARNING_FROM = 0.8
MAIN_WINDOWS = ("5h", "7d")


def plan_weight(plan: object) -> float:
    return PLAN_WEIGHT.get(plan.lower(), 1.0) if isinstance(plan, str) else 1.0


class PoolWindow(NamedTuple):  # not a dataclass: `teamclaude statusline` must start fast
    name: str
    utilization: float | None  # plan-weighted mean over the accounts that reported it
    reset: float | None  # the soonest reset still ahead, epoch seconds
    with_room: int  # accounts not rejected and under 100 % (no reading yet counts as room)
    accounts: int  # accounts in the pool
    reporting: int  # accounts with a reading of this window

    @property
    def status(self) -> str:
        """Like a unified window's status: rejected when no account has room."""
        if self.accounts and not self.with_room:
            return "rejected"
        if self.utilization is not None and self.utilization >= WARNING_FROM:
            return "allowed_warning"
        return "allowed"

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "utilization": None if self.utilization is None else round(self.utilization, 4),
            "reset": self.reset,
            "resetSec": None if self.reset is None else round(max(0.0, self.reset - now)),
            "status": self.status,
            "withRoom": self.with_room,
            "accounts": self.accounts,
            "reporting": self.reporting,
        }


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def pool_members(accounts: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The accounts whose quota is the pool's: OAuth, enabled, not waiting for a login."""
    return [
        account for account in accounts
        if isinstance(account, Mapping) and account.get("kind") == "oauth"
        and not account.get("disabled") and not account.get("needs_login")
        and account.get("status") not in ("disabled", "needs-login")
    ]


def _reading(raw: object, now: float) -> tuple[float, float | None, bool] | None:
    """(utilization, reset, rejected) of one account's window; a passed reset reads as a fresh
    window (0 %); None when the window says nothing usable."""
    if not isinstance(raw, Mapping):
        return None
    utilization, reset = _number(raw.get("utilization")), _number(raw.get("reset"))
    rejected = raw.get("status") == "rejected"
    if reset is not None and reset <= now:
        return 0.0, None, False
    if rejected:
        return max(utilization or 0.0, 1.0), reset, True
    if utilization is None:
        return None
    return utilization, reset, False


def pool_windows(accounts: Iterable[Any], now: float) -> dict[str, PoolWindow]:
    """Every window any pool account reported (5h and 7d always), 5h and 7d first."""
    members = pool_members(accounts)
    names = {name for account in members for name in (account.get("windows") or {}) if isinstance(name, str)}
    ordered = list(MAIN_WINDOWS) + sorted(names - set(MAIN_WINDOWS))
    result = {}
    for name in ordered:
        weighted = weights = 0.0
        soonest: float | None = None
        room = reporting = 0
        for account in members:
            windows = account.get("windows")
            reading = _reading(windows.get(name) if isinstance(windows, Mapping) else None, now)
            if reading is None:
                room += 1
                continue
            utilization, reset, rejected = reading
            weight = plan_weight(account.get("plan"))
            weighted += weight * utilization
            weights += weight
            reporting += 1
            room += not rejected and utilization < 1.0
            if reset is not None and (soonest is None or reset < soonest):
                soonest = reset
        result[name] = PoolWindow(name, weighted / weights if weights else None, soonest, room, len(members), reporting)
    return result


def accounts_with_room(accounts: Iterable[Any], now: float, model: str | None = None) -> int:
    """Pool accounts with room in every window that binds `model` (None: 5h and 7d and the
    windows of no model family)."""
    count = 0
    for account in pool_members(accounts):
        windows = account.get("windows")
        windows = windows if isinstance(windows, Mapping) else {}
        full = False
        for name, raw in windows.items():
            if not isinstance(name, str) or not window_applies_to_model(name, model):
                continue
            reading = _reading(raw, now)
            if reading is not None and (reading[2] or reading[0] >= 1.0):
                full = True
                break
        count += not full
    return count


def quota_document(accounts: Iterable[Any], now: float) -> dict[str, Any]:
    """The answer of `GET /teamclaude/quota`."""
    members = pool_members(accounts)
    return {
        "at": now,
        "accounts": len(members),
        "withRoom": accounts_with_room(members, now),
        "weights": {str(account.get("name")): plan_weight(account.get("plan")) for account in members},
        "windows": {name: window.as_dict(now) for name, window in pool_windows(members, now).items()},
    }
