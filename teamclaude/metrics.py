"""Prometheus metrics (`GET /metrics`, docs/metrics.md).

One `Metrics` per `Service`, on its own `CollectorRegistry` (never the process-wide default:
tests run several services in one process). Counters are bumped where things happen, by
one-line calls from the pool (each lifecycle step — failovers included —, each send, hold
and finished request) and the credential manager (`on_refresh`); gauges are read from the
router and the service when Prometheus scrapes. The decisions (label values, which
moves break a cache, a weekly reset and what it forfeited) are pure functions below.

Labels are bounded: accounts and client keys are few and named in files; a model label is
the model string, the first `MAX_MODELS` distinct ones kept and any later one counted as
"other" (a client could otherwise grow the label set with made-up names). Nothing is
labelled by session, conversation or path, and nothing secret is ever a label.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from routing.failures import Verdict
from routing.lifecycle import Failed, Outcome, Upstream
from routing.policy import BLOCKED, FAR_OVER_LINE
from routing.ratelimits import RateLimits
from routing.types import Decision
from routing.usage import Usage

if TYPE_CHECKING:
    from teamclaude.attempt import Attempt
    from teamclaude.service import Service

PREFIX = "teamclaude_"
PROXY_KEY_CLIENT = "proxy-key"  # the `client` label of a request made with the shared proxy key
NONE = "none"  # no account served, no status (the connection failed), no model named
OTHER_MODEL = "other"
MAX_MODELS = 32
MAX_LABEL_CHARS = 100

# Decision reasons that move a warm conversation to another account for good, so its prompt
# cache is rebuilt there (routing.policy): its account is out for longer than a cache lives,
# or far past its weekly line. Not a new conversation, not a lapsed window (its cache is
# gone already), not a detour (one request elsewhere, the binding stays), not the client's
# own pin. A blocked conversation that can only go to an API key shows as
# `api-key-last-resort` and is not counted.
CACHE_BREAKING_REASONS = frozenset({BLOCKED, FAR_OVER_LINE})

WEEKLY_WINDOW = "7d"
# A weekly reset is seen when the window's reset moves forward and the old one has passed,
# allowing for this much difference between our clock and the API's.
RESET_CLOCK_SKEW_S = 300.0
HOLD_BUCKETS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


# ----- pure parts -------------------------------------------------------------------------


def client_label(client: str | None) -> str:
    """The `client` label: the client key's name, or `proxy-key` for the shared key."""
    return client if client else PROXY_KEY_CLIENT


def status_label(status: int | None) -> str:
    """The HTTP status as a string; `none` when no answer came (the connection failed)."""
    return str(status) if status is not None else NONE


def failover_reason(outcome: Outcome, verdict: Verdict | None) -> str:
    """Why an account was left: the kind of the verdict on its answer (routing.failures, a
    small fixed set: window, retry-after, bare-429, overloaded, server-error, unauthorized,
    forbidden, no-answer, connection), or `no-token` when it had no usable credentials."""
    if isinstance(outcome, Failed) and not outcome.connection:
        return "no-token"
    return verdict.kind if verdict is not None else "unknown"


def is_cache_breaking(reason: str | None) -> bool:
    return reason in CACHE_BREAKING_REASONS


def token_counts(usage: Usage) -> dict[str, int]:
    """Tokens of one response by the `type` label (both cache-write durations are cache_creation)."""
    return {
        "input": usage.input_tokens,
        "output": usage.output_tokens,
        "cache_read": usage.cache_read,
        "cache_creation": usage.cache_write_5m + usage.cache_write_1h,
    }


class BoundedLabel:
    """Label values as seen, up to `limit` distinct ones; later ones become `other`."""

    def __init__(self, limit: int = MAX_MODELS) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if not value:
            return NONE
        value = value[:MAX_LABEL_CHARS]
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OTHER_MODEL


@dataclass(frozen=True)
class WeekReading:
    """The weekly window of one account as one response described it."""

    utilization: float
    reset: float


def weekly_reading(limits: RateLimits) -> WeekReading | None:
    """The weekly window of a response, when it gave both a utilization and a reset."""
    window = limits.windows.get(WEEKLY_WINDOW)
    if window is None or window.utilization is None or window.reset is None:
        return None
    return WeekReading(window.utilization, window.reset)


def forfeited_at_reset(previous: WeekReading | None, current: WeekReading, now: float) -> float | None:
    """The share of a week's quota left unused when the weekly window reset between two
    readings of an account (None: it did not reset in between).

    The window reset when its reset time moved forward and the old one has passed (give or
    take `RESET_CLOCK_SKEW_S`). What was unused is 1 − the utilization last seen before the
    reset, in [0, 1]: usage only grows within a week, so for a reading long before the reset
    this is an upper bound. Weeks with no reading at all are not counted.
    """
    if previous is None or current.reset <= previous.reset or now < previous.reset - RESET_CLOCK_SKEW_S:
        return None
    return min(1.0, max(0.0, 1.0 - previous.utilization))


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]]


def state_gauges(accounts: Iterable[Mapping[str, Any]], needs_login: Iterable[str],
                 holds: Mapping[str, Any], now: float) -> list[Gauge]:
    """The gauges of the pool now, from the router's snapshot of its accounts (routing.engine
    `Router.snapshot`), the accounts that need a new login and the hold summary."""
    login = set(needs_login)
    utilization: list[tuple[tuple[str, ...], float]] = []
    resets: list[tuple[tuple[str, ...], float]] = []
    per_account: dict[str, list[tuple[tuple[str, ...], float]]] = {
        key: [] for key in ("benched", "bench", "needs_login", "disabled", "inflight", "warm")
    }
    for account in accounts:
        name = str(account.get("name"))
        for window, values in sorted((account.get("windows") or {}).items()):
            if values.get("utilization") is not None:
                utilization.append(((name, window), float(values["utilization"])))
            if values.get("reset") is not None:
                resets.append(((name, window), float(values["reset"])))
        until = account.get("bench_until")
        left = max(0.0, float(until) - now) if until is not None else 0.0
        per_account["benched"].append(((name,), 1.0 if left > 0 else 0.0))
        per_account["bench"].append(((name,), left))
        per_account["needs_login"].append(((name,), 1.0 if account.get("needs_login") or name in login else 0.0))
        per_account["disabled"].append(((name,), 1.0 if account.get("disabled") else 0.0))
        per_account["inflight"].append(((name,), float(account.get("inflight") or 0)))
        per_account["warm"].append(((name,), float(account.get("warm_sessions") or 0)))
    oldest = holds.get("oldest_wait_s")
    one = ("account",)
    return [
        Gauge(PREFIX + "account_window_utilization_ratio",
              "Utilization of a quota window as the account's last answer said (1.0 = used up).",
              ("account", "window"), utilization),
        Gauge(PREFIX + "account_window_reset_timestamp_seconds",
              "When a quota window resets (Unix time).", ("account", "window"), resets),
        Gauge(PREFIX + "account_benched", "1 while the account is benched (takes no requests).", one,
              per_account["benched"]),
        Gauge(PREFIX + "account_bench_remaining_seconds", "Seconds until the account's bench ends (0: not benched).",
              one, per_account["bench"]),
        Gauge(PREFIX + "account_needs_login", "1 when the account needs a new login (`teamclaude login`).", one,
              per_account["needs_login"]),
        Gauge(PREFIX + "account_disabled", "1 when the account is disabled by the operator.", one,
              per_account["disabled"]),
        Gauge(PREFIX + "account_inflight_requests", "Requests the account is serving now.", one,
              per_account["inflight"]),
        Gauge(PREFIX + "account_warm_conversations", "Conversations bound to the account and used recently.", one,
              per_account["warm"]),
        Gauge(PREFIX + "held_requests", "Requests held now, waiting for an account to free up.", (),
              [((), float(holds.get("count") or 0))]),
        Gauge(PREFIX + "oldest_hold_seconds", "How long the longest-held request has waited (0: none held).", (),
              [((), float(oldest) if oldest is not None else 0.0)]),
    ]


def shared_state_gauges(shared: Any, now: float) -> list[Gauge]:
    """Health of the shared state (`shared_state` setting): any object with `healthy` (bool)
    and `degraded_since` (Unix time or None); no gauges without one."""
    if shared is None:
        return []
    since = getattr(shared, "degraded_since", None)
    degraded = max(0.0, now - float(since)) if since is not None else 0.0
    return [
        Gauge(PREFIX + "shared_state_up", "1 while the shared state store answers.", (),
              [((), 1.0 if getattr(shared, "healthy", False) else 0.0)]),
        Gauge(PREFIX + "shared_state_degraded_seconds",
              "Seconds since the shared state store stopped answering (0: healthy).", (), [((), degraded)]),
    ]


# ----- the registry -----------------------------------------------------------------------


class _StateCollector(Collector):
    """Gauges computed at scrape time from the service."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        service = self._service
        now = service.clock()
        accounts = service.router.snapshot(now).get("accounts", [])
        gauges = state_gauges(accounts, service.credentials.needs_login, service.holds.summary(now), now)
        gauges += shared_state_gauges(getattr(service, "shared", None), now)
        for gauge in gauges:
            family = GaugeMetricFamily(gauge.name, gauge.help, labels=gauge.labels)
            for values, value in gauge.samples:
                family.add_metric(values, value)
            yield family


class Metrics:
    """The service's metrics: counters bumped by the hooks below, gauges read at scrape time."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self.registry = CollectorRegistry()
        self._model = BoundedLabel()
        self._week: dict[str, WeekReading] = {}
        registry = self.registry
        self.requests = Counter(PREFIX + "requests", "Pooled requests finished, by the account that answered last.",
                                ("account", "model", "client", "status"), registry=registry)
        self.tokens = Counter(PREFIX + "tokens", "Tokens used, as the upstream answers counted them.",
                              ("account", "model", "client", "type"), registry=registry)
        self.cost = Counter(PREFIX + "cost_usd", "What the tokens would cost at API prices (USD).",
                            ("account", "model", "client"), registry=registry)
        self.failovers = Counter(PREFIX + "failovers", "Requests moved off an account that failed them.",
                                 ("account", "status", "reason"), registry=registry)
        self.holds = Histogram(PREFIX + "hold_duration_seconds", "Holds (waiting while no account can serve), by length.",
                               registry=registry, buckets=HOLD_BUCKETS_S)
        self.moves = Counter(PREFIX + "cache_breaking_moves",
                             "Warm conversations moved to another account for good (its prompt cache is rebuilt).",
                             ("account", "reason"), registry=registry)
        self.forfeited = Counter(PREFIX + "weekly_quota_forfeited_ratio",
                                 "Share of a week's quota left unused at weekly resets, summed over resets.",
                                 ("account",), registry=registry)
        self.resets = Counter(PREFIX + "weekly_resets", "Weekly window resets seen.", ("account",), registry=registry)
        self.refreshes = Counter(PREFIX + "token_refreshes", "OAuth token refreshes by outcome.",
                                 ("account", "outcome"), registry=registry)
        registry.register(_StateCollector(service))

    def exposition(self) -> tuple[bytes, dict[str, str]]:
        """The text format Prometheus scrapes, and its headers."""
        return generate_latest(self.registry), {"content-type": CONTENT_TYPE_LATEST}

    # ----- hooks (each called in one line where it happens) -----
    def finished(self, attempt: Attempt, account: str | None, status: int | None, usage: Usage | None) -> None:
        """A pooled request ended (Pool._report)."""
        model = self._model(usage.model if usage is not None and usage.model else attempt.request.model)
        who, client = account or NONE, client_label(attempt.client)
        self.requests.labels(who, model, client, status_label(status)).inc()
        if usage is None:
            return
        for kind, count in token_counts(usage).items():
            if count:
                self.tokens.labels(who, model, client, kind).inc(count)
        cost = self._service.router.prices.cost(usage)
        if cost > 0 and math.isfinite(cost):
            self.cost.labels(who, model, client).inc(cost)

    def advanced(self, attempt: Attempt, account: str | None, failures_before: int, outcome: Outcome) -> None:
        """The lifecycle took `outcome` about `account` (Pool.advance): an upstream answer's
        rate-limit headers are read for weekly resets, and every account it gave up on for
        this request since (`attempt.history` past `failures_before`) is a failover."""
        if isinstance(outcome, Upstream):
            self.observed(account, outcome.limits, outcome.now)
        reason = failover_reason(outcome, attempt.verdict)
        for failed in attempt.history[failures_before:]:
            self.failovers.labels(failed.get("account") or NONE, status_label(failed.get("status")), reason).inc()

    def sending(self, attempt: Attempt, decision: Decision) -> None:
        """An attempt goes to `decision.account` (Pool.prepare). A re-send to the account the
        request already went to (after a token refresh) is not a new move."""
        if is_cache_breaking(decision.reason) and decision.account != attempt.rewritten_for:
            self.moves.labels(decision.account, decision.reason).inc()

    def held(self, seconds: float) -> None:
        self.holds.observe(max(0.0, seconds))

    def observed(self, account: str | None, limits: RateLimits, now: float) -> None:
        """An upstream answer's rate-limit headers: a weekly reset since the account's last
        reading counts what it forfeited."""
        reading = weekly_reading(limits)
        if account is None or reading is None:
            return
        previous = self._week.get(account)
        forfeited = forfeited_at_reset(previous, reading, now)
        if forfeited is not None:
            self.resets.labels(account).inc()
            self.forfeited.labels(account).inc(forfeited)
        if previous is None or reading.reset >= previous.reset:  # not an answer older than the last one
            self._week[account] = reading

    def token_refresh(self, account: str, outcome: str) -> None:
        """CredentialManager.on_refresh: one refresh's outcome: refreshed, adopted,
        needs_login or failed."""
        self.refreshes.labels(account, outcome).inc()
