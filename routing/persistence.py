"""What survives a restart (behaviour §8.3): usage totals, burn buckets, learned caps and the
last quota windows. Benches, in-flight counts and streaks do not.

The saved form is plain JSON kept under `persist` in the state file. Reading it is
tolerant: a file from an older version or a hand-damaged one loses only the parts that do
not validate, never the proxy's start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.account_state import AccountState, UsageTotals, believable
from routing.capacity import BurnMeter, LearnedCap
from routing.ratelimits import STATUSES, Window

FORMAT_VERSION = 1


@dataclass
class Saved:
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: UsageTotals | None = None
    models: dict[str, UsageTotals] = field(default_factory=dict)


def _window_dict(window: Window, seen: float | None) -> dict[str, Any]:
    return {"utilization": window.utilization, "reset": window.reset, "status": window.status, "seen": seen}


def export_account(state: AccountState, now: float) -> dict[str, Any]:
    return {
        "usage": state.usage.as_dict(),
        "burn": state.burn.export(now),
        "cap": state.cap.export(),
        "windows": {name: _window_dict(w, state.seen.get(name)) for name, w in state.live_windows(now).items()},
    }


def export_router(
    accounts: Mapping[str, AccountState],
    pending: Mapping[str, dict[str, Any]],
    totals: UsageTotals,
    models: Mapping[str, UsageTotals],
    now: float,
) -> dict[str, Any]:
    saved_accounts = dict(pending)
    saved_accounts.update({name: export_account(s, now) for name, s in accounts.items()})
    return {
        "version": FORMAT_VERSION,
        "saved_at": now,
        "accounts": saved_accounts,
        "totals": totals.as_dict(),
        "models": {model: t.as_dict() for model, t in models.items()},
    }


def parse(data: object) -> Saved:
    """The parts of saved data that have the right shape; the rest is dropped."""
    saved = Saved()
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        return saved
    accounts = data.get("accounts")
    if isinstance(accounts, dict):
        saved.accounts = {
            name: value
            for name, value in accounts.items()
            if isinstance(name, str) and isinstance(value, dict)
        }
    if isinstance(data.get("totals"), dict):
        saved.totals = UsageTotals.restore(data["totals"])
    models = data.get("models")
    if isinstance(models, dict):
        saved.models = {
            model: UsageTotals.restore(value)
            for model, value in models.items()
            if isinstance(model, str) and isinstance(value, dict)
        }
    return saved


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _restore_seen(data: object, now: float) -> float:
    """When a saved window was seen: a window without a usable reset ends one window
    length after that (an older file has no such field: then it counts from now)."""
    seen = _number(data.get("seen")) if isinstance(data, dict) else None
    return seen if seen is not None and seen <= now else now


def _restore_window(data: object) -> Window | None:
    if not isinstance(data, dict):
        return None
    utilization = _number(data.get("utilization"))
    reset = _number(data.get("reset"))
    status = data.get("status")
    if utilization is not None and utilization < 0:
        utilization = None
    if status not in STATUSES:
        status = None
    if utilization is None and reset is None and status is None:
        return None
    return Window(utilization=utilization, reset=reset, status=status)


def restore_account(state: AccountState, data: dict[str, Any], now: float) -> None:
    """Load one account's saved data into a fresh state; windows already reset are dropped."""
    if isinstance(data.get("usage"), dict):
        state.usage = UsageTotals.restore(data["usage"])
    state.burn = BurnMeter.restore(data.get("burn"), now)
    state.cap = LearnedCap.restore(data.get("cap"))
    state.version += 1
    windows = data.get("windows")
    if isinstance(windows, dict):
        for name, value in windows.items():
            window = _restore_window(value)
            if not isinstance(name, str) or window is None:
                continue
            if window.reset is not None and window.reset <= now:
                continue
            state.windows[name] = believable(name, window, now)
            state.seen[name] = _restore_seen(value, now)
        state.live_windows(now)  # drop those that ended while the proxy was down
