"""Cache affinity per conversation (issue 13): subagents have their own bindings, transient
obstacles serve one request elsewhere, only lasting ones move a binding. Explicit clock."""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.engine import Router
from routing.failures import Streaks, classify
from routing.ratelimits import parse_ratelimit_headers
from routing.request_info import read_request
from routing.types import RequestInfo
from routing.usage import Usage
from tests.routing.helpers import DAY, HOUR, T0, limits, oauth, prove, router

SID = "2f7c9d4e-0000-4000-8000-000000000001"


def main(model: str = "claude-opus-4-5") -> RequestInfo:
    return RequestInfo("/v1/messages", model, True, SID)


def sub(agent: str, model: str = "claude-opus-4-5") -> RequestInfo:
    return RequestInfo("/v1/messages", model, True, SID, conversation=agent, agent_id=agent)


def warm_pool(n: int = 4, **config: object) -> Router:
    """n proven accounts close to their line (all within the tie band)."""
    names = "abcdefgh"[:n]
    r = router(*(oauth(x) for x in names), **config)
    for i, x in enumerate(names):
        prove(r, x, T0 - 60, u5=0.2, u7=0.45 + 0.01 * i, reset7_in=3.5 * DAY)
    return r


def bound_account(r: Router, now: float, conversation: str | None = None) -> str:
    for entry in r.snapshot(now)["sessions"]:
        if entry["id"] == SID:
            for member in entry["conversations"]:
                if member["conversation"] == conversation:
                    return member["account"]
    raise AssertionError("conversation not bound")


def serve(r: Router, request: RequestInfo, now: float, exclude=()) -> str:
    d = r.select(request, now, exclude)
    assert d is not None
    r.release(d.ticket, now + 1, Usage(input_tokens=10), 200)
    return d.account


def test_storm_of_subagents_spreads_and_never_moves_the_main_conversation() -> None:
    r = warm_pool()
    home = serve(r, main(), T0)
    tickets = []
    for i in range(12):  # 12 subagent requests of the same session within 3 s
        d = r.select(sub(f"agent{i:012d}"), T0 + 2 + i * 0.25)
        assert d is not None
        tickets.append(d)
    spread = Counter(d.account for d in tickets)
    assert len(spread) == 4 and max(spread.values()) <= 4, spread
    after = r.select(main(), T0 + 5.5)
    assert after is not None and after.account == home and after.reason == "bound"
    assert bound_account(r, T0 + 5.5) == home
    # The Deck still sees one session (its agents listed under it).
    sessions = [e for e in r.snapshot(T0 + 6)["sessions"] if e["id"] == SID]
    assert len(sessions) == 1 and len(sessions[0]["conversations"]) == 13


def test_storm_from_a_client_without_the_agent_header_is_told_apart_by_the_prompt() -> None:
    r = warm_pool()
    headers = {"x-claude-code-session-id": SID}
    home = serve(r, read_request("/v1/messages", headers, json.dumps({
        "model": "claude-opus-4-5", "system": "You are Claude Code.",
        "messages": [{"role": "user", "content": "fix the bug"}]}).encode()), T0)
    accounts = []
    for i in range(12):
        body = json.dumps({"model": "claude-opus-4-5", "system": "cc_is_subagent=true\nYou are an agent.",
                           "messages": [{"role": "user", "content": f"task {i}"}]}).encode()
        d = r.select(read_request("/v1/messages", headers, body), T0 + 2 + i * 0.25)
        assert d is not None
        accounts.append(d.account)
    assert len(set(accounts)) == 4
    assert serve(r, main(), T0 + 5.5) == home


def test_the_inflight_cap_spreads_new_conversations_but_never_moves_a_warm_one() -> None:
    r = warm_pool(2)
    home = serve(r, main(), T0)
    busy = [r.select(sub(f"x{i}"), T0 + 1, exclude={"a", "b"} - {home}) for i in range(5)]
    assert all(d is not None and d.account == home for d in busy)  # home at its cap of 5
    kept = r.select(main(), T0 + 2)
    assert kept is not None and kept.account == home and kept.reason == "bound"
    new = r.select(sub("fresh"), T0 + 2)
    assert new is not None and new.account != home


def test_overlapping_requests_at_the_5h_warn_band_stay_on_their_account() -> None:
    r = warm_pool(3)
    home = serve(r, main(), T0)
    r.observe(home, 200, limits(T0 + 1, u5=0.80, u7=0.45, reset7_in=3.5 * DAY), T0 + 1)
    first = r.select(main(), T0 + 2)
    second = r.select(main(), T0 + 2.5)  # overlaps the first
    assert first is not None and second is not None
    assert first.account == second.account == home and second.reason == "bound"


def answer(r: Router, account: str, status: int, headers: list[tuple[str, str]], now: float):
    parsed = parse_ratelimit_headers(headers)
    r.observe(account, status, parsed, now)
    verdict = classify(status, parsed, account=account, oauth=True, model="claude-opus-4-5", now=now,
                       ladder=r.config.backoff_ladder_s, streaks=Streaks())
    if verdict.bench_until is not None:
        r.bench(account, verdict.bench_until, verdict.reason, now, verdict.bench_family)
    return verdict


def test_529_during_a_warm_conversation_detours_only_the_failed_request() -> None:
    r = warm_pool(3)
    home = serve(r, main(), T0)
    d = r.select(main(), T0 + 10)
    assert d is not None and d.account == home
    verdict = answer(r, home, 529, [], T0 + 11)
    assert verdict.failover and verdict.bench_until == T0 + 41
    r.release(d.ticket, T0 + 11, status=529)
    retry = r.select(main(), T0 + 11, exclude={home})  # the failover of the same request
    assert retry is not None and retry.account != home and retry.reason == "detour"
    r.release(retry.ticket, T0 + 20)
    # The next request of the warm conversation keeps its cache: the cooldown keeps only
    # new conversations away.
    during = r.select(main(), T0 + 25)
    assert during is not None and during.account == home and during.reason == "bound"
    new = r.select(RequestInfo("/v1/messages", "claude-opus-4-5", True, "another"), T0 + 25)
    assert new is not None and new.account != home
    assert bound_account(r, T0 + 30) == home


def test_a_first_bare_429_detours_without_moving_the_binding() -> None:
    r = warm_pool(3)
    home = serve(r, main(), T0)
    d = r.select(main(), T0 + 10)
    verdict = answer(r, home, 429, [], T0 + 11)
    assert verdict.bench_until is None and verdict.failover
    r.release(d.ticket, T0 + 11, status=429)
    retry = r.select(main(), T0 + 11, exclude={home})
    assert retry is not None and retry.reason == "detour" and bound_account(r, T0 + 11) == home


def test_lasting_obstacles_rebind() -> None:
    r = warm_pool(3)
    home = serve(r, main(), T0)
    answer(r, home, 429, [("anthropic-ratelimit-unified-5h-status", "rejected"),
                          ("anthropic-ratelimit-unified-5h-reset", str(int(T0 + 2 * HOUR)))], T0 + 5)
    moved = r.select(main(), T0 + 6, exclude={home})
    assert moved is not None and moved.reason == "blocked" and bound_account(r, T0 + 6) == moved.account
    r.release(moved.ticket, T0 + 7)
    r.mark_needs_login(moved.account, True)
    again = r.select(main(), T0 + 8)
    assert again is not None and again.reason == "blocked" and again.account not in (home, moved.account)


def test_a_rejection_about_to_reset_is_transient() -> None:
    r = warm_pool(3)
    home = serve(r, main(), T0)
    answer(r, home, 429, [("anthropic-ratelimit-unified-5h-status", "rejected"),
                          ("anthropic-ratelimit-unified-5h-reset", str(int(T0 + 120)))], T0 + 5)
    d = r.select(main(), T0 + 6)
    assert d is not None and d.reason == "detour" and bound_account(r, T0 + 6) == home


def test_far_over_the_line_moves_only_past_the_hysteresis() -> None:
    r = warm_pool(3)
    home = serve(r, main(), T0)
    # 0.12 past its line: new work avoids it, the warm conversation stays ...
    r.observe(home, 200, limits(T0 + 1, u5=0.2, u7=0.62, reset7_in=3.5 * DAY), T0 + 1)
    assert serve(r, main(), T0 + 2) == home
    assert r.select(RequestInfo("/v1/messages", "claude-opus-4-5", True, "other"), T0 + 2).account != home
    # ... 0.16 past: it moves.
    r.observe(home, 200, limits(T0 + 3, u5=0.2, u7=0.66, reset7_in=3.5 * DAY), T0 + 3)
    d = r.select(main(), T0 + 4)
    assert d is not None and d.account != home and d.reason == "far-over-line"


# -- property: no transient condition ever changes a binding ------------------------------

transient = st.one_of(
    st.tuples(st.just("subagent"), st.integers(0, 30), st.sets(st.sampled_from("abcd"), max_size=3)),
    st.tuples(st.just("release"), st.integers(0, 40)),
    st.tuples(st.just("cooldown"), st.sampled_from("abcd"), st.sampled_from([529, 500, 502, 503])),
    st.tuples(st.just("bare429"), st.sampled_from("abcd")),
    st.tuples(st.just("short-bench"), st.sampled_from("abcd"), st.floats(1, 290)),
    st.tuples(st.just("main"), st.sets(st.sampled_from("abcd"), max_size=4), st.booleans()),
    st.tuples(st.just("load"), st.sampled_from("abcd"), st.floats(0, 0.97)),
    st.tuples(st.just("advance"), st.floats(0, 6)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(transient, max_size=40))
def test_no_transient_condition_ever_changes_a_binding(ops) -> None:
    r = warm_pool(4)
    now = T0
    home = serve(r, main(), now)
    tickets = []
    streaks = Streaks()
    for op in ops:
        kind = op[0]
        if kind == "subagent":
            d = r.select(sub(f"agent{op[1]}"), now, op[2])
            if d is not None:
                tickets.append(d.ticket)
        elif kind == "release" and tickets:
            r.release(tickets.pop(op[1] % len(tickets)), now, Usage(input_tokens=100), 200)
        elif kind in ("cooldown", "bare429"):
            status = op[2] if kind == "cooldown" else 429
            parsed = parse_ratelimit_headers([])
            r.observe(op[1], status, parsed, now)
            verdict = classify(status, parsed, account=op[1], oauth=True, model="claude-opus-4-5",
                               now=now, ladder=r.config.backoff_ladder_s, streaks=streaks)
            if verdict.bench_until is not None and verdict.bench_until - now <= r.config.warm_window_s:
                r.bench(op[1], verdict.bench_until, verdict.reason, now, verdict.bench_family)
        elif kind == "short-bench":
            r.bench(op[1], now + op[2], "retry-after", now)
        elif kind == "main":
            d = r.select(main(), now, op[1])
            if d is not None:
                if op[2]:
                    r.release(d.ticket, now, Usage(input_tokens=100), 200)
                else:
                    tickets.append(d.ticket)
        elif kind == "load":
            prove(r, op[1], now, u5=op[2], u7=0.45, reset7_in=3.5 * DAY - (now - T0))
        elif kind == "advance":
            now += op[1]
        assert bound_account(r, now) == home, op
