"""The Deck's shared-pool view (deck.pool): header health, pool section, which proxy serves
a session — rendered to text at several terminal sizes, as test_view does."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from deck import pool
from deck.monitor import Monitor
from deck.presence import PresenceTracker
from deck.statefile import StateReader
from deck.view import render, render_summary
from tests.deck.claude_home import FIXTURES, NOW, build_fleet_home, shared_pool, write_state

SIZES = [(80, 24), (120, 36), (160, 48)]
DEGRADED = {"healthy": False, "degraded_since": NOW - 130,
            "error": "ConnectionError: Error 111 connecting to 10.0.0.5:6379.\n  Connection refused."}


def screen(monitor: Monitor, width: int, height: int) -> str:
    console = Console(record=True, width=width, height=height, color_system=None, file=io.StringIO())
    console.print(render(monitor.frame(), width, height))
    text = console.export_text()
    lines = text.splitlines()
    assert len(lines) == height and all(len(line) <= width for line in lines)
    return text


def line_with(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def index_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines()) if needle in line)


@pytest.fixture
def deck_for(tmp_path):
    claude = build_fleet_home(tmp_path / "claude")

    def make(shared: object, name: str = "fleet.json") -> Monitor:
        path = write_state(tmp_path, name, shared)
        return Monitor(StateReader(path), PresenceTracker(claude, lambda: NOW), lambda: NOW)

    return make


@pytest.mark.parametrize("size", SIZES)
def test_in_step_header_and_one_line_per_proxy(deck_for, size):
    text = screen(deck_for(shared_pool()), *size)
    assert "⇄ shared pool in step · 2 proxies, 1 stopped reporting" in text
    assert "DEGRADED" not in text
    assert "Pool · 1.2k req · 3.4M tok · $12.51 in total" in text  # the pool's usage, every proxy
    this = line_with(text, "laptop-ana pid 41234 (this)")
    assert "(this) · 2 in flight · 3 warm: alice 2, bob 1" in this and "not here" not in this
    assert "ci-runner-3 pid 777 · 3 in flight · 1 held · 3 warm" in text
    assert "build-9 pid 4242 stopped reporting 16m40s ago" in text
    # This proxy first, the one that stopped reporting last.
    assert index_of(text, "laptop-ana pid") < index_of(text, "ci-runner-3 pid") < index_of(text, "build-9 pid")


def test_in_step_header_names_the_masked_url_when_it_fits(deck_for):
    assert line_with(screen(deck_for(shared_pool()), 160, 48), "in step").rstrip().endswith("redis://:***@10.0.0.5:6379/0")
    assert "redis://" not in line_with(screen(deck_for(shared_pool()), 80, 24), "in step")  # never cut


@pytest.mark.parametrize("size", [(120, 36), (200, 48)])
def test_another_proxy_counts_the_sessions_this_one_does_not_list(deck_for, size):
    other = line_with(screen(deck_for(shared_pool()), *size), "ci-runner-3 pid 777")
    # remote01 and remote02 are only there; deep0004 is in this state file too.
    assert other.rstrip().endswith("· 3 in flight · 1 held · 3 warm: bob 2, alice 1 (2 not here)")


@pytest.mark.parametrize("size", SIZES + [(40, 8), (60, 16)])
def test_degraded_is_unmistakable_at_every_size(deck_for, size):
    text = screen(deck_for(shared_pool(**DEGRADED)), *size)
    alarm = text.splitlines()[2]  # right below the title and the capacity chip
    assert alarm.startswith("⚠ SHARED POOL DEGRADED")
    if size[0] >= 80:
        assert "⚠ SHARED POOL DEGRADED for 2m10s: serving from this proxy's own view" in alarm
        # The error in short: on one line.
        assert "ConnectionError: Error 111 connecting to 10.0.0.5:6379. Connection refused." in text.splitlines()[3]
    assert "in step" not in text


def test_degraded_styles_the_alarm_red_and_marks_the_pool_as_last_seen(deck_for):
    state = deck_for(shared_pool(**DEGRADED)).frame().snapshot.state
    alarm, why = pool.health_lines(state, NOW, 120)
    assert alarm.style == pool.DEGRADED_STYLE and "red" in str(why.style)
    assert "(as last seen)" in pool.section_lines(state, NOW, 120, 10)[0].plain


def test_degraded_without_a_time_or_an_error_still_says_so(deck_for):
    text = screen(deck_for(shared_pool(healthy=False, degraded_since=None, error=None)), 100, 30)
    assert "⚠ SHARED POOL DEGRADED: serving from this proxy's own view" in text
    assert "not connected" in text.splitlines()[3]


def test_a_long_error_is_cut_short():
    error = "RedisError: " + "x" * 500
    assert len(pool.short_error(error)) == pool.ERROR_CHARS and pool.short_error(error).endswith("…")
    assert pool.short_error("a\n   b\tc") == "a b c"


@pytest.mark.parametrize("size", SIZES)
def test_a_proxy_that_stopped_reporting_is_red_with_how_long_ago(deck_for, size):
    state = deck_for(shared_pool()).frame().snapshot.state
    lines = pool.section_lines(state, NOW, size[0], 10)
    stopped = next(line for line in lines if "build-9" in line.plain)
    assert "stopped reporting 16m40s ago" in stopped.plain and stopped.style == "red"
    assert "1 stopped reporting" in screen(deck_for(shared_pool()), *size)


def test_the_tree_says_which_proxy_serves_a_session(deck_for):
    text = screen(deck_for(shared_pool()), 200, 48)
    assert "@alice · via laptop-ana" in line_with(text, "Ship the deck")
    assert "@bob · via ci-runner-3,laptop-ana" in line_with(text, "Cycle guard")  # served by both
    assert "via" not in line_with(text, "Presence rules")  # no proxy reports it warm
    assert "via laptop-ana" in line_with(text, "Tree view")
    # Sessions served only elsewhere are counted on their proxy, not listed.
    assert "remote01" not in text and "remote02" not in text


def test_no_proxy_tags_when_only_one_proxy_reports(deck_for):
    shared = shared_pool()
    shared["instances"] = [i for i in shared["instances"] if i["this"] or i["stopped"]]
    text = screen(deck_for(shared), 200, 48)
    assert "via " not in text
    assert "in total · 1 proxy, 1 stopped reporting" in line_with(text, "Pool ·")


def test_many_proxies_are_trimmed_to_a_third_of_the_screen(deck_for):
    shared = shared_pool()
    shared["instances"] = [{"id": f"h{n}", "host": f"host-{n:02d}", "pid": n, "seen": NOW, "conversations": []}
                           for n in range(40)]
    text = screen(deck_for(shared), 80, 24)
    assert "more proxies" in text
    assert index_of(text, "more proxies") - index_of(text, "Pool ·") + 1 <= (24 - 4) // 3
    assert "alice@example.com" in text and "ci-key" in text  # the accounts keep their place


def test_the_plain_summary_lists_every_proxy(deck_for):
    console = Console(record=True, width=100, color_system=None, file=io.StringIO())
    console.print(render_summary(deck_for(shared_pool(**DEGRADED)).frame(), 100))
    text = console.export_text()
    assert "SHARED POOL DEGRADED" in text
    for name in ("laptop-ana pid 41234", "ci-runner-3 pid 777", "build-9 pid 4242"):
        assert name in text


@pytest.mark.parametrize("size", SIZES)
def test_without_a_pool_nothing_changes(deck_for, size):
    plain = screen(Monitor(StateReader(FIXTURES / "fleet.json"),
                           deck_for(None).tracker, lambda: NOW), *size)
    assert screen(deck_for(None), *size) == plain  # `shared: null` is the same as no key
    assert "Pool" not in plain and "shared pool" not in plain and "via " not in plain


HOSTILE = [
    "yes", 0, [], {"instances": [{"conversations": [{"session": "lead0001-aaaa"}] * 5000, "this": True}] * 3},
    {"healthy": False, "degraded_since": 1e300, "error": "\x1b[2J\x1b[31mboom\x07" * 50, "url": "\x1b]0;x\x07"},
    {"healthy": True, "instances": [{"host": "a" * 500, "pid": -1, "seen": -1e300, "stopped": True}] * 200,
     "usage": {"a" * 300: {"tokens": 1e300, "cost_usd": -5, "requests": 2**80}}},
]


@pytest.mark.parametrize("shared", HOSTILE)
def test_a_hostile_shared_key_never_crashes_the_deck(deck_for, shared):
    monitor = deck_for(shared)
    for size in SIZES + [(40, 8)]:
        text = screen(monitor, *size)
        assert "\x1b" not in text and "\x07" not in text
