"""Routing end to end: the real proxy picks accounts by their weekly pace and keeps sessions."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from teamclaude.fakeupstream import FakeUpstream
from tests.e2e.harness import call, message_body, oauth_account, proxy_status, start_proxy, write_config

BUDGET = 10_000_000
SESSION_HEADER = "x-claude-code-session-id"
AGENT_HEADER = "x-claude-code-agent-id"


def ask(proxy_url: str, session: str, agent: str | None = None) -> None:
    headers = {SESSION_HEADER: session}
    if agent is not None:
        headers[AGENT_HEADER] = agent
    status, _, body = call(proxy_url, "POST", "/v1/messages", message_body(), headers=headers)
    assert status == 200, body


def test_new_sessions_follow_the_pace_line_and_each_stays_on_one_account(tmp_path):
    reset = time.time() + 3.5 * 86400  # every pace line is at 0.5
    accounts = [
        oauth_account(name, seven_day_budget=BUDGET, five_hour_budget=BUDGET,
                      seven_day_used=round(used * BUDGET), seven_day_reset=reset)
        for name, used in (("alice", 0.10), ("bob", 0.30), ("carol", 0.50))
    ]
    with FakeUpstream(accounts=accounts) as fake:
        cfg = write_config(tmp_path, fake.url, accounts)
        with start_proxy(cfg) as proxy:
            # Nothing is known yet: one probe per account (unknown ranks first, ties by name).
            for session in ("probe-1", "probe-2", "probe-3"):
                ask(proxy.url, session)
            ask(proxy.url, "s1")  # alice: furthest behind its line (gap +0.40)
            fake.set_usage("alice", seven_day=0.50)
            ask(proxy.url, "s1")  # still alice (warm); its headers now say gap 0.00
            ask(proxy.url, "s2")  # bob: gap +0.20 is now the best
            fake.set_usage("bob", seven_day=0.55)
            ask(proxy.url, "s2")  # bob now 0.05 ahead: not far over its line, stays
            ask(proxy.url, "s3")  # all within the tie band: fewest warm sessions = carol
            for _ in range(2):
                for session in ("s1", "s2", "s3"):
                    ask(proxy.url, session)

    served: dict[str, list[str]] = {}
    for request in fake.requests:
        if request.path != "/v1/messages":
            continue
        session = dict((k.lower(), v) for k, v in request.headers).get(SESSION_HEADER)
        served.setdefault(session, []).append(request.account)
    assert [served[p][0] for p in ("probe-1", "probe-2", "probe-3")] == ["alice", "bob", "carol"]
    assert served["s1"] == ["alice"] * 4
    assert served["s2"] == ["bob"] * 4
    assert served["s3"] == ["carol"] * 3


def test_a_burst_of_subagents_spreads_while_the_main_conversation_stays(tmp_path):
    reset = time.time() + 3.5 * 86400
    accounts = [
        oauth_account(name, seven_day_budget=BUDGET, five_hour_budget=BUDGET,
                      seven_day_used=round(0.40 * BUDGET), seven_day_reset=reset)
        for name in ("alice", "bob", "carol")
    ]
    session = "0f3e6c1a-5b7d-4e2f-9a1c-3d5e7f9b1c2d"
    agents = [f"a{i:016d}" for i in range(9)]  # 17 characters, as Claude Code sends
    with FakeUpstream(accounts=accounts) as fake:
        cfg = write_config(tmp_path, fake.url, accounts)
        with start_proxy(cfg) as proxy:
            for probe in ("probe-1", "probe-2", "probe-3"):
                ask(proxy.url, probe)  # every account proven
            ask(proxy.url, session)  # the main conversation binds
            with ThreadPoolExecutor(max_workers=len(agents)) as pool:
                list(pool.map(lambda agent: ask(proxy.url, session, agent), agents))
            for _ in range(3):
                ask(proxy.url, session)
            status = proxy_status(proxy)

    main: list[str] = []
    subagents: dict[str, str] = {}
    for request in fake.requests:
        headers = {k.lower(): v for k, v in request.headers}
        if request.path != "/v1/messages" or headers.get(SESSION_HEADER) != session:
            continue
        if AGENT_HEADER in headers:
            subagents[headers[AGENT_HEADER]] = request.account
        else:
            main.append(request.account)
    assert len(main) == 4 and len(set(main)) == 1, main
    assert sorted(subagents) == agents and len(set(subagents.values())) == 3, subagents
    entry = next(e for e in status["sessions"] if e["id"] == session)
    assert entry["account"] == main[0] and entry["rebinds"] == 0
    assert len(entry["conversations"]) == 1 + len(agents)
