"""A tiny HTTP target for trying the http processor locally (standard library only).

    python3 -m infra.local.echo_target --port 9999 [--fail-first 2] [--status 200]

Answers every POST with ``--status`` and echoes the job back as JSON; with
``--fail-first N`` it answers 500 to the first N calls of each job, so retries and
backoff can be watched.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python3 -m infra.local.echo_target", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--status", type=int, default=200, help="the answer to every call (default 200)")
    parser.add_argument("--fail-first", type=int, default=0, help="answer 500 to the first N calls of each job")
    args = parser.parse_args()
    calls: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            job_id = str(payload.get("jobId"))
            calls[job_id] += 1
            status = 500 if calls[job_id] <= args.fail_first else args.status
            body = json.dumps({"echo": payload.get("data"), "attempt": payload.get("attempt"), "call": calls[job_id]}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            print(f"job {job_id} attempt {payload.get('attempt')}: {status}", flush=True)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"echo target on http://127.0.0.1:{args.port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
