"""An upstream that answers every request with the same scripted bytes, for byte-exact tests."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedUpstream:
    """Sends `chunks` (each flushed on its own, `interval_s` apart) with `headers`; records requests."""

    def __init__(self, chunks: list[bytes], headers: list[tuple[str, str]], interval_s: float = 0.0) -> None:
        self.chunks = chunks
        self.headers = headers
        self.interval_s = interval_s
        self.requests: list[tuple[str, list[tuple[str, str]], bytes]] = []
        self.sent_at: list[float] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                scripted.requests.append((self.path, list(self.headers.items()), body))
                self.send_response(200)
                for name, value in scripted.headers:
                    self.send_header(name, value)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for index, chunk in enumerate(scripted.chunks):
                    if index:
                        time.sleep(scripted.interval_s)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    scripted.sent_at.append(time.monotonic())
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ScriptedUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
