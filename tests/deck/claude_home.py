"""Builds a fake Claude Code directory (transcripts, pins) for the fleet fixture."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
NOW = 1795000000.0  # "now" of fixtures/fleet.json


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def user(t: float, text: str = "go") -> dict:
    return {"type": "user", "timestamp": iso(t), "message": {"role": "user", "content": text}}


def assistant(t: float, *blocks: dict, message_id: str = "msg_1") -> dict:
    content = list(blocks) or [{"type": "text", "text": "ok"}]
    return {"type": "assistant", "timestamp": iso(t),
            "message": {"id": message_id, "role": "assistant", "content": content}}


def tool_use(tool_id: str) -> dict:
    return {"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"command": "make"}}


def tool_result(t: float, tool_id: str) -> dict:
    return {"type": "user", "timestamp": iso(t),
            "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "done"}]}}


def metadata() -> dict:
    """Harness bookkeeping with no timestamp: it touches the file but is no real turn."""
    return {"type": "summary", "summary": "a title", "leafUuid": "x"}


def write_transcript(root: Path, sid: str, entries: list[dict], mtime: float, project: str = "-work-proj") -> Path:
    path = root / "projects" / project / f"{sid}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    os.utime(path, (mtime, mtime))
    return path


def write_pin(root: Path, sid: str, **pin: str) -> None:
    path = root / "state" / "sessions" / sid / "pin.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(pin))


def recent(t: float) -> list[dict]:
    return [user(t - 5), assistant(t)]


def build_fleet_home(root: Path) -> Path:
    """Transcripts and pins matching the sessions of fixtures/fleet.json."""
    for sid in ("lead0001-aaaa", "work0002-bbbb", "work0003-cccc", "deep0004-dddd",
                "cyca0005-eeee", "cycb0006-ffff", "orph0007-gggg"):
        write_transcript(root, sid, recent(NOW - 60), NOW - 60)
    write_transcript(root, "solo0008-hhhh", recent(NOW - 600), NOW - 600)
    # Last real turn 31 minutes ago, but harness metadata touched the file a second ago.
    write_transcript(root, "hide0009-iiii", recent(NOW - 31 * 60) + [metadata()], NOW - 1)
    # A tool started two hours ago and has not returned yet.
    write_transcript(root, "tool0010-jjjj",
                     [user(NOW - 7205), assistant(NOW - 7200, tool_use("toolu_1"))], NOW - 7200)

    write_pin(root, "lead0001-aaaa", issueId="ISS-1", title="Ship the deck", status="work",
              intent="coordinating workers")
    write_pin(root, "work0002-bbbb", issueId="ISS-2", parentId="ISS-1", title="Tree view", status="work")
    write_pin(root, "work0003-cccc", issueId="ISS-3", parentId="ISS-1", title="Presence rules", status="review")
    write_pin(root, "deep0004-dddd", issueId="ISS-4", parentId="ISS-2", title="Cycle guard", status="block")
    write_pin(root, "cyca0005-eeee", issueId="ISS-10", parentId="ISS-11", title="Loop A", status="todo")
    write_pin(root, "cycb0006-ffff", issueId="ISS-11", parentId="ISS-10", title="Loop B", status="todo")
    write_pin(root, "orph0007-gggg", issueId="ISS-20", parentId="ISS-99", title="Orphan task", status="queued")
    write_pin(root, "hide0009-iiii", issueId="ISS-30", title="Hidden work", status="work")
    return root


def copy_fixture(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copyfile(FIXTURES / name, target)
    return target


AGENT_SESSIONS = ("main0001-aaaa", "bgjob002-bbbb", "plain003-cccc")


def build_agents_home(root: Path) -> Path:
    """Transcripts (and no pin.json at all) for the sessions of fixtures/agents.json."""
    for sid in AGENT_SESSIONS:
        write_transcript(root, sid, recent(NOW - 20), NOW - 20)
    return root


def shared_pool(**changes: object) -> dict:
    """fixtures/shared.json (a pool of three proxies, one stopped) with `changes` applied."""
    return {**json.loads((FIXTURES / "shared.json").read_text()), **changes}


def write_state(dest: Path, name: str, shared: object) -> Path:
    """fixtures/<name> with `shared` as its `shared` key, written into `dest`."""
    state = json.loads((FIXTURES / name).read_text())
    state["shared"] = shared
    target = dest / name
    target.write_text(json.dumps(state))
    return target
