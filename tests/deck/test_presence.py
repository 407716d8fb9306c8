import json

from deck.presence import (
    LAST_TURN_WINDOW_S,
    PresenceTracker,
    decide,
    read_pin,
    read_transcript,
    scan_entries,
)
from tests.deck.claude_home import (
    NOW,
    assistant,
    metadata,
    tool_result,
    tool_use,
    user,
    write_pin,
    write_transcript,
)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_last_turn_31_minutes_old_hides_even_if_file_touched_a_second_ago(tmp_path):
    write_transcript(tmp_path, "s1", [user(NOW - 31 * 60 - 5), assistant(NOW - 31 * 60), metadata()], NOW - 1)
    presence = PresenceTracker(tmp_path, Clock(NOW)).presence("s1", NOW - 7200, NOW)
    assert not presence.visible
    assert presence.last_turn == NOW - 31 * 60


def test_last_turn_29_minutes_old_shows(tmp_path):
    write_transcript(tmp_path, "s1", [user(NOW - 29 * 60)], NOW - 29 * 60)
    assert PresenceTracker(tmp_path, Clock(NOW)).presence("s1", NOW - 7200, NOW).visible


def test_tool_in_flight_shows_however_old(tmp_path):
    write_transcript(tmp_path, "s1", [user(NOW - 7205), assistant(NOW - 7200, tool_use("t1"))], NOW - 7200)
    presence = PresenceTracker(tmp_path, Clock(NOW)).presence("s1", NOW - 9000, NOW)
    assert presence.visible and presence.tool_running


def test_answered_tool_is_not_running(tmp_path):
    entries = [user(NOW - 7205), assistant(NOW - 7200, tool_use("t1")), tool_result(NOW - 7100, "t1")]
    write_transcript(tmp_path, "s1", entries, NOW - 7100)
    presence = PresenceTracker(tmp_path, Clock(NOW)).presence("s1", NOW - 9000, NOW)
    assert not presence.tool_running and not presence.visible


def test_parallel_tools_split_over_entries_run_until_all_answered():
    entries = [
        assistant(NOW - 10, tool_use("a"), message_id="m1"),
        assistant(NOW - 9, tool_use("b"), message_id="m1"),
        tool_result(NOW - 8, "b"),
    ]
    last, running, saw_assistant = scan_entries(entries)
    assert running and saw_assistant and last == NOW - 8
    assert not scan_entries(entries + [tool_result(NOW - 7, "a")])[1]


def test_stub_transcript_falls_back_to_mtime(tmp_path):
    write_transcript(tmp_path, "fresh", [metadata()], NOW - 60)
    write_transcript(tmp_path, "old", [metadata()], NOW - LAST_TURN_WINDOW_S - 60)
    tracker = PresenceTracker(tmp_path, Clock(NOW))
    assert tracker.presence("fresh", None, NOW).visible
    assert not tracker.presence("old", None, NOW).visible


def test_new_session_without_transcript_shows_for_120_seconds(tmp_path):
    tracker = PresenceTracker(tmp_path, Clock(NOW))
    assert tracker.presence("brand-new", NOW - 100, NOW).visible
    assert not tracker.presence("brand-new", NOW - 130, NOW).visible
    assert not tracker.presence("brand-new", None, NOW).visible


def test_real_turn_far_before_a_long_tail_is_found(tmp_path):
    filler = [{"type": "file-history-snapshot", "blob": "x" * 1000} for _ in range(200)]
    path = write_transcript(tmp_path, "s1", [user(NOW - 60), assistant(NOW - 59)] + filler, NOW)
    assert path.stat().st_size > 64 * 1024 * 2
    info = read_transcript(path)
    assert info.last_turn == NOW - 59


def test_unsafe_session_ids_never_leave_the_directory(tmp_path):
    outside = tmp_path / "outside"
    write_transcript(outside, "evil", [user(NOW)], NOW)
    tracker = PresenceTracker(tmp_path / "claude", Clock(NOW))
    assert tracker.transcript_path("../outside/projects/-work-proj/evil") is None
    assert tracker.pin("../../x") is None
    assert tracker.transcript_path("*") is None


def test_reads_are_cached_for_two_seconds_then_refreshed_on_change(tmp_path):
    clock = Clock(NOW)
    tracker = PresenceTracker(tmp_path, clock)
    path = write_transcript(tmp_path, "s1", [user(NOW - 40 * 60)], NOW - 40 * 60)
    assert not tracker.presence("s1", None, NOW).visible
    write_transcript(tmp_path, "s1", [user(NOW - 40 * 60), assistant(NOW - 1)], NOW - 1)
    clock.now = NOW + 1
    assert not tracker.presence("s1", None, NOW + 1).visible  # still cached
    clock.now = NOW + 3
    assert tracker.presence("s1", None, NOW + 3).visible
    assert path.exists()


def test_pin_fields(tmp_path):
    write_pin(tmp_path, "s1", issueId="ISS-1", parentId="ISS-0", title="T", status="Review", intent="fix")
    pin = read_pin(tmp_path / "state" / "sessions" / "s1" / "pin.json")
    assert (pin.issue_id, pin.parent_id, pin.title, pin.status, pin.intent) == ("ISS-1", "ISS-0", "T", "review", "fix")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    assert read_pin(bad) is None
    bad.write_text(json.dumps({"parentId": "x"}))
    assert read_pin(bad) is None


def test_decide_without_transcript_uses_start_only():
    assert decide(None, NOW - 10, NOW).visible
    assert not decide(None, NOW - 500, NOW).visible
