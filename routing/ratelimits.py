"""Parse Anthropic's `anthropic-ratelimit-*` response headers (behaviour §4).

Pure: takes header pairs, returns values. Malformed values are kept raw and ignored for
decisions; nothing here raises on hostile input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

PREFIX = "anthropic-ratelimit-"
UNIFIED = PREFIX + "unified-"

REJECTED = "rejected"
STATUSES = frozenset({"allowed", "allowed_warning", REJECTED})

# Window names as they appear after `anthropic-ratelimit-unified-`.
WINDOW_NAMES = ("5h", "7d", "7d_oi", "7d_sonnet")
_WINDOW_FIELDS = ("utilization", "reset", "status")

# Unified headers that are not windows but are stored and shown.
_UNIFIED_SCALARS = (
    "status",
    "reset",
    "representative-claim",
    "fallback-percentage",
    "overage-status",
    "overage-disabled-reason",
    "overage-reset",
)

# API-key headroom headers: anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}
_API_BUCKETS = ("requests", "tokens", "input-tokens", "output-tokens")
_API_FIELDS = ("limit", "remaining", "reset")


@dataclass(frozen=True)
class Window:
    """One quota window as the headers describe it. Any part may be unknown."""

    utilization: float | None = None
    reset: float | None = None
    status: str | None = None

    @property
    def rejected(self) -> bool:
        return self.status == REJECTED


@dataclass(frozen=True)
class ApiBucket:
    """API-key headroom for one bucket (requests, tokens, ...)."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None


@dataclass(frozen=True)
class RateLimits:
    """Everything the rate-limit headers of one response said."""

    windows: dict[str, Window] = field(default_factory=dict)
    unified: dict[str, str] = field(default_factory=dict)
    api: dict[str, ApiBucket] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()
    retry_after: float | None = None

    @property
    def empty(self) -> bool:
        """True when the response carried no rate-limit header at all."""
        return not self.raw

    @property
    def unified_status(self) -> str | None:
        return self.unified.get("status")

    @property
    def representative_claim(self) -> str | None:
        return self.unified.get("representative-claim")

    def rejected_windows(self) -> tuple[str, ...]:
        return tuple(name for name, w in self.windows.items() if w.rejected)


# Bounds for numbers read from headers: anything outside is garbled, never meaningful.
MAX_UTILIZATION = 100.0
MAX_RETRY_AFTER_S = 7 * 24 * 3600.0
_MAX_COUNT = 1 << 53


def parse_fraction(value: str) -> float | None:
    """A utilization: a finite, non-negative float (may exceed 1; clamped to 100)."""
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return min(number, MAX_UTILIZATION)


def parse_epoch(value: str) -> float | None:
    """A reset time: Unix epoch seconds, or RFC 3339 (API-key headers)."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        return number if math.isfinite(number) and 0 <= number < 1e11 else None
    if len(text) > 64:
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return None
    return stamp if 0 <= stamp < 1e11 else None


def parse_status(value: str) -> str | None:
    text = value.strip().lower()
    return text if text in STATUSES else None


def parse_retry_after(value: str) -> float | None:
    """`retry-after` as seconds (integer or decimal); HTTP dates are not used by Anthropic."""
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return min(number, MAX_RETRY_AFTER_S) if math.isfinite(number) and number >= 0 else None


def _parse_int(value: str) -> int | None:
    """An API-key bucket count: non-negative, clamped (a 5000-digit value is not a count)."""
    text = value.strip()
    if len(text) > 20:
        return None
    try:
        number = int(text)
    except ValueError:
        return None
    return min(number, _MAX_COUNT) if number >= 0 else None


_WINDOW_PARSERS = {"utilization": parse_fraction, "reset": parse_epoch, "status": parse_status}


def _split_window_name(rest: str) -> tuple[str, str] | None:
    """`7d_oi-utilization` -> ("7d_oi", "utilization")."""
    name, sep, part = rest.rpartition("-")
    if sep and part in _WINDOW_FIELDS and name and "-" not in name:
        return name, part
    return None


# What a rate-limit header name means, worked out once per distinct name: responses repeat
# the same dozen names, and this runs on every response.
_SCALAR, _WINDOW, _NEW_WINDOW, _API, _UNKNOWN = range(5)
_ROLE_CACHE_MAX = 1024
_roles: dict[str, tuple[int, str, str]] = {}


def _classify(lname: str) -> tuple[int, str, str]:
    if lname.startswith(UNIFIED):
        rest = lname[len(UNIFIED):]
        if rest in _UNIFIED_SCALARS:
            return _SCALAR, rest, ""
        split = _split_window_name(rest)
        if split is None:
            return _UNKNOWN, "", ""
        window, part = split
        return (_WINDOW if window in WINDOW_NAMES else _NEW_WINDOW), window, part
    bucket, sep, part = lname[len(PREFIX):].rpartition("-")
    if sep and bucket in _API_BUCKETS and part in _API_FIELDS:
        return _API, bucket, part
    return _UNKNOWN, "", ""


def _role(lname: str) -> tuple[int, str, str]:
    role = _roles.get(lname)
    if role is None:
        role = _classify(lname)
        if len(_roles) < _ROLE_CACHE_MAX:  # hostile names cannot grow it without bound
            _roles[lname] = role
    return role


def parse_ratelimit_headers(headers: Iterable[tuple[str, str]]) -> RateLimits:
    """Read every `anthropic-ratelimit-*` header (and `retry-after`) from header pairs.

    Window names are not limited to the known ones: a new `unified-<name>-utilization`
    becomes a window too, and is also reported in `unknown`.
    """
    raw: dict[str, str] = {}
    retry_after: float | None = None
    for name, value in headers:
        lname = name.lower()
        if lname.startswith(PREFIX):
            raw[lname] = value
        elif lname == "retry-after":
            retry_after = parse_retry_after(value)

    window_parts: dict[str, dict[str, object]] = {}
    unified: dict[str, str] = {}
    api_parts: dict[str, dict[str, object]] = {}
    unknown: list[str] = []
    for lname, value in raw.items():
        kind, group, part = _role(lname)
        if kind == _SCALAR:
            unified[group] = value.strip()
        elif kind == _WINDOW or kind == _NEW_WINDOW:
            if kind == _NEW_WINDOW:
                unknown.append(lname)
            window_parts.setdefault(group, {})[part] = _WINDOW_PARSERS[part](value)
        elif kind == _API:
            api_parts.setdefault(group, {})[part] = parse_epoch(value) if part == "reset" else _parse_int(value)
        else:
            unknown.append(lname)

    return RateLimits(
        windows={name: Window(**parts) for name, parts in window_parts.items()},  # type: ignore[arg-type]
        unified=unified,
        api={name: ApiBucket(**parts) for name, parts in api_parts.items()},  # type: ignore[arg-type]
        raw=raw,
        unknown=tuple(sorted(unknown)) if unknown else (),
        retry_after=retry_after,
    )


def window_applies_to_model(window: str, model: str | None) -> bool:
    """Does a rejection of `window` stop a request for `model`?

    `5h` and `7d` bind every model. `7d_sonnet` binds Sonnet models; `7d_oi` binds the
    premium (Opus) models. Unknown model-scoped windows bind nothing we can name, so they
    are treated as binding every model: better to avoid an account than to send it into a
    known rejection.
    """
    if window in ("5h", "7d"):
        return True
    family = model_family(model)
    if window == "7d_sonnet":
        return family == "sonnet"
    if window == "7d_oi":
        return family == "opus"
    return True


_FAMILY_OF_WINDOW = {"7d_sonnet": "sonnet", "7d_oi": "opus"}


def window_family(window: str) -> str | None:
    """The model family a window governs alone (None: it binds every model)."""
    return _FAMILY_OF_WINDOW.get(window)


def model_family(model: str | None) -> str | None:
    """`claude-opus-4-5-20251101` -> "opus"; unknown -> None."""
    if not model:
        return None
    lowered = model.lower()
    for family in ("opus", "sonnet", "haiku"):
        if family in lowered:
            return family
    return None
