"""A real HTTP target on 127.0.0.1 for the http processor, with behaviour chosen by path.

    /ok                 200, echoes the job back as JSON
    /fail-times/<n>     500 for the first n calls of each job, then 200
    /always/<status>    that status every time
    /slow/<seconds>     sleeps, then 200
    /redirect           302 to /ok
    /text               200 with a non-JSON body

Every call is recorded (path, job id, attempt, time) so tests can assert on timing.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Call:
    path: str
    job_id: str
    attempt: int
    at: float
    payload: dict


class TargetServer:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                job_id = str(payload.get("jobId", ""))
                with server._lock:
                    server.calls.append(Call(self.path, job_id, int(payload.get("attempt", 0)), time.monotonic(), payload))
                    server._counts[(self.path, job_id)] += 1
                    count = server._counts[(self.path, job_id)]
                parts = self.path.strip("/").split("/")
                if parts[0] == "ok":
                    self._send(200, {"echo": payload.get("data"), "attempt": payload.get("attempt")})
                elif parts[0] == "fail-times":
                    if count <= int(parts[1]):
                        self._send(500, {"error": f"failure {count}"})
                    else:
                        self._send(200, {"succeededOnAttempt": payload.get("attempt")})
                elif parts[0] == "follow":  # /follow/<queue>/<type>: the answer adds a job there (shared/flows.py)
                    self._send(200, {"echo": payload.get("data"), "jobq": {"addJobs": [{"queue": parts[1], "type": parts[2], "data": {"from": job_id}}]}})
                elif parts[0] == "children-sum":  # a flow parent: the sum of its children's echoed data.n
                    values = payload.get("childrenValues") or {}
                    self._send(200, {"sum": sum((v.get("echo") or {}).get("n", 0) + v.get("sum", 0) for v in values.values()), "children": len(values)})
                elif parts[0] == "always":
                    self._send(int(parts[1]), {"error": "as configured"})
                elif parts[0] == "slow":
                    time.sleep(float(parts[1]))
                    self._send(200, {"slow": True})
                elif parts[0] == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "/ok")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif parts[0] == "text":
                    body = b"plain words"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._send(404, {"error": "no such behaviour"})

            def _send(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def calls_for(self, job_id: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.job_id == job_id]

    def __enter__(self) -> TargetServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
