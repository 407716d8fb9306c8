"""A loopback HTTP hop that holds each POST until the test releases it, then forwards it.

Put in front of the fake's token endpoint (`oauth_token_url`), it keeps a refresh in flight
for as long as a test needs, so concurrent requests can be made to pile up behind it.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOLD_LIMIT_S = 30.0


class HeldForwarder:
    """Forwards every POST to `target` once `release()` was called; counts arrivals."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.arrivals = 0
        self._released = threading.Event()
        self._arrived = threading.Condition()
        forwarder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with forwarder._arrived:
                    forwarder.arrivals += 1
                    forwarder._arrived.notify_all()
                forwarder._released.wait(HOLD_LIMIT_S)
                status, answer = forwarder._forward(body, self.headers.get("content-type", ""))
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for_arrivals(self, count: int, timeout: float = 10.0) -> None:
        with self._arrived:
            if not self._arrived.wait_for(lambda: self.arrivals >= count, timeout):
                raise TimeoutError(f"{self.arrivals} requests reached the forwarder, expected {count}")

    def release(self) -> None:
        self._released.set()

    def _forward(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.target, data=body, method="POST",
                                         headers={"content-type": content_type})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=HOLD_LIMIT_S) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()

    def __enter__(self) -> HeldForwarder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
