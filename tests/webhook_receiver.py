"""A webhook receiver on 127.0.0.1 that records what it gets, with behaviour chosen by path.

    /ok              200
    /fail/<n>        500 for the first n POSTs of each delivery (X-Jobq-Delivery), then 200
    /always/<status> that status every time
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                delivery = self.headers.get("X-Jobq-Delivery", "")
                parts = self.path.strip("/").split("/")
                with receiver._lock:
                    receiver._counts[(self.path, delivery)] += 1
                    count = receiver._counts[(self.path, delivery)]
                    if parts[0] == "fail":
                        status = 500 if count <= int(parts[1]) else 200
                    elif parts[0] == "always":
                        status = int(parts[1])
                    else:
                        status = 200
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic(), status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def posts(self, path: str | None = None, job_id: str | None = None) -> list[Received]:
        import json

        with self._lock:
            found = list(self.received)
        return [r for r in found if (path is None or r.path == path) and (job_id is None or json.loads(r.body).get("jobId") == job_id)]

    def wait_for(self, predicate, timeout: float = 30) -> list[Received]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.posts() if predicate(r)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no such POST in {timeout}s; received {[(r.path, r.body[:200]) for r in self.posts()]}")

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
