"""A real local webhook receiver: an HTTP server on 127.0.0.1 (an ephemeral port) that
records every POST. Recipients' webhooks are outside the machine in production; in tests
they are this, never a mock."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every POST and answers with the next queued
    status code (200 when none is queued). With `hold` set, it waits before answering."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.requests: list[Received] = []
        self.arrived = threading.Event()
        self.hold: threading.Event | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(20)
                code = receiver.codes.pop(0) if receiver.codes else 200
                # A body naming a person: it must never end up in the database.
                answer = b'{"error": "customer 13800138000 unknown"}' if code >= 400 else b"{}"
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/quanyi/notices") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()
