"""The pool's quota per window (teamclaude.quota): weighting, resets, room, who counts."""

from __future__ import annotations

import pytest

from teamclaude.quota import accounts_with_room, plan_weight, pool_windows, quota_document

NOW = 1_795_000_000.0


def account(name: str, plan: str | None = "max", kind: str = "oauth", **windows: tuple) -> dict:
    return {
        "name": name, "kind": kind, "plan": plan, "disabled": False, "needs_login": False, "status": "ok",
        "windows": {
            window: {"utilization": util, "reset": reset, "status": status}
            for window, (util, reset, status) in windows.items()
        },
    }


def test_utilization_is_weighted_by_plan_size() -> None:
    accounts = [
        account("max", "max", **{"5h": (0.5, NOW + 3600, "allowed"), "7d": (0.1, NOW + 86400, "allowed")}),
        account("pro", "pro", **{"5h": (0.9, NOW + 1800, "allowed_warning"), "7d": (0.1, NOW + 7200, "allowed")}),
    ]
    windows = pool_windows(accounts, NOW)
    assert list(windows) == ["5h", "7d"]
    five = windows["5h"]
    assert five.utilization == pytest.approx((5 * 0.5 + 1 * 0.9) / 6)
    assert five.reset == NOW + 1800 and five.with_room == 2 and five.accounts == 2 and five.reporting == 2
    assert five.status == "allowed"
    assert windows["7d"].reset == NOW + 7200


@pytest.mark.parametrize(("plan", "weight"), [("pro", 1), ("max", 5), ("MAX_20x", 20), ("team", 1), (None, 1), ("new", 1)])
def test_plan_weights(plan: str | None, weight: float) -> None:
    assert plan_weight(plan) == weight


def test_rejected_counts_full_and_without_room_passed_reset_counts_empty() -> None:
    accounts = [
        account("a", "pro", **{"5h": (0.7, NOW + 600, "rejected")}),
        account("b", "pro", **{"5h": (0.95, NOW - 1, "allowed_warning")}),  # its window has reset
    ]
    five = pool_windows(accounts, NOW)["5h"]
    assert five.utilization == pytest.approx(0.5)  # (1.0 + 0.0) / 2
    assert five.with_room == 1 and five.reset == NOW + 600


def test_no_room_anywhere_is_rejected_and_high_use_warns() -> None:
    full = [account(n, "pro", **{"5h": (1.0, NOW + 60, "rejected")}) for n in ("a", "b")]
    assert pool_windows(full, NOW)["5h"].status == "rejected"
    busy = [account("a", "pro", **{"5h": (0.85, NOW + 60, "allowed_warning")})]
    assert pool_windows(busy, NOW)["5h"].status == "allowed_warning"


def test_only_oauth_accounts_that_can_serve_count() -> None:
    accounts = [
        account("ok", "pro", **{"5h": (0.2, NOW + 60, "allowed")}),
        {**account("off", "max", **{"5h": (0.9, NOW + 60, "allowed")}), "disabled": True},
        {**account("login", "max", **{"5h": (0.9, NOW + 60, "allowed")}), "needs_login": True},
        account("key", None, kind="apikey"),
    ]
    document = quota_document(accounts, NOW)
    assert document["accounts"] == 1 and document["weights"] == {"ok": 1.0}
    assert document["windows"]["5h"] == {
        "utilization": 0.2, "reset": NOW + 60, "resetSec": 60, "status": "allowed",
        "withRoom": 1, "accounts": 1, "reporting": 1,
    }


def test_an_account_without_a_reading_has_room_but_no_say_in_utilization() -> None:
    accounts = [account("seen", "pro", **{"5h": (0.4, NOW + 60, "allowed")}), account("new", "max")]
    five = pool_windows(accounts, NOW)["5h"]
    assert five.utilization == pytest.approx(0.4) and five.with_room == 2 and five.reporting == 1
    assert pool_windows([account("new", "max")], NOW)["7d"].utilization is None


def test_model_windows_and_room_per_model() -> None:
    accounts = [
        account("a", "max", **{"5h": (0.1, NOW + 60, "allowed"), "7d_sonnet": (1.0, NOW + 600, "rejected")}),
        account("b", "max", **{"5h": (0.1, NOW + 60, "allowed")}),
    ]
    windows = pool_windows(accounts, NOW)
    assert list(windows) == ["5h", "7d", "7d_sonnet"]
    assert windows["7d_sonnet"].with_room == 1
    assert accounts_with_room(accounts, NOW, "claude-sonnet-4-5") == 1
    assert accounts_with_room(accounts, NOW, "claude-opus-4-5") == 2
    assert accounts_with_room(accounts, NOW) == 2
