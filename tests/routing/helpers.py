"""Shared builders for routing tests: accounts, requests and Anthropic-shaped headers."""

from __future__ import annotations

from routing.config import RoutingConfig
from routing.engine import Router
from routing.ratelimits import RateLimits, parse_ratelimit_headers
from routing.types import AccountSpec, RequestInfo

T0 = 1_800_000_000.0
HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY


def oauth(name: str, **kwargs: object) -> AccountSpec:
    return AccountSpec(name=name, kind="oauth", **kwargs)  # type: ignore[arg-type]


def apikey(name: str, **kwargs: object) -> AccountSpec:
    return AccountSpec(name=name, kind="apikey", **kwargs)  # type: ignore[arg-type]


def req(session: str | None = None, model: str | None = "claude-opus-4-5") -> RequestInfo:
    return RequestInfo(path="/v1/messages", model=model, stream=True, session_id=session)


def limits(
    now: float,
    *,
    u5: float | None = 0.1,
    u7: float | None = 0.1,
    reset5_in: float = 3 * HOUR,
    reset7_in: float = 3.5 * DAY,
    s5: str = "allowed",
    s7: str = "allowed",
    extra: dict[str, str] | None = None,
) -> RateLimits:
    """Unified headers as Anthropic sends them, parsed by the real parser."""
    headers: list[tuple[str, str]] = []
    prefix = "anthropic-ratelimit-unified-"
    if u5 is not None:
        headers += [
            (prefix + "5h-utilization", str(u5)),
            (prefix + "5h-reset", str(int(now + reset5_in))),
            (prefix + "5h-status", s5),
        ]
    if u7 is not None:
        headers += [
            (prefix + "7d-utilization", str(u7)),
            (prefix + "7d-reset", str(int(now + reset7_in))),
            (prefix + "7d-status", s7),
        ]
    headers.append((prefix + "status", "rejected" if "rejected" in (s5, s7) else "allowed"))
    for name, value in (extra or {}).items():
        headers.append((name, value))
    return parse_ratelimit_headers(headers)


def router(*specs: AccountSpec, **config: object) -> Router:
    return Router(RoutingConfig(**config), specs)  # type: ignore[arg-type]


def prove(r: Router, name: str, now: float, **kw: object) -> None:
    """One successful response on `name` with the given window values."""
    r.observe(name, 200, limits(now, **kw), now)  # type: ignore[arg-type]
