"""A real HTTP callback receiver whose answers a test controls (down, slow, 500, 200)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.service import free_port


class Receiver:
    """Records every POSTed JSON body; answers `status` after `delay` seconds."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.status = 200
        self.delay = 0.0
        self.bodies: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.attempts = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Where callbacks should go."""
        return f"http://127.0.0.1:{self.port}/zego"

    def start(self) -> Receiver:
        """Listen (again, after `down()`)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.attempts += 1
                    status, delay = receiver.status, receiver.delay
                if delay:
                    time.sleep(delay)
                if 200 <= status < 300:
                    with receiver._lock:
                        receiver.bodies.append(json.loads(raw))
                        receiver.arrivals.append(time.time())
                self.send_response(status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        """Stop listening: connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def records(self) -> list[dict[str, Any]]:
        """The `record` callbacks accepted so far."""
        with self._lock:
            return [b for b in self.bodies if b.get("event") == "record"]
