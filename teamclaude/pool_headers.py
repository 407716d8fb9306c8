"""`pool_headers: true`: the `anthropic-ratelimit-unified-*` headers toward the client describe
the pool instead of the one account that answered (issue 14 §5), so Claude Code's own quota
warnings and `rate_limits` speak of the pool. Pure apart from editing the given headers.

Replaced: each window's utilization, reset and status, and the overall status, reset and
representative claim. The rest (fallback percentage, overage) passes as the account sent it.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from routing.ratelimits import UNIFIED, window_applies_to_model
from teamclaude.quota import PoolWindow

CLAIMS = {"5h": "five_hour", "7d": "seven_day", "7d_sonnet": "seven_day_sonnet", "7d_oi": "seven_day_opus"}
_SCALARS = ("status", "reset", "representative-claim")
_WINDOW_PARTS = ("utilization", "reset", "status")
_SEVERITY = {"allowed": 0, "allowed_warning": 1, "rejected": 2}


def pool_header_values(windows: Mapping[str, PoolWindow], model: str | None) -> list[tuple[str, str]]:
    """The unified headers for the pool as it is now, for a request for `model`."""
    headers: list[tuple[str, str]] = []
    for window in windows.values():
        if window.utilization is None:
            continue  # no account reported it: nothing to say
        prefix = f"{UNIFIED}{window.name}-"
        headers.append((prefix + "status", window.status))
        if window.reset is not None:
            headers.append((prefix + "reset", str(int(window.reset))))
        headers.append((prefix + "utilization", str(round(window.utilization, 4))))
    applicable = [w for w in windows.values() if w.utilization is not None and window_applies_to_model(w.name, model)]
    if applicable:
        # The claim is the window that binds most: the worst status, then the fullest.
        chosen = max(applicable, key=lambda w: (_SEVERITY[w.status], w.utilization or 0.0))
        headers.append((UNIFIED + "status", chosen.status))
        headers.append((UNIFIED + "representative-claim", CLAIMS.get(chosen.name, chosen.name)))
        if chosen.reset is not None:
            headers.append((UNIFIED + "reset", str(int(chosen.reset))))
    return headers


def _describes_quota(lname: str) -> bool:
    rest = lname[len(UNIFIED):]
    if rest in _SCALARS:
        return True
    if rest.startswith(("overage-", "fallback-")):  # about the account's overage, not a window
        return False
    window, _, part = rest.rpartition("-")
    return bool(window) and part in _WINDOW_PARTS


def apply_pool_headers(headers: MutableMapping[str, str], windows: Mapping[str, PoolWindow],
                       model: str | None) -> dict[str, str]:
    """Put the pool's unified headers in place of the account's; return every unified header
    the account sent (for the flow's metadata). An answer without unified headers (an API
    key answered, or an error before any limit) is left alone, as is a pool with no reading."""
    own = {name.lower(): value for name, value in headers.items() if name.lower().startswith(UNIFIED)}
    replacement = pool_header_values(windows, model)
    if not own or not replacement:
        return {}
    for name in [name for name in own if _describes_quota(name)]:
        del headers[name]
    for name, value in replacement:
        headers[name] = value
    return own
