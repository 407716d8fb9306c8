"""Persistence across restarts (behaviour §8.3)."""

from __future__ import annotations

import json

import pytest

from routing.usage import Usage
from tests.routing.helpers import DAY, HOUR, T0, limits, oauth, req, router


def busy_router():
    r = router(oauth("a"), oauth("b"))
    d = r.select(req("s"), T0)
    assert d is not None
    r.observe(d.account, 200, limits(T0, u5=0.4, u7=0.3, reset5_in=HOUR, reset7_in=2 * DAY), T0)
    r.release(d.ticket, T0 + 20, Usage(input_tokens=1000, output_tokens=200, model="claude-opus-4-5"), 200)
    r.bench(d.account, T0 + 600, "retry-after 600s", T0 + 20)
    return r, d.account


def test_round_trip_keeps_usage_burn_caps_and_windows_but_not_benches() -> None:
    r, name = busy_router()
    saved = json.loads(json.dumps(r.export_persistent(T0 + 30)))
    fresh = router(oauth("a"), oauth("b"))
    fresh.restore_persistent(saved, T0 + 40)
    before = {a["name"]: a for a in r.snapshot(T0 + 40)["accounts"]}[name]
    after = {a["name"]: a for a in fresh.snapshot(T0 + 40)["accounts"]}[name]
    for key in ("usage", "burn5h", "cap_est_5h", "windows"):
        assert after[key] == before[key], key
    assert after["bench_until"] is None and after["inflight"] == 0 and not after["proven"]
    assert fresh.snapshot(T0 + 40)["totals"]["tokens"] == 1200
    assert fresh.snapshot(T0 + 40)["totals"]["models"]["claude-opus-4-5"]["requests"] == 1


def test_windows_whose_reset_passed_are_dropped_on_restore() -> None:
    r, name = busy_router()
    saved = r.export_persistent(T0 + 30)
    fresh = router(oauth("a"), oauth("b"))
    fresh.restore_persistent(saved, T0 + 2 * HOUR)
    after = {a["name"]: a for a in fresh.snapshot(T0 + 2 * HOUR)["accounts"]}[name]
    assert set(after["windows"]) == {"7d"}


def test_restore_before_accounts_are_configured_applies_when_they_appear() -> None:
    r, name = busy_router()
    saved = r.export_persistent(T0 + 30)
    fresh = router()
    fresh.restore_persistent(saved, T0 + 40)
    assert fresh.export_persistent(T0 + 40)["accounts"][name]["usage"]["requests"] == 1
    fresh.set_accounts([oauth("a"), oauth("b")])
    after = {a["name"]: a for a in fresh.snapshot(T0 + 40)["accounts"]}[name]
    assert after["usage"]["requests"] == 1


@pytest.mark.parametrize(
    "garbage",
    [
        None, [], "x", {"version": 99}, {"version": 1, "accounts": "no"},
        {"version": 1, "accounts": {"a": {"usage": "x", "burn": {"y": 1}, "cap": [1],
                                          "windows": {"5h": "bad", "7d": {"utilization": "hi"}}}}},
        {"version": 1, "accounts": {"a": {"cap": {"value": -5, "set_at": 0},
                                          "windows": {"7d": {"utilization": -1, "reset": float("inf")}}}},
         "totals": {"requests": -3, "cost_usd": "free"}},
    ],
)
def test_restore_tolerates_garbage(garbage: object) -> None:
    r = router(oauth("a"))
    r.restore_persistent(garbage, T0)  # type: ignore[arg-type]
    snap = r.snapshot(T0)
    json.dumps(snap)
    assert snap["accounts"][0]["windows"] == {}
    assert snap["accounts"][0]["cap_est_5h"] is None
    assert snap["totals"]["requests"] == 0
