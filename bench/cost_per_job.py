"""What one job costs on AWS, create -> completed: requests, DynamoDB units, S3, list price.

    .venv/bin/python bench/cost_per_job.py                    # 200 jobs each of 256 B, 1 KB, 100 KB of data
    .venv/bin/python bench/cost_per_job.py --jobs 400 --clients 8 --sizes 1024,102400
    .venv/bin/python bench/cost_per_job.py --sizes 100000 --echo   # the target answers with the data
    .venv/bin/python bench/cost_per_job.py --backlog          # under load: the consumers find a backlog
    .venv/bin/python bench/cost_per_job.py --mode both --sizes 1024,102400   # trickle, then backlog, and a summary of both
    .venv/bin/python bench/cost_per_job.py --parameter EnqueueFromStream=true   # a stack parameter (repeatable)

The sizes are of the job's data (its JSON). A job item carries ~750 B of its own, so 256 B of
data is the largest job whose item stays within 1 KB (what issue 11's "1 KB job" figures are),
and 1 KB of data makes a 1.7 KB item (2 write units a write). Issue 11's 100 KB figure (2,371
write units) is 100,000 B of data with a target that echoes it back as the result (``--echo``,
as tests/target_server.py's /ok does).

Starts the local stack as a user does (``python -m infra.local``, its own state dir and stack
name, ``--meter``: infra/local/meter.py), registers an HTTP target on 127.0.0.1 that answers
200 at once (PUT /queues/{name}/processors/{type}), pauses the other queues (their idle pollers
are not this workload's cost), and for each payload size: resets the meter, creates the jobs
with POST /jobs from concurrent clients while the consumers run them, waits until the target
saw every job and the meter stops moving (the stream's counters caught up), and prints the
meter's figures per job. Only 127.0.0.1 is ever contacted.

``--backlog`` measures a queue under load: its consumer is paused (``POST /queues/{q}/pause``)
while the jobs are created and resumed after, so the SQS poller, the consumers and the stream
functions see full batches, as they do when jobs arrive faster than one at a time per poll. On
this machine the API creates ~10 jobs/s, so without it every batch holds one or two jobs and
the per-batch requests (ReceiveMessage, DeleteMessageBatch, the stream functions' writes) are
counted nearly once per job. The resume's own requests are counted.

Requests per job count jobq's own calls and the emulated Lambda SQS poller's (ReceiveMessage,
DeleteMessageBatch), as AWS bills both; DynamoDB Streams reads by the Lambda poller are free on
AWS and listed apart. Lambda is priced by requests only (duration depends on the processor).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.local.token import mint_token  # noqa: E402

# List prices, us-east-1, USD per million (the first paid tier of each):
#   HTTP API requests        https://aws.amazon.com/api-gateway/pricing/  ($1.00/M first 300 M; metered per 512 KB)
#   Lambda requests          https://aws.amazon.com/lambda/pricing/       ($0.20/M; duration not included here)
#   SQS standard requests    https://aws.amazon.com/sqs/pricing/          ($0.40/M; each 64 KB chunk of a payload is a request)
#   DynamoDB on-demand       https://aws.amazon.com/dynamodb/pricing/on-demand/ ($0.625/M write units, $0.125/M read units)
#   S3 Standard requests     https://aws.amazon.com/s3/pricing/           (PUT/COPY/POST/LIST $0.005 per 1,000; GET and others $0.0004 per 1,000)
PRICE_PER_MILLION = {
    "http_api_request": 1.00,
    "lambda_request": 0.20,
    "sqs_request": 0.40,
    "dynamodb_write_unit": 0.625,
    "dynamodb_read_unit": 0.125,
    "s3_put": 5.00,
    "s3_get": 0.40,
}
READY = "jobq local stack ready: "
STACK_NAME = "jobq-cost"
BILLED_ORIGINS = ("jobq", "lambda-sqs-poller")
S3_TIER1 = ("Put", "Post", "List", "Copy")  # priced as PUT; the rest of S3's requests as GET
HANDLER_NAMES = {
    "ApiFunction": "ApiFunction",
    "functions.consumer.handler.handler": "consumers",
    "functions.events.handler.handler": "EventsFunction",
}


class Target:
    """An HTTP processor on 127.0.0.1 that answers 200 at once and remembers the jobs it saw."""

    def __init__(self, *, echo: bool = False) -> None:
        self.echo = echo  # answer with the job's data, as tests/target_server.py's /ok does
        self.seen: set[str] = set()
        self.first_seen: dict[str, float] = {}  # job id -> time.monotonic() of its first call
        self.calls = 0
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                job = json.loads(body or b"{}")
                job_id = str(job.get("jobId", ""))
                with target.lock:
                    target.seen.add(job_id)
                    target.first_seen.setdefault(job_id, time.monotonic())
                    target.calls += 1
                answer = json.dumps({"echo": job.get("data")} if target.echo else {"ok": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/process"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class StackProcess:
    """``python -m infra.local --meter FILE`` in a subprocess, as tests/integration/conftest.py starts it."""

    def __init__(self, state_dir: Path, parameters: list[str] | None = None) -> None:
        self.state_dir = state_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBQ_"))}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infra.local", "--port", "0", "--aws-port", "0", "--ws-port", "0", "--stack-name", STACK_NAME,
             "--state-dir", str(state_dir), "--no-access-log", "--log-level", "WARNING",
             # the hourly cleanup and 5-minute health rules would be another workload's cost
             "--rule-interval", "86400", "--meter", str(state_dir / "meter.json"),
             "--parameter", "LogLevel=ERROR", *[arg for p in parameters or [] for arg in ("--parameter", p)]],
            cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert self.process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 90
        self.api_url = ""
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith(READY):
                self.api_url = line[len(READY):].split()[0]
                break
        if not self.api_url:
            self.stop()
            raise SystemExit("the local stack did not start:\n" + "".join(lines[-40:]))
        threading.Thread(target=self._drain, daemon=True).start()
        state = json.loads((state_dir / "stack.json").read_text())
        self.aws_endpoint = state["awsEndpoint"]

    def _drain(self) -> None:
        assert self.process.stdout is not None
        with (self.state_dir / "stack.log").open("a") as sink:
            for line in self.process.stdout:
                sink.write(line)

    def client(self, user: str, *, admin: bool = False) -> httpx.Client:
        token = mint_token(user, admin=admin, state_dir=self.state_dir)
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


_WORDS = ["invoice", "order", "customer", "shipment", "payment", "refund", "account", "region", "warehouse", "priority", "status", "pending", "complete", "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "red", "green", "blue", "amber", "silver", "north", "south", "east", "west", "monday", "tuesday", "friday", "morning", "evening", "report", "export", "import", "sync", "backup", "notify", "email", "sms", "webhook", "retry"]
_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Ken", "Dennis", "Linus", "Margaret", "Radia", "Tim", "Vint", "Frances", "John", "Leslie"]


def _record(rng: random.Random, n: int) -> dict[str, Any]:
    """One realistic record: ids, a name, numbers, a nested object, a few words."""
    return {
        "id": f"{rng.getrandbits(64):016x}",
        "seq": n,
        "name": f"{rng.choice(_NAMES)} {rng.choice(_NAMES)}son",
        "email": f"{rng.choice(_NAMES).lower()}.{rng.randrange(10_000)}@example.com",
        "amount": round(rng.uniform(0, 10_000), 2),
        "quantity": rng.randrange(1, 500),
        "active": rng.random() < 0.7,
        "tags": rng.sample(_WORDS, rng.randrange(1, 4)),
        "address": {"city": rng.choice(_WORDS).title(), "zip": f"{rng.randrange(100_000):05d}", "geo": [round(rng.uniform(-90, 90), 5), round(rng.uniform(-180, 180), 5)]},
        "note": " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(3, 12))),
    }


def _data_of(size: int) -> dict[str, Any]:
    """Job data whose JSON is ``size`` bytes: seeded pseudo-random records (the same on every run), not a
    run of one letter, which compresses 50x and would flatter the item's compression."""
    rng = random.Random(size)
    data: dict[str, Any] = {"batch": f"{rng.getrandbits(32):08x}", "records": []}
    while True:
        data["records"].append(_record(rng, len(data["records"])))
        if _json_size(data) > size:
            data["records"].pop()
            break
    data["pad"] = ""
    data["pad"] = " ".join(rng.choice(_WORDS) for _ in range(size))[: max(0, size - _json_size(data))]
    return data


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def _settled(control: httpx.Client, quiet_seconds: float = 3.0, timeout: float = 120) -> dict[str, Any]:
    """The meter once nothing but idle polling has changed it for ``quiet_seconds``."""

    def busy(snapshot: dict[str, Any]) -> tuple[Any, ...]:
        writes = sum(w["units"] for w in snapshot["writeUnits"])
        jobq = sum(r["count"] for r in snapshot["requests"] if r["origin"] == "jobq")
        return writes, jobq, sum(snapshot["invocations"].values())

    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        snapshot = control.get("/_local/meter").json()
        state = busy(snapshot)
        if state != last:
            last, since = state, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            return snapshot
        time.sleep(0.25)
    raise SystemExit("the stack did not settle (still writing after the last job)")


def _completed(admin: httpx.Client, queue: str) -> int:
    response = admin.get(f"/queues/{queue}")
    if response.status_code != 200:
        raise SystemExit(f"GET /queues/{queue}: {response.status_code} {response.text[:300]}")
    return int(response.json()["data"]["liveStats"]["completed"])


def run_workload(
    stack: StackProcess, *, queue: str, job_type: str, size: int, jobs: int, clients: int, target: Target, backlog: bool = False
) -> dict[str, Any]:
    control = httpx.Client(base_url=stack.api_url, timeout=30)
    admin = stack.client("root", admin=True)
    before_completed = _completed(admin, queue)
    if backlog:
        assert admin.post(f"/queues/{queue}/pause").status_code == 200
    with target.lock:
        target.seen.clear()
        target.first_seen.clear()
        target.calls = 0
    body = {"queue": queue, "type": job_type, "data": _data_of(size)}
    answered: dict[str, float] = {}  # job id -> time.monotonic() of its 201
    assert control.post("/_local/meter/reset").status_code == 200
    began = time.monotonic()

    def create(count: int) -> list[str]:
        with stack.client("bench") as user:
            ids = []
            for _ in range(count):
                response = user.post("/jobs", json=body)
                if response.status_code != 201:
                    raise SystemExit(f"POST /jobs: {response.status_code} {response.text[:300]}")
                ids.append(response.json()["data"]["jobId"])
                answered[ids[-1]] = time.monotonic()
            return ids

    shares = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        ids = [job_id for part in pool.map(create, shares) for job_id in part]
    created = time.monotonic() - began
    if backlog:
        assert admin.post(f"/queues/{queue}/resume").status_code == 200
    deadline = time.monotonic() + 600
    while len(target.seen) < jobs:
        if time.monotonic() > deadline:
            raise SystemExit(f"the target saw {len(target.seen)} of {jobs} jobs")
        time.sleep(0.1)
    processed = time.monotonic() - began
    # create -> start: from the API's 201 to the target's first call (meaningless with --backlog)
    waits = sorted(target.first_seen[i] - answered[i] for i in ids if i in target.first_seen)
    snapshot = _settled(control)
    # Checked after the snapshot, so these reads are not the workload's cost.
    completed = _completed(admin, queue) - before_completed
    sample = admin.get(f"/jobs/{ids[0]}", params={"userId": "bench"})
    status = sample.json()["data"]["status"] if sample.status_code == 200 else "?"
    return {
        "size": size, "jobs": jobs, "backlog": backlog, "answer": "with the data" if target.echo else '{"ok":true}', "clients": clients, "snapshot": snapshot, "created_s": created,
        "processed_s": processed, "start_waits": waits, "completed": completed, "status": status, "calls": target.calls,
        "item_bytes": max((t["bytes"] for t in snapshot["largestItem"] if t["table"] == "JobsTable"), default=None),
    }


def _per_job(value: float, jobs: int) -> float:
    return value / jobs


def report(result: dict[str, Any], queue: str) -> dict[str, float]:
    """Print one workload's figures per job; returns the headline ones (requests, write units, price)."""
    s, n = result["snapshot"], result["jobs"]
    size = result["size"]
    label = f"{size // 1024} KB" if size % 1024 == 0 else f"{size:,} B"
    print(f"\n== {n} jobs of {label} (data JSON {size:,} B; job item {result['item_bytes'] or '?':,} B when completed), "
          f"{result['clients']} clients, queue {queue}, HTTP target on 127.0.0.1 answering {result['answer']}"
          + (", consumers paused while creating (a backlog)" if result["backlog"] else ""))
    raw = json.dumps(_data_of(size), separators=(",", ":")).encode()
    packed = len(zlib.compress(raw, 9))
    print(f"   data: {len(raw):,} B of JSON records, {packed:,} B zlib-compressed ({len(raw) / packed:.2f}x)")
    print(f"   created in {result['created_s']:.1f} s, all at the target after {result['processed_s']:.1f} s; "
          f"completed counted {result['completed']}/{n}; target calls {result['calls']}; a sample job is {result['status']}")
    waits = result["start_waits"]
    if waits and not result["backlog"]:
        def pct(q: float) -> float:
            return waits[min(len(waits) - 1, int(q * len(waits)))]
        print(f"   create -> start (the API's 201 to the target's call): median {pct(0.5) * 1000:.0f} ms, "
              f"p95 {pct(0.95) * 1000:.0f} ms, max {waits[-1] * 1000:.0f} ms")

    billed: dict[tuple[str, str], float] = defaultdict(float)
    other: dict[tuple[str, str, str], float] = defaultdict(float)
    for r in s["requests"]:
        if r["origin"] in BILLED_ORIGINS:
            billed[(r["service"], r["operation"])] += r["count"]
        else:
            other[(r["origin"], r["service"], r["operation"])] += r["count"]
    total = sum(billed.values())
    print(f"   AWS requests per job (jobq + Lambda's SQS poller): {_per_job(total, n):.2f}")
    for (service, op), count in sorted(billed.items(), key=lambda kv: -kv[1]):
        print(f"     {service:<9} {op:<26} {_per_job(count, n):6.2f}")
    if other:
        print("   not billed as requests (emulation, or free on AWS):")
        for (origin, service, op), count in sorted(other.items(), key=lambda kv: -kv[1]):
            print(f"     {origin:<21} {service:<15} {op:<22} {_per_job(count, n):6.2f}")

    invocations = {HANDLER_NAMES.get(k, k): v for k, v in s["invocations"].items()}
    lambda_total = sum(invocations.values())
    print(f"   HTTP API requests per job {_per_job(s['httpApiRequests'], n):.2f}; Lambda invocations per job "
          f"{_per_job(lambda_total, n):.2f} (" + ", ".join(f"{k} {_per_job(v, n):.2f}" for k, v in sorted(invocations.items())) + ")")

    by_target: dict[tuple[str, str], float] = defaultdict(float)
    by_op: dict[str, float] = defaultdict(float)
    for w in s["writeUnits"]:
        by_target[(w["table"], w["target"])] += w["units"]
        by_op[w["operation"]] += w["units"]
    wcu = sum(by_target.values())
    parts = ", ".join(f"{t if t != 'table' else tbl} {_per_job(v, n):g}" for (tbl, t), v in sorted(by_target.items(), key=lambda kv: (kv[0][1] != "table", kv[0])))
    print(f"   DynamoDB write units per job: {_per_job(wcu, n):.2f} = {parts}")
    print("     by operation: " + ", ".join(f"{op} {_per_job(v, n):.2f}" for op, v in sorted(by_op.items(), key=lambda kv: -kv[1])))
    if s["failedConditions"]:
        print("     failed conditions (billed): " + ", ".join(f"{f['operation']} {f['count']}" for f in s["failedConditions"]))
    rcu_by: dict[str, float] = defaultdict(float)
    for r in s["readUnits"]:
        rcu_by[f"{r['operation']} {r['target'] if r['target'] != 'table' else ''}".strip()] += r["units"]
    rcu = sum(rcu_by.values())
    print(f"   DynamoDB read units per job: {_per_job(rcu, n):.2f}" + (" (" + ", ".join(f"{k} {_per_job(v, n):.2f}" for k, v in sorted(rcu_by.items())) + ")" if rcu_by else ""))

    s3_put = sum(r["count"] for r in s["requests"] if r["service"] == "s3" and r["origin"] in BILLED_ORIGINS and r["operation"].startswith(S3_TIER1))
    s3_get = sum(r["count"] for r in s["requests"] if r["service"] == "s3" and r["origin"] in BILLED_ORIGINS) - s3_put
    print(f"   S3 requests per job: PUT-class {_per_job(s3_put, n):.2f}, GET-class {_per_job(s3_get, n):.2f}")

    sqs_chunks = sum(c["count"] for c in s["sqsChunks"] if c["origin"] in BILLED_ORIGINS)
    http_units = s["httpApiRequests"] * max(1, math.ceil(size / (512 * 1024)))
    costs = {
        "HTTP API": http_units * PRICE_PER_MILLION["http_api_request"],
        "Lambda requests": lambda_total * PRICE_PER_MILLION["lambda_request"],
        "SQS (64 KB chunks)": sqs_chunks * PRICE_PER_MILLION["sqs_request"],
        "DynamoDB writes": wcu * PRICE_PER_MILLION["dynamodb_write_unit"],
        "DynamoDB reads": rcu * PRICE_PER_MILLION["dynamodb_read_unit"],
        "S3 requests": s3_put * PRICE_PER_MILLION["s3_put"] + s3_get * PRICE_PER_MILLION["s3_get"],
    }
    price = sum(costs.values()) / n
    print(f"   list price per million jobs (us-east-1, requests only): ${price:,.2f} = "
          + ", ".join(f"{k} ${v / n:,.2f}" for k, v in costs.items()))
    return {"requests": _per_job(total, n), "write_units": _per_job(wcu, n), "price": price}


MODE_LABELS = {
    "trickle": "trickle: created while the consumer runs, at this machine's rate (batches of one to a few jobs)",
    "backlog": "backlog: created while the consumer is paused, then resumed (full SQS batches, as under load)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sizes", default="256,1024,102400", help="job data sizes (JSON bytes), comma separated")
    parser.add_argument("--queue", default="email-sending")
    parser.add_argument("--echo", action="store_true", help="the target answers with the job's data (a result as large as the data)")
    parser.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE", help="a template parameter for the local stack")
    parser.add_argument("--backlog", action="store_true", help="pause the queue's consumer while creating: full batches, as under load")
    parser.add_argument("--mode", choices=("trickle", "backlog", "both"), default=None,
                        help="trickle (default), backlog (as --backlog), or both, each size once each way, with a summary")
    args = parser.parse_args()
    mode = args.mode or ("backlog" if args.backlog else "trickle")
    modes = ["trickle", "backlog"] if mode == "both" else [mode]
    job_type = "cost-bench"
    target = Target(echo=args.echo)
    with tempfile.TemporaryDirectory(prefix="jobq-cost-") as state:
        stack = StackProcess(Path(state), args.parameter)
        if args.parameter:
            print("stack parameters: " + ", ".join(args.parameter))
        try:
            admin = stack.client("root", admin=True)
            response = admin.put(f"/queues/{args.queue}/processors/{job_type}", json={"kind": "http", "url": target.url, "timeoutSeconds": 10})
            assert response.status_code in (200, 201), response.text
            listed = admin.get("/queues").json()["data"]
            rows = listed if isinstance(listed, list) else listed["queues"]  # seed 000 shape: the list itself
            for name in (q["name"] for q in rows if q["name"] != args.queue):
                admin.post(f"/queues/{name}/pause")
            figures: dict[tuple[str, int], dict[str, float]] = {}
            sizes = [int(s) for s in args.sizes.split(",")]
            for each in modes:
                for size in sizes:
                    result = run_workload(
                        stack, queue=args.queue, job_type=job_type, size=size, jobs=args.jobs, clients=args.clients, target=target, backlog=each == "backlog"
                    )
                    figures[(each, size)] = report(result, args.queue)
                if len(sizes) > 1:
                    small, large = min(sizes), max(sizes)
                    ratio = figures[(each, large)]["price"] / figures[(each, small)]["price"]
                    print(f"\n   {large / 1024:g} KB job / {small / 1024:g} KB job in list price ({each}): {ratio:.2f}x")
            if len(figures) > 1:
                print("\n== per job, create -> completed")
                for each in modes:
                    print(f"   {MODE_LABELS[each]}")
                    for size in sizes:
                        f = figures[(each, size)]
                        print(f"     {size:>7,} B of data: {f['requests']:.2f} AWS requests, {f['write_units']:.2f} DynamoDB write units, "
                              f"${f['price']:,.2f} per million jobs")
        finally:
            stack.stop()
            target.close()


if __name__ == "__main__":
    main()
