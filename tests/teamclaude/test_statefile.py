import asyncio
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from teamclaude import statefile
from teamclaude.statefile import StateWriter, read_state
from tests.child_output import Lines
from tests.tasks import cancel_and_wait


async def on_disk(path, condition, timeout: float = 10.0) -> dict:
    """The state file once what is on disk satisfies `condition`.

    `writer.seq` moves before the write, which runs in a worker thread: a test that read the
    file when `seq` moved could see the previous file, or none.
    """
    deadline = time.monotonic() + timeout
    while (state := read_state(path)) is None or not condition(state):
        assert time.monotonic() < deadline, f"the state file never matched; last read: {state}"
        await asyncio.sleep(0.01)
    return state


async def stop(task: asyncio.Task) -> None:
    await cancel_and_wait(task, "the state writer")


async def test_writes_versioned_state_and_coalesces(tmp_path):
    path = tmp_path / "sub" / "state.json"
    builds = []

    def build():
        builds.append(1)
        return {"accounts": [{"name": "a"}]}

    writer = StateWriter(path, build, min_interval_s=0.05, heartbeat_s=5)
    task = asyncio.create_task(writer.run())
    for _ in range(50):
        writer.mark_dirty()
    document = await on_disk(path, lambda state: state["seq"] >= 1)
    await stop(task)
    assert document["version"] == 1 and document["accounts"] == [{"name": "a"}]
    assert len(builds) <= 2
    assert oct(path.stat().st_mode & 0o777) == "0o600"


async def test_heartbeat_moves_written_at(tmp_path):
    path = tmp_path / "state.json"
    writer = StateWriter(path, dict, min_interval_s=0.0, heartbeat_s=0.05)
    task = asyncio.create_task(writer.run())
    first = await on_disk(path, lambda state: True)
    later = await on_disk(path, lambda state: state["seq"] >= first["seq"] + 2)  # heartbeats only
    await stop(task)
    assert later["written_at"] > first["written_at"]


async def test_directory_removed_while_running_is_recreated(tmp_path):
    path = tmp_path / "gone" / "state.json"
    writer = StateWriter(path, dict)
    await writer.write_now()
    os.unlink(path)
    os.rmdir(path.parent)
    await writer.write_now()
    assert read_state(path)["seq"] == 2


async def test_disk_full_is_reported_once_and_old_file_kept(tmp_path, monkeypatch, caplog):
    path = tmp_path / "state.json"
    writer = StateWriter(path, lambda: {"n": 1})
    await writer.write_now()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(statefile, "atomic_write", full)
    with caplog.at_level("ERROR"):
        for _ in range(3):
            await writer.write_now()
    assert len([r for r in caplog.records if "state file" in r.getMessage()]) == 1
    assert "No space left" in writer.last_error
    assert read_state(path)["n"] == 1
    monkeypatch.undo()
    await writer.write_now()
    assert writer.last_error is None and read_state(path)["seq"] == 5


def test_killed_writer_never_leaves_a_partial_file(tmp_path):
    path = tmp_path / "state.json"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from teamclaude.statefile import StateWriter
        writer = StateWriter(Path({str(path)!r}), lambda: {{"blob": "x" * 2_000_000}})
        print("ready", flush=True)
        while True:
            writer.write_sync()
    """)
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            Lines(child.stdout, "the writing child").wait_for(lambda line: line == "ready\n", "'ready'")
            deadline = time.monotonic() + 30
            while not path.exists():
                assert child.poll() is None, "the writing child died before its first write"
                assert time.monotonic() < deadline, "the writing child wrote no state file within 30 s"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
        document = json.loads(path.read_bytes())
        assert len(document["blob"]) == 2_000_000


def test_read_state_tolerates_garbage(tmp_path):
    path = tmp_path / "state.json"
    assert read_state(path) is None
    path.write_bytes(b"{half")
    assert read_state(path) is None


def test_encoding_in_slices_gives_the_bytes_of_one_json_dumps_call():
    snapshot = {
        "accounts": [{"name": "a", "windows": {"5h": {"utilization": 0.5}}}, {"name": "b", "x": None}],
        "sessions": [{"id": f"s{i}", "warm": i % 2 == 0} for i in range(statefile._ITEMS_PER_CALL * 2 + 3)],
        "empty": [],
        "activity": [{"t": 1.5, "note": "é \"quoted\"", "path": statefile.Path("/p")}],
        "totals": {"requests": 3, "models": {"m": [1, 2]}},
        "current": None,
    }
    encoded = statefile.encode_state(snapshot, 7, 12.25)
    expected = {"version": statefile.VERSION, "seq": 7, "written_at": 12.25, **snapshot}
    assert encoded == json.dumps(expected, separators=(",", ":"), allow_nan=False, default=str).encode()
    assert json.loads(encoded)["activity"][0]["path"] == "/p"


def test_conversations_per_session_are_bounded_main_and_busy_ones_first():
    conversations = [{"conversation": f"agent-{i}", "inflight": 0, "last_used": float(i)} for i in range(40)]
    conversations[3]["inflight"] = 1
    conversations.append({"conversation": None, "inflight": 0, "last_used": 0.0})
    sessions = [{"id": "s", "conversations": conversations}, {"id": "small", "conversations": conversations[:2]}]
    statefile.bound_conversations(sessions, limit=5)
    kept = [c["conversation"] for c in sessions[0]["conversations"]]
    assert kept == [None, "agent-3", "agent-39", "agent-38", "agent-37"]
    assert sessions[0]["conversations_omitted"] == 36
    assert len(sessions[1]["conversations"]) == 2 and "conversations_omitted" not in sessions[1]


def test_token_problem_names_a_pair_the_pool_cannot_compare() -> None:
    token_problem = statefile.token_problem
    lost = {"error": "shared state redis://:***@r:6379/0: reading rotations failed (ConnectionError)"}
    assert token_problem({"token_shared": lost}) == f"token not shared: {lost['error']}"
    assert token_problem({"token_shared": {"rotation": 3, "by": "b:1:ab"}}) is None
    assert token_problem({"token_shared": lost, "token_refresh_error": "x"}) == "refresh failing: x"
