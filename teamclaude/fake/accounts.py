"""Simulated accounts of the fake upstream and the rate-limit headers they produce.

The header math mirrors Anthropic's unified rate limits (behaviour §4): every window has a
budget, a used count and a reset; utilization = used / budget; status `allowed` below 0.8,
`allowed_warning` from 0.8, `rejected` at 1.0 and above. Pure functions plus one small
per-minute meter for API-key accounts; no I/O, time is always passed in.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

FIVE_HOURS_S = 5 * 3600
SEVEN_DAYS_S = 7 * 86400

WARNING_AT = 0.8
REJECTED_AT = 1.0

UNIFIED = "anthropic-ratelimit-unified-"

# Window name in headers -> representative-claim value.
CLAIMS = {
    "5h": "five_hour",
    "7d": "seven_day",
    "7d_sonnet": "seven_day_sonnet",
    "7d_oi": "seven_day_opus",
}
# Model-scoped windows and the model family whose usage they count.
MODEL_WINDOW_FAMILY = {"7d_sonnet": "sonnet", "7d_oi": "opus"}
WINDOW_NAMES = tuple(CLAIMS)

DEMO_TOKEN_PREFIX = "sk-ant-oat01-demo-"
DEMO_REFRESH_PREFIX = "sk-ant-ort01-demo-"


@dataclass
class FakeAccount:
    """One simulated account. OAuth when it has an access or refresh token, else API key.

    Model windows (`model_windows`, budgets keyed `7d_sonnet` / `7d_oi`) share the 7-day
    reset unless `model_windows_reset` names their own.
    """

    name: str
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    email: str | None = None
    org: str = "Fake Org"
    org_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    plan: str = "max"
    five_hour_budget: int = 2_000_000
    seven_day_budget: int = 20_000_000
    five_hour_used: int = 0
    seven_day_used: int = 0
    five_hour_reset: float | None = None
    seven_day_reset: float | None = None
    model_windows: dict[str, int] = field(default_factory=dict)
    model_windows_used: dict[str, int] = field(default_factory=dict)
    model_windows_reset: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for window in self.model_windows:
            if window not in MODEL_WINDOW_FAMILY:
                raise ValueError(
                    f"account {self.name!r}: unknown model window {window!r} "
                    f"(use one of {', '.join(MODEL_WINDOW_FAMILY)})"
                )

    @property
    def is_oauth(self) -> bool:
        return self.access_token is not None or self.refresh_token is not None


@dataclass(frozen=True)
class WindowState:
    """A window as the headers describe it at one moment."""

    name: str
    used: int
    budget: int
    reset: float

    @property
    def utilization(self) -> float:
        if self.budget <= 0:
            return REJECTED_AT
        return self.used / self.budget

    @property
    def status(self) -> str:
        return window_status(self.utilization)


def window_status(utilization: float) -> str:
    if utilization >= REJECTED_AT:
        return "rejected"
    if utilization >= WARNING_AT:
        return "allowed_warning"
    return "allowed"


def model_family(model: str | None) -> str | None:
    if not model:
        return None
    lowered = model.lower()
    for family in ("opus", "sonnet", "haiku"):
        if family in lowered:
            return family
    return None


def window_applies(window: str, model: str | None) -> bool:
    family = MODEL_WINDOW_FAMILY.get(window)
    return family is None or family == model_family(model)


def _advance(reset: float, period: float, now: float) -> float:
    """The first reset after `now` on the same cadence as `reset` (which has passed)."""
    periods = int((now - reset) // period) + 1
    return reset + periods * period


def roll_windows(acct: FakeAccount, now: float) -> None:
    """Start windows at first use and clear those whose reset has passed (mutates `acct`)."""
    if acct.five_hour_reset is None:
        acct.five_hour_reset = now + FIVE_HOURS_S
    elif acct.five_hour_reset <= now:
        acct.five_hour_used = 0
        acct.five_hour_reset = now + FIVE_HOURS_S
    seven_day_rolled = False
    if acct.seven_day_reset is None:
        acct.seven_day_reset = now + SEVEN_DAYS_S
    elif acct.seven_day_reset <= now:
        acct.seven_day_used = 0
        acct.seven_day_reset = _advance(acct.seven_day_reset, SEVEN_DAYS_S, now)
        seven_day_rolled = True
    for window in acct.model_windows:
        own_reset = acct.model_windows_reset.get(window)
        if own_reset is None:
            if seven_day_rolled:
                acct.model_windows_used[window] = 0
        elif own_reset <= now:
            acct.model_windows_used[window] = 0
            acct.model_windows_reset[window] = _advance(own_reset, SEVEN_DAYS_S, now)


def windows_of(acct: FakeAccount, now: float) -> list[WindowState]:
    """The account's windows after rolling them forward to `now` (mutates `acct`)."""
    roll_windows(acct, now)
    assert acct.five_hour_reset is not None and acct.seven_day_reset is not None
    states = [
        WindowState("5h", acct.five_hour_used, acct.five_hour_budget, acct.five_hour_reset),
        WindowState("7d", acct.seven_day_used, acct.seven_day_budget, acct.seven_day_reset),
    ]
    for window in sorted(acct.model_windows):
        states.append(
            WindowState(
                window,
                acct.model_windows_used.get(window, 0),
                acct.model_windows[window],
                acct.model_windows_reset.get(window, acct.seven_day_reset),
            )
        )
    return states


def add_burn(acct: FakeAccount, model: str | None, tokens: int, now: float) -> None:
    """Count `tokens` against the 5h and 7d windows and the model's own window, if any."""
    roll_windows(acct, now)
    acct.five_hour_used += tokens
    acct.seven_day_used += tokens
    family = model_family(model)
    for window in acct.model_windows:
        if MODEL_WINDOW_FAMILY[window] == family:
            acct.model_windows_used[window] = acct.model_windows_used.get(window, 0) + tokens


def force_rejected(states: list[WindowState], window: str) -> list[WindowState]:
    """The same windows with `window` shown used up (adds it when not configured)."""
    forced: list[WindowState] = []
    found = False
    seven_day_reset = next(s.reset for s in states if s.name == "7d")
    for state in states:
        if state.name == window:
            found = True
            state = WindowState(window, max(state.used, state.budget, 1), max(state.budget, 1), state.reset)
        forced.append(state)
    if not found:
        forced.append(WindowState(window, 1, 1, seven_day_reset))
    return forced


def first_rejected(states: list[WindowState], model: str | None) -> WindowState | None:
    """The applicable rejected window that frees up last (that is when a retry can work)."""
    rejected = [s for s in states if s.status == "rejected" and window_applies(s.name, model)]
    return max(rejected, key=lambda s: s.reset) if rejected else None


def format_fraction(value: float) -> str:
    return str(round(value, 4))


def unified_headers(
    states: list[WindowState], model: str | None, representative: str | None = None
) -> list[tuple[str, str]]:
    """`anthropic-ratelimit-unified-*` headers for these windows and this request's model.

    The representative claim is the applicable window with the highest utilization (or
    `representative` when given); the unified status is the worst applicable status.
    """
    headers: list[tuple[str, str]] = []
    for state in states:
        prefix = f"{UNIFIED}{state.name}-"
        headers.append((prefix + "status", state.status))
        headers.append((prefix + "reset", str(int(state.reset))))
        headers.append((prefix + "utilization", format_fraction(state.utilization)))
    applicable = [s for s in states if window_applies(s.name, model)] or states
    if representative is not None:
        chosen = next(s for s in states if s.name == representative)
    else:
        chosen = max(applicable, key=lambda s: s.utilization)
    statuses = {s.status for s in applicable}
    overall = next(
        (status for status in ("rejected", "allowed_warning") if status in statuses), "allowed"
    )
    if representative is not None:
        overall = chosen.status
    headers += [
        (UNIFIED + "status", overall),
        (UNIFIED + "representative-claim", CLAIMS[chosen.name]),
        (UNIFIED + "reset", str(int(chosen.reset))),
        (UNIFIED + "fallback-percentage", "0.5"),
        (UNIFIED + "overage-status", "rejected"),
        (UNIFIED + "overage-disabled-reason", "org_level_disabled"),
    ]
    return headers


# API-key accounts: per-minute buckets like the Console's tier limits.
API_KEY_LIMITS = {
    "requests": 4000,
    "input-tokens": 400_000,
    "output-tokens": 80_000,
    "tokens": 480_000,
}


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ApiKeyMeter:
    """Requests and tokens an API-key account used in the current minute."""

    minute_start: float = 0.0
    used: dict[str, int] = field(default_factory=dict)

    def _roll(self, now: float) -> None:
        start = now - now % 60
        if start != self.minute_start:
            self.minute_start = start
            self.used = {}

    def headers(self, now: float) -> list[tuple[str, str]]:
        self._roll(now)
        reset = rfc3339(self.minute_start + 60)
        headers: list[tuple[str, str]] = []
        for bucket, limit in API_KEY_LIMITS.items():
            prefix = f"anthropic-ratelimit-{bucket}-"
            remaining = max(0, limit - self.used.get(bucket, 0))
            headers += [(prefix + "limit", str(limit)), (prefix + "remaining", str(remaining)), (prefix + "reset", reset)]
        return headers

    def add(self, now: float, input_tokens: int, output_tokens: int) -> None:
        self._roll(now)
        for bucket, amount in (
            ("requests", 1),
            ("input-tokens", input_tokens),
            ("output-tokens", output_tokens),
            ("tokens", input_tokens + output_tokens),
        ):
            self.used[bucket] = self.used.get(bucket, 0) + amount


def _demo_secret(prefix: str, name: str) -> str:
    digest = hashlib.sha256(f"teamclaude-demo-{prefix}-{name}".encode()).hexdigest()
    return f"{prefix}{name}-{digest[:32]}"


def demo_accounts(now: float) -> list[FakeAccount]:
    """Three OAuth accounts at different points of their week, for `teamclaude demo`.

    ada resets its week in 6 h with 40 % unused, grace is fresh, linus is nearly spent.
    Budgets are small enough that a request of a few thousand tokens every few seconds
    moves the 5h bars visibly within minutes.
    """
    five_hour_budget = 1_000_000
    seven_day_budget = 12_000_000
    plan = [
        # name, 5h utilization, 5h reset in, 7d utilization, 7d reset in
        ("ada", 0.35, 2.0 * 3600, 0.60, 6 * 3600),
        ("grace", 0.10, 4.5 * 3600, 0.05, 6.5 * 86400),
        ("linus", 0.55, 1.0 * 3600, 0.90, 3 * 86400),
    ]
    accounts = []
    for name, five_util, five_in, seven_util, seven_in in plan:
        accounts.append(
            FakeAccount(
                name=name,
                access_token=_demo_secret(DEMO_TOKEN_PREFIX, name),
                refresh_token=_demo_secret(DEMO_REFRESH_PREFIX, name),
                uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"teamclaude-demo/{name}")),
                email=f"{name}@example.com",
                org=f"{name.title()}'s Org",
                org_uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"teamclaude-demo-org/{name}")),
                plan="max",
                five_hour_budget=five_hour_budget,
                seven_day_budget=seven_day_budget,
                five_hour_used=int(five_util * five_hour_budget),
                seven_day_used=int(seven_util * seven_day_budget),
                five_hour_reset=now + five_in,
                seven_day_reset=now + seven_in,
            )
        )
    return accounts
