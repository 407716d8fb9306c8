import json
import os
import time

from deck.statefile import StateReader, Snapshot, peek_seq, staleness


def write(path, seq, **extra):
    state = {"version": 1, "seq": seq, "written_at": 1000.0 + seq, "accounts": [], **extra}
    path.write_text(json.dumps(state))
    # Same-size rewrites within one mtime tick must still look changed to the reader.
    stamp = 1_700_000_000 + seq * 10 + len(extra)
    os.utime(path, (stamp, stamp))


def test_parses_only_when_seq_changes(tmp_path):
    path = tmp_path / "state.json"
    write(path, 1, current="alice")
    reader = StateReader(path)
    assert reader.poll().state.current == "alice"
    assert reader.parse_count == 1

    assert reader.poll().state.current == "alice"  # file untouched: not even read
    assert reader.parse_count == 1

    write(path, 1, current="bob", pinned="x")  # rewritten, same seq: not decoded again
    assert reader.poll().state.current == "alice"
    assert reader.parse_count == 1

    write(path, 2, current="bob")
    assert reader.poll().state.current == "bob"
    assert reader.parse_count == 2


def test_garbage_keeps_last_good_view(tmp_path):
    path = tmp_path / "state.json"
    write(path, 5, current="alice")
    reader = StateReader(path)
    reader.poll()
    path.write_text('{"version": 1, "seq": 6, "accou')  # partial write
    snap = reader.poll()
    assert snap.state.current == "alice" and snap.state.seq == 5
    assert "unreadable" in snap.problem and "last good view" in snap.problem

    write(path, 7, current="carol")
    snap = reader.poll()
    assert snap.problem is None and snap.state.current == "carol"


def test_missing_file_says_proxy_not_running(tmp_path):
    snap = StateReader(tmp_path / "nope.json").poll()
    assert snap.state is None
    assert staleness(snap, time.time()).startswith("proxy not running")


def test_newer_version_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 2, "seq": 1}))
    snap = StateReader(path).poll()
    assert snap.state is None
    assert "version 2 is newer" in snap.problem


def test_stale_message_names_time_and_age(tmp_path):
    path = tmp_path / "state.json"
    write(path, 1)
    snap = StateReader(path).poll()
    written = snap.state.written_at
    assert staleness(snap, written + 3) is None
    message = staleness(snap, written + 42)
    since = time.strftime("%H:%M:%S", time.localtime(written))
    assert f"state stale since {since} (42s)" in message


def test_peek_seq_ignores_nested_keys():
    assert peek_seq(b'{"persist": {"seq": 3}, "seq": 9}') == 9
    assert peek_seq(b'{"version": 1, "seq": 12, "x": 1}') == 12
    assert peek_seq(b'{"persist": {"seq": 3}}') is None


def test_snapshot_without_state_has_no_staleness_beyond_problem(tmp_path):
    assert staleness(Snapshot(tmp_path, None, None), 0.0) is None
