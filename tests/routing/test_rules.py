"""routing.rules: the client's pin and the model rules, and the engine honouring them
(explicit clock)."""

from __future__ import annotations

import dataclasses

import pytest

from routing.rules import ModelRules, Refusal, admit, parse_blocked, parse_routes
from routing.types import RequestInfo
from tests.routing.helpers import DAY, HOUR, T0, apikey, oauth, prove, req, router

NO_RULES = ModelRules()
ACCOUNTS = (oauth("work"), oauth("home"), oauth("old", disabled=True), apikey("key"))


def restricted(request: RequestInfo, pin: str | None = None, rules: ModelRules = NO_RULES) -> RequestInfo:
    admitted = admit(request, pin, rules, ACCOUNTS)
    assert isinstance(admitted, RequestInfo), admitted
    return admitted


def refusal(request: RequestInfo, pin: str | None = None, rules: ModelRules = NO_RULES) -> Refusal:
    admitted = admit(request, pin, rules, ACCOUNTS)
    assert isinstance(admitted, Refusal), admitted
    return admitted


# ---- admit -------------------------------------------------------------------------


def test_no_pin_and_no_rule_leaves_the_request_as_it_is() -> None:
    request = req("s")
    assert admit(request, None, ModelRules(blocked=("claude-haiku-*",)), ACCOUNTS) is request


def test_blocked_model_is_a_400_naming_the_rule_whatever_the_case() -> None:
    rules = ModelRules(blocked=("claude-sonnet-*", "CLAUDE-OPUS-4-*"))
    refused = refusal(req("s", model="claude-opus-4-5"), pin="work", rules=rules)
    assert (refused.status, refused.kind) == (400, "invalid_request_error")
    assert "'claude-opus-4-5'" in refused.message and "'CLAUDE-OPUS-4-*'" in refused.message


def test_request_without_a_model_is_never_blocked_nor_routed() -> None:
    rules = ModelRules(blocked=("*",), routes=(("*", ("work",)),))
    request = RequestInfo(path="/v1/models")
    assert admit(request, None, rules, ACCOUNTS) is request


def test_pin_restricts_to_the_named_account() -> None:
    pinned = restricted(req("s"), pin="home")
    assert pinned.pin == "home" and pinned.allowed is None
    assert pinned.allows("home") and not pinned.allows("work")


def test_unknown_pin_is_a_400_listing_the_accounts() -> None:
    refused = refusal(req("s"), pin="nobody")
    assert refused.status == 400
    assert "x-teamclaude-account" in refused.message and "'nobody'" in refused.message
    assert "home, key, old, work" in refused.message


def test_disabled_pin_is_a_403_saying_how_to_enable_it() -> None:
    refused = refusal(req("s"), pin="old")
    assert (refused.status, refused.kind) == (403, "permission_error")
    assert "disabled" in refused.message and "teamclaude enable old" in refused.message


def test_first_matching_route_limits_the_accounts_and_unknown_names_are_ignored() -> None:
    rules = ModelRules(routes=(("claude-opus-*", ("work", "ghost")), ("claude-*", ("home",))))
    opus = restricted(req("s", model="claude-opus-4-5"), rules=rules)
    assert opus.allowed == frozenset({"work"}) and opus.route_rule == "claude-opus-*"
    haiku = restricted(req("s", model="claude-haiku-4-5"), rules=rules)
    assert haiku.allowed == frozenset({"home"})
    other = req("s", model="gpt-5")
    assert admit(other, None, rules, ACCOUNTS) is other


def test_route_with_no_enabled_account_is_refused_not_held() -> None:
    rules = ModelRules(routes=(("claude-opus-*", ("old", "ghost")),))
    refused = refusal(req("s"), rules=rules)
    assert refused.status == 403 and "'claude-opus-*'" in refused.message


def test_pin_outside_the_models_route_is_a_403_naming_both() -> None:
    rules = ModelRules(routes=(("claude-opus-*", ("work",)),))
    refused = refusal(req("s"), pin="home", rules=rules)
    assert refused.status == 403
    assert "'home'" in refused.message and "'claude-opus-*'" in refused.message
    inside = restricted(req("s"), pin="work", rules=rules)
    assert inside.allows("work") and not inside.allows("home")


def test_settings_values_are_validated() -> None:
    assert parse_blocked(["a*", " b "]) == ("a*", "b")
    assert parse_blocked("a*") == ("a*",)
    assert parse_routes({"opus*": ["x", "y"], "haiku*": "z"}) == (("opus*", ("x", "y")), ("haiku*", ("z",)))
    for bad in (3, {"a": 1}, [""], [None]):
        with pytest.raises(ValueError):
            parse_blocked(bad)
    for bad in (["a"], {"opus*": []}, {"opus*": [""]}, {"": ["x"]}, {"opus*": [3]}):
        with pytest.raises(ValueError):
            parse_routes(bad)


# ---- the engine honours the restriction ------------------------------------------------


def test_pinned_new_conversation_goes_to_the_pin_even_when_another_is_better() -> None:
    r = router(oauth("a"), oauth("b"))
    prove(r, "a", T0, u7=0.1)
    prove(r, "b", T0, u7=0.9)  # far ahead of its line: the pace rule would never pick it
    request = dataclasses.replace(req("s"), pin="b")
    decision = r.select(request, T0)
    assert decision is not None and decision.account == "b"
    assert "x-teamclaude-account" in decision.detail


def test_pinned_request_is_never_served_elsewhere_and_waiting_is_for_the_pin_alone() -> None:
    r = router(oauth("a"), oauth("b"))
    prove(r, "a", T0)
    prove(r, "b", T0)
    r.bench("b", T0 + 60, "retry-after 60s", T0)
    pinned = dataclasses.replace(req("s"), pin="b")
    assert r.select(pinned, T0) is None
    assert r.may_free_up(set(), T0, pinned)  # b frees up: a hold makes sense
    assert not r.may_free_up({"b"}, T0, pinned)  # b refused it: a (usable) does not count
    assert r.select(pinned, T0 + 61).account == "b"


def test_pin_moves_a_warm_conversation_and_a_model_route_only_detours_it() -> None:
    r = router(oauth("a"), oauth("b"))
    prove(r, "a", T0, u7=0.1)
    prove(r, "b", T0, u7=0.1)
    first = r.select(req("s"), T0)
    assert first is not None
    r.release(first.ticket, T0 + 1)
    other = "b" if first.account == "a" else "a"
    routed = dataclasses.replace(req("s"), allowed=frozenset({other}), route_rule="claude-opus-*")
    detour = r.select(routed, T0 + 2)
    assert detour is not None and (detour.account, detour.reason) == (other, "detour")
    assert "model_routes 'claude-opus-*'" in detour.detail
    r.release(detour.ticket, T0 + 3)
    assert r.select(req("s"), T0 + 4).account == first.account  # binding stayed
    moved = r.select(dataclasses.replace(req("s"), pin=other), T0 + 5)
    assert moved is not None and (moved.account, moved.reason) == (other, "client-pin")
    r.release(moved.ticket, T0 + 6)
    assert r.select(req("s"), T0 + 7).account == other  # the conversation followed the pin


def test_restricted_sessionless_request_does_not_move_the_sticky_account() -> None:
    r = router(oauth("a"), oauth("b"))
    prove(r, "a", T0, u7=0.1)
    prove(r, "b", T0, u7=0.5)
    assert r.select(req(None), T0).account == "a"
    assert r.select(dataclasses.replace(req(None), pin="b"), T0 + 1).account == "b"
    assert r.select(req(None), T0 + 2).account == "a"
    assert r.snapshot(T0 + 2)["current"] == "a"


# ---- priority: a preference among accounts the pace rule finds equally good -------------


def test_priority_decides_among_equally_paced_accounts() -> None:
    r = router(oauth("a", priority=5), oauth("b", priority=-1), oauth("c"))
    for name in "abc":
        prove(r, name, T0, u7=0.3, reset7_in=3.5 * DAY)
    decision = r.select(req("s1"), T0)
    assert decision is not None and decision.account == "b"
    assert "priority -1 first" in decision.detail


def test_priority_never_overrides_the_pace_line() -> None:
    r = router(oauth("preferred", priority=-10), oauth("other"))
    prove(r, "preferred", T0, u7=0.8, reset7_in=3.5 * DAY)  # far ahead of its weekly line
    prove(r, "other", T0, u7=0.1, reset7_in=3.5 * DAY)
    assert r.select(req("s1"), T0).account == "other"


def test_priority_change_by_reload_applies_to_new_conversations_only() -> None:
    r = router(oauth("a"), oauth("b"))
    for name in "ab":
        prove(r, name, T0, u7=0.3)
    first = r.select(req("s1"), T0)
    assert first is not None and first.account == "a"  # equal: by name
    r.release(first.ticket, T0 + 1)
    r.set_accounts([oauth("a", priority=1), oauth("b")])
    assert r.select(req("s2"), T0 + 2).account == "b"
    assert r.select(req("s1"), T0 + 3 + HOUR / 3600).account == "a"  # warm: keeps its cache
