"""Token usage of one response and what it costs (behaviour §8.1)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

from routing.ratelimits import model_family


# Most tokens one response can be counted for: a usage figure from upstream is clamped to
# this, so no sum or cost made from it can overflow a float (a context window is ~1M tokens).
MAX_TOKENS = 10**9


def _count(value: object) -> int:
    """A token count from upstream JSON: a non-negative integer (or integral float) clamped to
    `MAX_TOKENS`; anything else (negative, NaN, infinite, a string, a bool) counts as 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return 0
        value = int(value)
    return min(value, MAX_TOKENS) if value > 0 else 0


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    model: str | None = None

    @property
    def burn(self) -> int:
        """Tokens that count against quota: input, cache writes and output (not cache reads)."""
        return self.input_tokens + self.cache_write_5m + self.cache_write_1h + self.output_tokens

    @property
    def total(self) -> int:
        return self.burn + self.cache_read

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_write_5m=self.cache_write_5m + other.cache_write_5m,
            cache_write_1h=self.cache_write_1h + other.cache_write_1h,
            cache_read=self.cache_read + other.cache_read,
            model=other.model or self.model,
        )

    @classmethod
    def from_api(cls, usage: object, model: object = None) -> Usage:
        """From an API `usage` object (message JSON or `message_start.message.usage`).

        `cache_creation_input_tokens` without the 5m/1h breakdown is counted as 5m writes.
        """
        if not isinstance(usage, dict):
            return cls(model=model if isinstance(model, str) else None)
        breakdown = usage.get("cache_creation")
        if isinstance(breakdown, dict):
            write_5m = _count(breakdown.get("ephemeral_5m_input_tokens"))
            write_1h = _count(breakdown.get("ephemeral_1h_input_tokens"))
        else:
            write_5m, write_1h = _count(usage.get("cache_creation_input_tokens")), 0
        return cls(
            input_tokens=_count(usage.get("input_tokens")),
            output_tokens=_count(usage.get("output_tokens")),
            cache_write_5m=write_5m,
            cache_write_1h=write_1h,
            cache_read=_count(usage.get("cache_read_input_tokens")),
            model=model if isinstance(model, str) else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_write_5m": self.cache_write_5m,
            "cache_write_1h": self.cache_write_1h,
            "cache_read": self.cache_read,
        }

    @classmethod
    def restore(cls, data: dict[str, object]) -> Usage:
        """The inverse of `as_dict`: anything that is not a non-negative count reads as 0."""
        return cls(
            input_tokens=_count(data.get("input_tokens")),
            output_tokens=_count(data.get("output_tokens")),
            cache_write_5m=_count(data.get("cache_write_5m")),
            cache_write_1h=_count(data.get("cache_write_1h")),
            cache_read=_count(data.get("cache_read")),
        )


@dataclass(frozen=True)
class PriceTable:
    families: dict[str, tuple[float, float]]
    default: str
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriceTable:
        return cls(
            families={k: (float(v[0]), float(v[1])) for k, v in data["families"].items()},
            default=data["default"],
            cache_write_5m=float(data["cache_write_5m"]),
            cache_write_1h=float(data["cache_write_1h"]),
            cache_read=float(data["cache_read"]),
        )

    def rates(self, model: str | None) -> tuple[float, float]:
        family = model_family(model)
        return self.families.get(family or self.default, self.families[self.default])

    def cost(self, usage: Usage) -> float:
        """USD for one usage record."""
        input_rate, output_rate = self.rates(usage.model)
        per_token_in = input_rate / 1_000_000
        return (
            usage.input_tokens * per_token_in
            + usage.cache_write_5m * per_token_in * self.cache_write_5m
            + usage.cache_write_1h * per_token_in * self.cache_write_1h
            + usage.cache_read * per_token_in * self.cache_read
            + usage.output_tokens * output_rate / 1_000_000
        )


def default_prices() -> PriceTable:
    """The price table shipped with the package (`routing/prices.json`)."""
    text = resources.files("routing").joinpath("prices.json").read_text(encoding="utf-8")
    return PriceTable.from_dict(json.loads(text))
