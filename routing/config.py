"""Tunables of the routing engine, one field per settings key (behaviour §2)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_RAMP_TIERS: tuple[tuple[float, float], ...] = (
    (8.0, 100.0),
    (16.0, 8.0),
    (24.0, 4.0),
    (48.0, 2.0),
    (72.0, 1.0),
)


@dataclass(frozen=True)
class RoutingConfig:
    switch_threshold: float = 0.98
    five_hour_soft_ceiling: float = 0.90
    five_hour_warn: float = 0.75
    pace_tie_band: float = 0.10
    far_over_line: float = 0.10
    warm_window_s: float = 300.0
    binding_evict_s: float = 1800.0
    max_inflight_per_account: int = 5
    max_sessions_per_account: int = 7
    probe_gate: bool = True
    # (hours until the weekly reset, weight), ascending by hours.
    ramp_tiers: tuple[tuple[float, float], ...] = field(default=DEFAULT_RAMP_TIERS)
    backoff_ladder_s: tuple[float, ...] = (60.0, 240.0, 900.0)
    api_keys_last_resort: bool = True
