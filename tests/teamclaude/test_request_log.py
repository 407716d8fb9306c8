"""The request log: record format, redaction, file modes, pruning, never blocking (behaviour §11)."""

from __future__ import annotations

import asyncio
import errno
import gzip
import json
import logging
import os
import stat
import threading
import time

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from teamclaude.inflate import MAX_INFLATED_BODY
from teamclaude.request_log import RequestLog, entry_for, file_name, prune, render, written_at

ACCESS = "sk-ant-oat01-alice-access-secret"
REFRESH = "sk-ant-ort01-alice-refresh-secret"
API_KEY = "sk-ant-api03-ci-key-secret"
PROXY_KEY = "tc-proxykey-abcdefghijklmnopqrstuvwx"
CLIENT_REFRESH = "client-refresh-token-without-a-prefix"
SECRETS = (ACCESS, REFRESH, API_KEY, PROXY_KEY)
FACTS = {"kind": "pooled", "status": 200, "duration_ms": 12, "account": "alice", "reason": "new session"}


def a_flow(path: str = "/v1/messages", request_body: bytes = b'{"model":"claude-sonnet-4-5"}',
           response_body: bytes = b'{"usage":{"input_tokens":1}}', **response_headers: str) -> http.HTTPFlow:
    flow = tflow.tflow(resp=True)
    flow.request.method = "POST"
    flow.request.path = path
    flow.request.headers.clear()
    flow.request.headers["authorization"] = "<account:alice>"
    flow.request.headers["x-api-key"] = API_KEY
    flow.request.headers["cookie"] = "session=abc"
    flow.request.headers["x-claude-code-session-id"] = "s-1"
    flow.request.headers["x-note"] = f"the proxy key {PROXY_KEY} leaked into a header"
    flow.request.content = request_body
    flow.response.headers.clear()
    flow.response.headers["set-cookie"] = "cf=1"
    flow.response.headers["content-type"] = "application/json"
    for name, value in response_headers.items():
        flow.response.headers[name.replace("_", "-")] = value
    flow.response.content = response_body
    return flow


def record(flow: http.HTTPFlow, bodies: bool, facts=None) -> dict:
    entry = entry_for(flow, facts or FACTS, bodies=bodies, secrets=SECRETS)
    data = render(entry, bodies=bodies)
    assert data.endswith(b"\n") and data.count(b"\n") == 1  # one line: `cat *.json` is JSON Lines
    for secret in (*SECRETS, CLIENT_REFRESH):
        assert secret.encode() not in data
    return json.loads(data)


def test_record_has_the_facts_and_redacted_headers_but_no_bodies_by_default():
    flow = a_flow()
    document = record(flow, bodies=False)
    assert document["v"] == 1 and document["id"] == flow.id
    assert {k: document[k] for k in FACTS} == FACTS
    assert document["method"] == "POST" and document["url"].endswith("/v1/messages")
    assert document["time"].endswith("Z")
    headers = dict(document["request"]["headers"])
    assert headers["authorization"] == "<account:alice>"  # names the account, holds no token
    assert headers["x-api-key"] == headers["cookie"] == "<redacted>"
    assert headers["x-claude-code-session-id"] == "s-1"
    assert headers["x-note"] == "the proxy key <redacted> leaked into a header"
    assert dict(document["response"]["headers"])["set-cookie"] == "<redacted>"
    assert "body" not in document["request"] and "body" not in document["response"]


def test_bodies_only_with_log_bodies_decoded_and_scrubbed():
    answer = json.dumps({"content": [{"text": f"here is {ACCESS}"}]}).encode()
    flow = a_flow(response_body=answer, content_encoding="gzip")
    assert flow.response.raw_content != answer  # stored gzip-encoded
    document = record(flow, bodies=True)
    assert document["request"]["body"] == '{"model":"claude-sonnet-4-5"}'
    assert json.loads(document["response"]["body"])["content"][0]["text"] == "here is <redacted>"


@pytest.mark.parametrize("request_body", [
    json.dumps({"grant_type": "refresh_token", "refresh_token": CLIENT_REFRESH, "client_id": "c"}).encode(),
    f"grant_type=refresh_token&refresh_token={CLIENT_REFRESH}&client_id=c".encode(),
    b"\xff\xfe not json, not a form " + CLIENT_REFRESH.encode(),
])
def test_token_endpoint_bodies_lose_their_tokens(request_body):
    answer = json.dumps({"access_token": "new-access-0123456789", "refresh_token": "new-refresh-0123456789",
                         "expires_in": 28800, "account": {"email_address": "a@example.com"}}).encode()
    flow = a_flow("/v1/oauth/token", request_body=request_body, response_body=answer)
    document = record(flow, bodies=True)
    text = json.dumps(document)
    assert "new-access-0123456789" not in text and "new-refresh-0123456789" not in text
    assert json.loads(document["response"]["body"])["account"]["email_address"] == "a@example.com"
    assert "refresh_token" in document["request"]["body"] or "<redacted" in document["request"]["body"]


def test_file_names_are_recognised_only_for_this_logger():
    name = file_name(1_700_000_000.25, "6ba68676-c5b9-4703-8775-7b1c125ef36d")
    assert name == "tc-20231114T221320.250Z-6ba68676-c5b9-4703-8775-7b1c125ef36d.json"
    assert written_at(name) == pytest.approx(1_700_000_000.25)
    assert written_at("tc-20231114T221320.250Z-not-a-flow-id.json") is None
    assert written_at("notes.json") is None
    assert written_at(file_name(0, "../../etc/passwd")) is not None  # odd ids are replaced, never used


async def finished(task: asyncio.Task) -> None:
    """The writer's end after `close()`, within 10 s (not wait_for: on its timeout it cancels
    the task and then waits, without a bound, for the task to end)."""
    done, _ = await asyncio.wait({task}, timeout=10)
    assert done, "the request log writer did not end within 10 s of close()"
    task.result()


async def write_all(log: RequestLog, flows: list[http.HTTPFlow]) -> None:
    task = asyncio.create_task(log.run())
    for flow in flows:
        log.submit(entry_for(flow, FACTS, bodies=log.bodies, secrets=SECRETS))
    log.close()
    await finished(task)


async def test_files_are_0600_in_a_0700_directory_one_per_request(tmp_path):
    directory = tmp_path / "new" / "logs"
    flows = [a_flow() for _ in range(3)]
    await write_all(RequestLog(directory), flows)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    names = sorted(os.listdir(directory))
    assert len(names) == 3 and all(written_at(n) for n in names)
    for name in names:
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    assert {json.loads((directory / n).read_bytes())["id"] for n in names} == {f.id for f in flows}


async def test_an_existing_open_directory_of_ours_is_made_private(tmp_path, caplog):
    directory = tmp_path / "logs"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        await write_all(RequestLog(directory), [a_flow()])
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert "private" in caplog.text


def test_pruning_by_age_touches_only_the_loggers_own_files(tmp_path):
    directory = tmp_path / "logs"
    directory.mkdir()
    now = 1_700_000_000.0
    old = directory / file_name(now - 8 * 86400, "00000000-0000-4000-8000-000000000001")
    recent = directory / file_name(now - 3600, "00000000-0000-4000-8000-000000000002")
    foreign = directory / "notes.json"
    outside = tmp_path / "precious.txt"
    link = directory / file_name(now - 9 * 86400, "00000000-0000-4000-8000-000000000003")
    lookalike_dir = directory / file_name(now - 9 * 86400, "00000000-0000-4000-8000-000000000004")
    for path in (old, recent, foreign, outside):
        path.write_text("x")
    os.utime(foreign, (0, 0))
    link.symlink_to(outside)
    lookalike_dir.mkdir()
    assert prune(directory, now - 7 * 86400) == 1
    assert not old.exists()
    assert recent.exists() and foreign.exists() and outside.exists() and link.is_symlink() and lookalike_dir.is_dir()


async def test_run_prunes_at_start_with_keep_days(tmp_path):
    directory = tmp_path / "logs"
    directory.mkdir(mode=0o700)
    stale = directory / file_name(time.time() - 3 * 86400, "00000000-0000-4000-8000-000000000001")
    stale.write_text("x")
    await write_all(RequestLog(directory, keep_days=2), [a_flow()])
    assert not stale.exists() and len(os.listdir(directory)) == 1
    stale.write_text("x")
    await write_all(RequestLog(directory, keep_days=0), [a_flow()])  # 0 keeps everything
    assert stale.exists()


async def test_submit_never_waits_for_the_disk(tmp_path, monkeypatch):
    log = RequestLog(tmp_path / "logs")
    release = threading.Event()
    real_write = RequestLog._write

    def slow_write(self, entry):
        release.wait(10)
        real_write(self, entry)

    monkeypatch.setattr(RequestLog, "_write", slow_write)
    task = asyncio.create_task(log.run())
    entries = [entry_for(a_flow(), FACTS, bodies=False, secrets=SECRETS) for _ in range(200)]
    log.submit(entries[0])
    await asyncio.sleep(0.05)  # let the writer thread take the first entry and block on the "disk"
    started = time.perf_counter()
    for entry in entries[1:]:
        log.submit(entry)
    assert time.perf_counter() - started < 0.5
    assert log.written == 0
    release.set()
    log.close()
    await finished(task)
    assert log.written == 200


def watch_log_writes(monkeypatch, directory, on_write):
    """Call `on_write(fd)` before every `os.write` to a file opened in `directory`."""
    real_open, real_write = os.open, os.write
    opened: set[int] = set()

    def tracking_open(path, flags, mode=0o777, **kwargs):
        fd = real_open(path, flags, mode, **kwargs)
        if os.path.dirname(os.fspath(path)) == os.fspath(directory):
            opened.add(fd)
        return fd

    def watched_write(fd, data):
        if fd in opened:
            on_write(fd)
        return real_write(fd, data)

    monkeypatch.setattr(os, "open", tracking_open)
    monkeypatch.setattr(os, "write", watched_write)


def test_a_record_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    directory = tmp_path / "logs"
    log = RequestLog(directory)
    seen_while_writing: list[list[str]] = []
    watch_log_writes(monkeypatch, directory, lambda fd: seen_while_writing.append(
        [name for name in os.listdir(directory) if written_at(name) or name.endswith(".json")]))
    log.write_batch([entry_for(a_flow(), FACTS, bodies=False, secrets=SECRETS)])
    monkeypatch.undo()
    assert seen_while_writing == [[]]  # a reader listing the directory mid-write finds no record
    [name] = os.listdir(directory)  # and afterwards exactly the record: no temporary file left
    assert written_at(name) and json.loads((directory / name).read_bytes())["v"] == 1
    assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600


async def test_disk_full_is_reported_once_and_writing_resumes(tmp_path, monkeypatch, caplog):
    directory = tmp_path / "logs"
    log = RequestLog(directory)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    watch_log_writes(monkeypatch, directory, full)
    with caplog.at_level(logging.INFO):
        log.write_batch([entry_for(a_flow(), FACTS, bodies=False, secrets=SECRETS) for _ in range(3)])
        assert len([r for r in caplog.records if "No space left" in r.getMessage()]) == 1
        assert "No space left" in (log.last_error or "")
        assert os.listdir(directory) == []  # no partial record, no temporary file
        monkeypatch.undo()
        log.write_batch([entry_for(a_flow(), FACTS, bodies=False, secrets=SECRETS)])
    assert log.written == 1 and log.last_error is None and len(os.listdir(directory)) == 1
    assert "written again" in caplog.text


def test_a_replayed_flow_gets_a_second_file_never_an_overwrite(tmp_path):
    directory = tmp_path / "logs"
    log = RequestLog(directory)
    flow = a_flow()
    log.write_batch([entry_for(flow, FACTS, bodies=False, secrets=SECRETS) for _ in range(2)])
    names = os.listdir(directory)
    assert len(names) == 2 and all(written_at(name) for name in names)


def test_falling_behind_drops_records_and_says_so_once(tmp_path, caplog):
    log = RequestLog(tmp_path / "logs", max_pending=2)
    entry = entry_for(a_flow(), FACTS, bodies=False, secrets=SECRETS)
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            log.submit(entry)
    assert len([r for r in caplog.records if "falling behind" in r.getMessage()]) == 1
    log.flush_sync()
    assert log.written == 2


def test_a_body_inflating_past_the_bound_is_omitted_not_inflated():
    bomb = gzip.compress(b"\0" * (MAX_INFLATED_BODY + 1))
    flow = a_flow(request_body=b"")
    flow.request.headers["content-encoding"] = "gzip"
    flow.request.raw_content = bomb
    document = record(flow, bodies=True)
    assert document["request"]["body"] is None
    assert document["request"]["body_omitted"] == f"inflates past {MAX_INFLATED_BODY} bytes"
