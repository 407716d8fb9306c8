"""What an upstream answer means for the account and for the request (behaviour §6). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from routing.ratelimits import RateLimits, window_applies_to_model, window_family

OVERLOADED_COOLDOWN_S = 30.0   # 529: short, not the 429 ladder
SERVER_ERROR_COOLDOWN_S = 10.0  # 500, 502, 503
FORBIDDEN_STREAK_NEEDS_LOGIN = 2
# Verdict kinds that mean "not now" rather than "not this account": a held request may come
# back to such an account once its bench ends.
THROTTLED_KINDS = frozenset({"window", "retry-after", "bare-429", "overloaded", "server-error"})
# In the reason of a short 529/5xx cooldown bench (AccountState tells such benches apart).
COOLDOWN_MARK = "cooling down"
FIVE_HOURS_S = 5 * 3600.0
WEEK_S = 7 * 86400.0


def _window_length(name: str) -> float:
    return FIVE_HOURS_S if name == "5h" else WEEK_S


@dataclass(frozen=True)
class Verdict:
    """The classification of one response.

    `failover`: try another account for this request (if none can serve, see `pass_through`).
    `refresh_and_retry`: 401 on OAuth: force a token refresh and retry on the same account.
    `bench_until`/`bench_family`: bench the account (or one model family on it) until then.
    `pass_through_if_alone`: when no other account can serve, give the client this answer
    rather than holding (5xx).
    """

    kind: str
    reason: str
    failover: bool = False
    refresh_and_retry: bool = False
    needs_login: bool = False
    bench_until: float | None = None
    bench_family: str | None = None
    pass_through_if_alone: bool = False

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


@dataclass
class Streaks:
    """Consecutive failures per account that escalate (they do not survive a restart)."""

    bare_429: dict[str, int] = field(default_factory=dict)
    forbidden: dict[str, int] = field(default_factory=dict)
    unauthorized: dict[str, int] = field(default_factory=dict)

    def success(self, account: str) -> None:
        self.bare_429.pop(account, None)
        self.forbidden.pop(account, None)
        self.unauthorized.pop(account, None)

    def bump(self, table: dict[str, int], account: str) -> int:
        table[account] = table.get(account, 0) + 1
        return table[account]


def _rejected_windows(limits: RateLimits, model: str | None) -> list[str]:
    return [
        name for name, window in limits.windows.items()
        if window.rejected and window_applies_to_model(name, model)
    ]


def classify_429(limits: RateLimits, model: str | None, now: float, ladder: tuple[float, ...], streak: int) -> Verdict:
    """A 429: window rejected, plain retry-after, or bare (request-scoped).

    `streak` is the number of consecutive bare 429s on the account including this one.
    """
    rejected = _rejected_windows(limits, model)
    if rejected:
        # Each window benches only what it governs: a window binding every model (5h, 7d)
        # the account, a model-scoped one (7d_oi, 7d_sonnet) its family. The verdict carries
        # the widest scope; the reason names every window, so `AccountState.set_bench`
        # benches the others on their own scope until their own resets.
        wide = [name for name in rejected if window_family(name) is None]
        governing = wide or rejected
        family = None if wide else window_family(governing[0])
        resets = [
            reset for name in governing
            if (reset := limits.windows[name].reset) is not None and reset > now
        ]
        until = max(resets) if resets else None
        if limits.retry_after is not None and (until is None or not wide or len(rejected) == len(wide)):
            # retry-after speaks for the whole answer: trust it for the account-wide bench
            # only when no model-scoped window (days away) could be what it counts down to.
            until = max(until or 0.0, now + limits.retry_after)
        if until is None:
            until = now + (ladder[0] if ladder else 60.0)
        # A hostile or garbled reset never benches longer than the window itself lasts.
        until = min(until, now + max(_window_length(name) for name in governing))
        names = "/".join(rejected)
        return Verdict("window", f"{names} window rejected", failover=True, bench_until=until, bench_family=family)
    if limits.retry_after is not None:
        return Verdict(
            "retry-after", f"429 retry-after {limits.retry_after:g}s",
            failover=True, bench_until=now + min(limits.retry_after, FIVE_HOURS_S),
        )
    if streak >= 2 and ladder:
        step = ladder[min(streak - 2, len(ladder) - 1)]
        return Verdict("bare-429", f"{streak} bare 429s in a row: backoff {step:g}s", failover=True, bench_until=now + step)
    return Verdict("bare-429", "request-scoped 429 (not benched)", failover=True)


def is_final_status(status: int) -> bool:
    """A status that can end an exchange: three digits, not an informational 1xx."""
    return 200 <= status <= 999


def classify(
    status: int,
    limits: RateLimits,
    *,
    account: str,
    oauth: bool,
    model: str | None,
    now: float,
    ladder: tuple[float, ...],
    streaks: Streaks,
    refreshed_this_request: bool = False,
) -> Verdict:
    """Classify an upstream status for `account` and update its streaks."""
    if not is_final_status(status):
        # Not an answer: an informational 1xx (mitmproxy takes an interim one for the final
        # response and drops what follows) or no three-digit status; another account serves.
        return Verdict("no-answer", f"{str(status)[:12]}: not a final HTTP status", failover=True)
    if status < 400:
        streaks.success(account)
        return Verdict("ok", "ok")
    if status == 429:
        bare = limits.empty and limits.retry_after is None
        streak = streaks.bump(streaks.bare_429, account) if bare else 0
        if not bare:
            streaks.bare_429.pop(account, None)
        return classify_429(limits, model, now, ladder, streak)
    if status == 401:
        # A second 401 in a row needs a login, whether the retry came from this request
        # (transparent failover) or from the client's own retry (client failover).
        streak = streaks.bump(streaks.unauthorized, account)
        if oauth and not refreshed_this_request and streak == 1:
            return Verdict("unauthorized", "401: refreshing the token", refresh_and_retry=True)
        reason = "401 after a fresh token: needs a new login" if oauth else "401: the API key was refused"
        return Verdict("unauthorized", reason, failover=True, needs_login=True)
    if status == 403:
        streak = streaks.bump(streaks.forbidden, account)
        if streak >= FORBIDDEN_STREAK_NEEDS_LOGIN:
            return Verdict("forbidden", f"{streak} × 403: needs a new login", failover=True, needs_login=True)
        return Verdict("forbidden", "403 (excluded for this request)", failover=True)
    if status == 529:
        return Verdict("overloaded", f"529 overloaded: {COOLDOWN_MARK} 30s", failover=True,
                       bench_until=now + OVERLOADED_COOLDOWN_S, pass_through_if_alone=True)
    if status in (500, 502, 503):
        return Verdict("server-error", f"{status}: {COOLDOWN_MARK} {SERVER_ERROR_COOLDOWN_S:g}s", failover=True,
                       bench_until=now + SERVER_ERROR_COOLDOWN_S, pass_through_if_alone=True)
    return Verdict("client-error", str(status))

