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

            def do_POST(self) -> None:
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


class ProgrammableUpstream:
    """An upstream a test scripts per request: each answer is raw bytes (status line,
    headers, framing and all, however wrong), written piece by piece, then the connection
    is closed. `/v1/oauth/token` rotates the pair it is sent, with a scripted `expires_in`.

    `replies` and `expires_in` are queues consumed in arrival order; when one is empty the
    answer is a well-formed one (`ok_reply`, a lifetime of an hour)."""

    TOKEN_PATH = "/v1/oauth/token"

    def __init__(self, ok_reply: list[bytes]) -> None:
        self.ok_reply = ok_reply
        self.replies: list[list[bytes]] = []
        self.expires_in: list[bytes] = []
        self.requests: list[tuple[str, str, list[tuple[str, str]], bytes]] = []
        self.issued: list[str] = []  # every token this upstream handed out
        self._lock = threading.Lock()
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                self.close_connection = True
                with scripted._lock:
                    scripted.requests.append((self.command, self.path, list(self.headers.items()), body))
                    if self.path.split("?", 1)[0] == scripted.TOKEN_PATH:
                        wire = [scripted._token_answer()]
                    else:
                        wire = scripted.replies.pop(0) if scripted.replies else scripted.ok_reply
                try:
                    for piece in wire:
                        self.wfile.write(piece)
                        self.wfile.flush()
                except OSError:
                    pass  # the proxy gave up on this answer: fine, it is hostile

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _token_answer(self) -> bytes:
        n = len(self.issued) // 2
        access, refresh = f"sk-ant-oat01-rotated{n}-access-secret", f"sk-ant-ort01-rotated{n}-refresh-secret"
        self.issued += [access, refresh]
        expires_in = self.expires_in.pop(0) if self.expires_in else b"3600"
        body = b'{"token_type":"Bearer","access_token":"%s","refresh_token":"%s","expires_in":%s}' % (
            access.encode(), refresh.encode(), expires_in)
        return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
            len(body), body)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ProgrammableUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
