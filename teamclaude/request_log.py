"""The request log (behaviour §11, docs/request-log.md): one JSON file per request in a private directory.

`Entry` is gathered on the event loop from what the addon already holds: small JSON-ready
facts, header lists, and references to body bytes only when bodies are logged. Everything
costly (decoding bodies, redacting, encoding, writing, pruning) runs in a worker thread
driven by `RequestLog.run`; `submit` never blocks the request path.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mitmproxy import http

from teamclaude import redact
from teamclaude.aio import raise_if_cancelled
from teamclaude.inflate import MAX_INFLATED_BODY, BodyTooLarge, UndecodableBody, inflate

logger = logging.getLogger(__name__)

VERSION = 1
DEFAULT_KEEP_DAYS = 7
PRUNE_EVERY_S = 3600.0
MAX_PENDING = 10_000
FILE_MODE = 0o600
DIR_MODE = 0o700

# tc-20250131T235959.123Z-<flow id>.json: the only names this logger writes or prunes.
_NAME = re.compile(r"tc-(\d{8}T\d{6})\.(\d{3})Z-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json")
# A record is written under a hidden temporary name first (never one `_NAME` matches, nor
# `*.json`), then renamed into place: readers and the pruner see whole files or nothing.
_TEMP_PREFIX, _TEMP_SUFFIX = ".tc-writing-", ".tmp"
_STOP = object()


@dataclass(frozen=True)
class Body:
    raw: bytes
    content_encoding: str | None


@dataclass(frozen=True)
class Entry:
    """One request as gathered on the loop; rendered and written later in a thread."""

    flow_id: str
    started: float
    facts: dict[str, Any]
    request_headers: list[tuple[str, str]]
    response_headers: list[tuple[str, str]] | None
    request_body: Body | None
    response_body: Body | None
    token_endpoint: bool
    secrets: tuple[str, ...]


def entry_for(flow: http.HTTPFlow, facts: dict[str, Any], *, bodies: bool, secrets: Iterable[str]) -> Entry:
    """Gather what the log needs from a finished flow (after the addon redacted it)."""
    request, response = flow.request, flow.response

    def body_of(message: http.Message | None) -> Body | None:
        if not bodies or message is None or message.raw_content is None:
            return None
        return Body(message.raw_content, message.headers.get("content-encoding"))

    started = request.timestamp_start or time.time()
    return Entry(
        flow_id=flow.id,
        started=started,
        facts={
            "time": _iso(started),
            "method": request.method,
            "url": request.url,
            **facts,
        },
        request_headers=list(request.headers.items(multi=True)),
        response_headers=list(response.headers.items(multi=True)) if response is not None else None,
        request_body=body_of(request),
        response_body=body_of(response),
        token_endpoint=request.path.split("?", 1)[0] == redact.TOKEN_PATH,
        secrets=tuple(secrets),
    )


def render(entry: Entry, *, bodies: bool) -> bytes:
    """The record as one line of JSON, every credential redacted. Runs in a worker thread."""
    document: dict[str, Any] = {"v": VERSION, "id": entry.flow_id, **entry.facts}
    document["request"] = _message(entry.request_headers, entry.request_body, entry, bodies)
    document["response"] = (
        None if entry.response_headers is None
        else _message(entry.response_headers, entry.response_body, entry, bodies)
    )
    clean = _scrub_strings(document, entry.secrets)
    return json.dumps(clean, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8", "replace") + b"\n"


def _message(headers: list[tuple[str, str]], body: Body | None, entry: Entry, bodies: bool) -> dict[str, Any]:
    part: dict[str, Any] = {"headers": redact.headers(headers, entry.secrets)}
    if bodies:
        part.update(_body_fields(body, entry))
    return part


def _body_fields(body: Body | None, entry: Entry) -> dict[str, Any]:
    if body is None:
        return {"body": None}
    try:
        data = inflate(body.raw, body.content_encoding, MAX_INFLATED_BODY)
    except BodyTooLarge:
        return {"body": None, "body_omitted": f"inflates past {MAX_INFLATED_BODY} bytes"}
    except UndecodableBody:
        data = body.raw
    if entry.token_endpoint:
        data = redact.token_body(data)
    data = redact.scrub(data, entry.secrets)
    try:
        return {"body": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(data).decode("ascii")}


def _scrub_strings(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact.scrub_text(value, secrets)
    if isinstance(value, dict):
        return {key: _scrub_strings(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub_strings(item, secrets) for item in value]
    return value


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def file_name(started: float, flow_id: str) -> str:
    stamp = datetime.fromtimestamp(started, timezone.utc)
    if not _NAME.fullmatch(f"tc-00000000T000000.000Z-{flow_id}.json"):
        flow_id = str(uuid.uuid4())
    return f"tc-{stamp:%Y%m%dT%H%M%S}.{stamp.microsecond // 1000:03d}Z-{flow_id}.json"


def written_at(name: str) -> float | None:
    """When a file of this logger was started, from its name; None for any other name."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    moment = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    return moment.timestamp() + int(match.group(2)) / 1000


def prune(directory: Path, older_than: float) -> int:
    """Delete this logger's files started before `older_than`; nothing else. Returns the count."""
    removed = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        started = written_at(name)
        if started is None or started >= older_than:
            continue
        path = directory / name
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            os.unlink(path)
            removed += 1
        except FileNotFoundError:
            continue
    return removed


class RequestLog:
    """Writes entries into `directory` from a background task; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        bodies: bool = False,
        keep_days: int = DEFAULT_KEEP_DAYS,
        clock: Callable[[], float] = time.time,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.directory = directory
        self.bodies = bodies
        self.keep_days = keep_days
        self._clock = clock
        self._max_pending = max_pending
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False
        self._dir_ready = False
        self._failing = False
        self._dropped = 0
        self.written = 0
        self.last_error: str | None = None

    @property
    def config(self) -> tuple[Path, bool, int]:
        return (self.directory, self.bodies, self.keep_days)

    def submit(self, entry: Entry) -> None:
        """Queue one entry (never blocks; drops and says so once if the writer falls far behind)."""
        if self._closed:
            return
        if self._queue.qsize() >= self._max_pending:
            self._dropped += 1
            if self._dropped == 1:
                logger.error("teamclaude: the request log in %s is falling behind; dropping records", self.directory)
            return
        self._queue.put_nowait(entry)

    def close(self) -> None:
        """Stop taking entries; `run` returns once the queued ones are written."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(_STOP)

    async def run(self) -> None:
        """Write queued entries and prune old files until `close` (or cancellation)."""
        next_prune = self._clock()
        while True:
            raise_if_cancelled()
            if self._clock() >= next_prune:
                await asyncio.to_thread(self.prune_now)
                next_prune = self._clock() + PRUNE_EVERY_S
            try:
                async with asyncio.timeout(max(0.0, next_prune - self._clock())):
                    first = await self._queue.get()
            except TimeoutError:
                continue
            batch = [first]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            entries = [item for item in batch if item is not _STOP]
            if entries:
                await asyncio.to_thread(self.write_batch, entries)
            if len(entries) < len(batch):
                return

    def flush_sync(self) -> None:
        """Write what is still queued, in this thread (at shutdown, when the loop is going away)."""
        entries = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _STOP:
                entries.append(item)
        if entries:
            self.write_batch(entries)

    # ----- worker thread -----
    def write_batch(self, entries: list[Entry]) -> None:
        for entry in entries:
            try:
                self._write(entry)
            except OSError as exc:
                self._dir_ready = False
                self._report(exc)
            else:
                self.written += 1
                if self._failing:
                    logger.info("teamclaude: the request log in %s is written again", self.directory)
                self._failing = False
                self.last_error = None

    def _write(self, entry: Entry) -> None:
        data = render(entry, bodies=self.bodies)
        if not self._dir_ready:
            self._prepare_directory()
        # mkstemp: O_EXCL (never follows a planted symlink), mode 0600 from the start.
        fd, temporary = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=self.directory)
        try:
            try:
                os.fchmod(fd, FILE_MODE)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            target = self.directory / file_name(entry.started, entry.flow_id)
            if os.path.lexists(target):  # the same flow again (a replay): a fresh name, never an overwrite
                target = self.directory / file_name(entry.started, str(uuid.uuid4()))
            os.rename(temporary, target)
        finally:
            with suppress(FileNotFoundError):
                os.unlink(temporary)  # only still there when something failed

    def _prepare_directory(self) -> None:
        """Create the directory 0700, or make an existing one of ours private."""
        self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        info = os.stat(self.directory)
        if stat.S_IMODE(info.st_mode) & 0o077:
            if info.st_uid != os.getuid():
                raise PermissionError(
                    0, f"{self.directory} is readable by others and not ours: point log_dir at a private directory"
                )
            os.chmod(self.directory, DIR_MODE)
            logger.warning("teamclaude: made the request log directory %s private (mode 0700)", self.directory)
        self._dir_ready = True

    def prune_now(self) -> int:
        if self.keep_days <= 0:
            return 0
        try:
            return prune(self.directory, self._clock() - self.keep_days * 86400)
        except OSError as exc:
            self._report(exc)
            return 0

    def _report(self, exc: OSError) -> None:
        reason = exc.strerror or exc.__class__.__name__
        self.last_error = f"cannot write the request log in {self.directory}: {reason}"
        if not self._failing:
            logger.error("teamclaude: %s (serving continues; reported once)", self.last_error)
        self._failing = True
