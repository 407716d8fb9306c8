"""An HTTP/1.1 server on its own thread and asyncio loop, so sync tests, async tests (whose
loop runs mitmproxy) and the demo can all share it. Subclasses answer requests in
`_dispatch`; this class owns the listener, the connections and keep-alive."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import traceback
from typing import Any, Self

from teamclaude.fake.http11 import MAX_HEAD_BYTES, BadRequest, Request, read_request, response_head
from teamclaude.urls import http_url

# A listener is up in milliseconds and closes as fast; these turn a stuck thread into an error.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class ThreadedServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _dispatch(self, req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True when the connection stays open for the next one."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start serving in a background thread; returns once the port is listening."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            self._thread = None
            raise RuntimeError(f"{type(self).__name__} did not listen on {self._host}:{self._port} "
                               f"within {START_TIMEOUT_S:g} s")
        if failure:
            self._thread.join(START_TIMEOUT_S)
            self._thread = None
            raise RuntimeError(f"cannot listen on {self._host}:{self._port}: {failure[0]}")
        return self

    def stop(self) -> None:
        """Close the listener and every connection (pending requests included), join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        closing = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            closing.result(timeout=STOP_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            raise RuntimeError(f"{type(self).__name__} did not close its connections within "
                               f"{STOP_TIMEOUT_S:g} s") from None
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=STOP_TIMEOUT_S)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return http_url(self._host, self._port)

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop: asyncio.AbstractEventLoop | None = None
        try:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, self._host, self._port, limit=MAX_HEAD_BYTES, backlog=1024)
            )
        except BaseException as exc:  # noqa: BLE001 (whatever it is, start() must hear of it)
            failure.append(exc)
            ready.set()
            if loop is not None:
                loop.close()
            return
        self._port = self._server.sockets[0].getsockname()[1]
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()
            self._loop = None

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    req = await read_request(reader, writer)
                except BadRequest as exc:
                    await _refuse(writer, str(exc))
                    break
                if req is None or not await self._dispatch(req, reader, writer):
                    break
        except (ConnectionError, OSError):
            pass
        except Exception:
            # A bug in a handler: say so loudly, drop the connection, keep serving others.
            traceback.print_exc()
            writer.transport.abort()
        except asyncio.CancelledError:
            # Only stop() cancels these tasks; ending quietly keeps asyncio from logging it.
            writer.transport.abort()
        finally:
            self._tasks.discard(task)
            writer.close()


async def _refuse(writer: asyncio.StreamWriter, message: str) -> None:
    """400 for bytes that are not a request, Anthropic-shaped, then close."""
    body = json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": message}}).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(body))), ("connection", "close")]
    writer.write(response_head(400, headers) + body)
    await writer.drain()
