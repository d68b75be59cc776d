"""The fault soak: N jobs through the local stack while faults are injected, then every invariant checked.

    python3 bench/soak.py                       # 10,000 jobs, 50 users (nice -n 10 on a shared box)
    python3 bench/soak.py --jobs 500 --json out.json

It starts the local stack (infra/local) in this process, so the faults can reach the real code:
the API, the consumers, the EventsFunction and the SchedulerFunction run here, on the shared
clients of ``shared.adapters.clients``. The workload uses only the public API (and the local
stack's own controls: firing a schedule, running the health rule, reading a DLQ through the
stack's endpoint), so it survives changes inside the service.

Workload: ``--users`` users create jobs on every queue (an HTTP target on 127.0.0.1 whose answer
each job's data chooses: ok, fail first n calls, permanent 400, always 500, slow), singly (half
with an ``Idempotency-Key``, retried on 429, 5xx and lost answers) and in bulk; some delayed; an
operator cancels some, retries failed ones and redrives dead letters; recurring schedules are
fired with duplicate deliveries.

Faults (counted per kind, and tied to the request, consumer invocation or stream batch they hit):

* consumer crashes before, during (after a random number of AWS calls) and after a batch;
  handlers that overrun their timeout (every AWS call of the invocation 0.5 s slower), killed at
  their Lambda deadline as Lambda does (every consumer invocation is);
* duplicate SQS deliveries (a copy of a message sent again);
* DynamoDB throttling bursts (botocore ``before-send`` hooks answering
  ProvisionedThroughputExceeded, which botocore retries), partial ``UnprocessedItems`` on
  BatchWriteItem (part written, the rest returned), cancelled transactions;
* SQS sends that fail (every retry of that send) or whose answer is lost after it was applied
  (botocore retries it: a duplicate message);
* stream batches that fail after applying, or after applying only a prefix (the retry then
  carries different contents);
* clock skew on one queue's consumer.

Then it stops the faults, drains (running the HealthFunction, as its schedule would), and checks
the invariants of issue 17, listing every violating job, and prints one summary table.
"""

from __future__ import annotations

import argparse
import contextvars
import hashlib
import json
import logging
import os
import random
import re
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from botocore.awsrequest import AWSResponse  # noqa: E402
from botocore.exceptions import ReadTimeoutError  # noqa: E402

from infra.local.runtime import Handler, import_handler  # noqa: E402
from infra.local.stack import LocalStack  # noqa: E402

log = logging.getLogger("jobq.soak")
TERMINAL = {"completed", "failed", "cancelled"}
JOB_TYPE = "soak"
# Short consumer timeouts (visibility 6 x timeout, as the template keeps it), so a crashed batch
# comes back within seconds instead of the minutes the real queues wait.
CONSUMER_TIMEOUT = 10
VISIBILITY = 6 * CONSUMER_TIMEOUT

scope: contextvars.ContextVar[str] = contextvars.ContextVar("soak_scope", default="-")


# ---- faults ------------------------------------------------------------------------------------


class Killed(BaseException):
    """The invocation is gone (crashed, or past its deadline): no AWS call of it gets out.
    A BaseException, so no ``except Exception`` of the code under test catches it."""


@dataclass
class FaultRates:
    crash_before: float = 0.02
    crash_during: float = 0.03
    crash_after: float = 0.02
    overrun: float = 0.03  # an invocation whose every AWS call takes 0.5 s longer: it runs into its deadline
    duplicate_delivery: float = 0.03
    ddb_burst_every: float = 8.0  # seconds between throttling bursts
    ddb_burst_length: float = 0.6
    ddb_burst_share: float = 0.6  # calls throttled during a burst (each attempt)
    unprocessed: float = 0.15  # BatchWriteItem calls answered with part of it unprocessed
    txn_cancelled: float = 0.02
    sqs_send_fails: float = 0.02
    sqs_answer_lost: float = 0.02
    stream_fail_after: float = 0.04
    stream_partial: float = 0.04
    skew_seconds: float = 3.0


class Faults:
    """Every injection, counted per kind and per scope (request, invocation, batch) it hit."""

    def __init__(self, rates: FaultRates, seed: int) -> None:
        self.rates = rates
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.on = False
        self.counts: Counter[str] = Counter()
        self.by_scope: dict[str, list[str]] = defaultdict(list)
        self.by_job: dict[str, list[str]] = defaultdict(list)  # "user/job" -> faults of invocations that held it
        self.local = threading.local()
        self.burst_until = 0.0
        self.sends: dict[str, list[Any]] = {}  # send body digest -> [kind, sightings]

    def chance(self, p: float) -> bool:
        with self.lock:
            return self.on and self.rng.random() < p

    def record(self, kind: str, jobs: list[str] | None = None) -> None:
        where = scope.get()
        with self.lock:
            self.counts[kind] += 1
            self.by_scope[where].append(kind)
            for job in jobs or getattr(self.local, "jobs", None) or []:
                self.by_job[job].append(kind)

    # -- the invocation a thread runs (consumer) --
    def check_alive(self) -> None:
        local = self.local
        if getattr(local, "slow", 0):
            time.sleep(local.slow)
        if getattr(local, "killed", False):
            raise Killed("already killed")
        deadline = getattr(local, "deadline", None)
        if deadline is not None and time.monotonic() > deadline:
            local.killed = True
            self.record("consumer past its deadline (killed)")
            raise Killed("past the Lambda deadline")
        budget = getattr(local, "calls_left", None)
        if budget is not None:
            local.calls_left = budget - 1
            if local.calls_left < 0:
                local.killed = True
                self.record("consumer crash during a batch")
                raise Killed("crashed during the batch")


def _response(status: int, body: dict[str, Any] | str, url: str, json_protocol: bool = True) -> AWSResponse:
    raw_body = (json.dumps(body) if isinstance(body, dict) else body).encode()

    class Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield raw_body

    headers = {"x-amzn-RequestId": uuid.uuid4().hex, "Content-Type": "application/x-amz-json-1.0" if json_protocol else "text/xml"}
    return AWSResponse(url, status, headers, Raw())


def _forward(request: Any, body: bytes | None = None) -> httpx.Response:
    """Send a prepared botocore request to moto ourselves (its answer is then 'lost' or rewritten)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "expect")}
    content = request.body if body is None else body
    if isinstance(content, str):
        content = content.encode()
    return httpx.post(request.url, content=content or b"", headers=headers, timeout=10)


def install_aws_faults(faults: Faults) -> None:
    """``before-send`` hooks on the shared DynamoDB and SQS clients (created here, kept by the cache)."""
    from shared.adapters import clients

    ddb, sqs = clients.client("dynamodb"), clients.client("sqs")

    def on_dynamodb(request: Any, **_: Any) -> AWSResponse | None:
        faults.check_alive()
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else str(target)).rsplit(".", 1)[-1]
        if faults.on and time.monotonic() < faults.burst_until and faults.chance(faults.rates.ddb_burst_share):
            faults.record("dynamodb throttled (burst)")
            return _response(
                400,
                {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "message": "Rate of requests exceeds the allowed throughput."},
                request.url,
            )
        if operation == "TransactWriteItems" and faults.chance(faults.rates.txn_cancelled):
            body = json.loads(request.body)
            reasons = [{"Code": "None"} for _ in body.get("TransactItems", [])]
            reasons[-1] = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
            faults.record("dynamodb transaction cancelled")
            return _response(
                400,
                {
                    "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                    "message": "Transaction cancelled, please refer cancellation reasons for specific reasons [" + ", ".join(r["Code"] for r in reasons) + "]",
                    "CancellationReasons": reasons,
                },
                request.url,
            )
        if operation == "BatchWriteItem" and faults.chance(faults.rates.unprocessed):
            body = json.loads(request.body)
            written: dict[str, list[Any]] = {}
            unprocessed: dict[str, list[Any]] = {}
            for table, items in body.get("RequestItems", {}).items():
                cut = faults.rng.randint(0, len(items) - 1) if len(items) > 1 else 0
                written[table], unprocessed[table] = items[:cut], items[cut:]
            kept = {t: items for t, items in written.items() if items}
            if kept:
                answer = _forward(request, json.dumps({**body, "RequestItems": kept}).encode())
                if answer.status_code != 200:
                    return None  # let the real call answer
            faults.record("dynamodb batch write partly unprocessed")
            return _response(200, {"UnprocessedItems": unprocessed}, request.url)
        return None

    def on_sqs(request: Any, **kwargs: Any) -> AWSResponse | None:
        faults.check_alive()
        name = kwargs.get("event_name", "")
        if not name.endswith(("SendMessage", "SendMessageBatch")) or not faults.on:
            return None
        json_protocol = "json" in str(request.headers.get("Content-Type", b""))
        digest = hashlib.sha256(request.body if isinstance(request.body, bytes) else str(request.body).encode()).hexdigest()
        with faults.lock:
            state = faults.sends.get(digest)
            if state is None:
                roll = faults.rng.random()
                kind = "fail" if roll < faults.rates.sqs_send_fails else "lost" if roll < faults.rates.sqs_send_fails + faults.rates.sqs_answer_lost else ""
                state = faults.sends[digest] = [kind, 0]
            state[1] += 1
            kind, seen = state
        if kind == "fail" and seen <= 4:  # every attempt of that one call (botocore makes 4)
            faults.record("sqs send failed")
            if json_protocol:
                return _response(500, {"__type": "com.amazonaws.sqs#InternalError", "message": "We encountered an internal error."}, request.url)
            xml = "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code><Message>internal error</Message></Error><RequestId>x</RequestId></ErrorResponse>"
            return _response(500, xml, request.url, json_protocol=False)
        if kind == "lost" and seen == 1:
            _forward(request)  # applied...
            faults.record("sqs send answer lost (applied)")
            raise ReadTimeoutError(endpoint_url=request.url)  # ...and botocore retries it
        return None

    ddb.meta.events.register_first("before-send.dynamodb", on_dynamodb)
    sqs.meta.events.register_first("before-send.sqs", on_sqs)


def install_skew(faults: Faults, base: Callable[[], int]) -> None:
    """One queue's consumer runs on a clock ``skew_seconds`` ahead of ``base`` (the local stack's;
    a thread flag set by its wrapper)."""
    from infra.local.eventbridge import use_clock_everywhere

    skew_ms = int(faults.rates.skew_seconds * 1000)
    use_clock_everywhere(lambda: base() + (skew_ms if getattr(faults.local, "skewed", False) else 0))


class Wrappers:
    """The functions' handlers with faults around them (the local stack's ``handler_resolver``)."""

    def __init__(self, faults: Faults, skewed_queue: str) -> None:
        self.faults = faults
        self.skewed_queue = skewed_queue
        self.raw_sqs: Any = None  # set once moto runs: copies of messages, outside the hooks
        self.handler_errors: list[tuple[str, str]] = []

    def resolve(self, name: str) -> Handler:
        handler = import_handler(name)
        if name.startswith("functions.consumer."):
            return self._consumer(handler)
        if name.startswith("functions.events."):
            return self._events(handler)
        return self._scoped(handler, "function")

    def _scoped(self, handler: Handler, kind: str) -> Handler:
        def run(event: Any, context: Any) -> Any:
            token = scope.set(f"{kind}:{uuid.uuid4().hex[:12]}")
            try:
                return handler(event, context)
            except Exception as exc:
                self.handler_errors.append((scope.get(), f"{type(exc).__name__}: {exc}"))
                raise
            finally:
                scope.reset(token)

        return run

    def _consumer(self, handler: Handler) -> Handler:
        faults = self.faults

        def run(event: dict[str, Any], context: Any) -> Any:
            records = event.get("Records") or []
            token = scope.set(f"consumer:{uuid.uuid4().hex[:12]}")
            local = faults.local
            queue = str(records[0].get("eventSourceARN", "")).rsplit(":", 1)[-1] if records else ""
            jobs = []
            for record in records:
                try:
                    body = json.loads(record["body"])
                    jobs.append(f"{body.get('userId')}/{body.get('jobId')}")
                except (ValueError, KeyError, TypeError):
                    pass
            local.jobs, local.killed, local.calls_left, local.slow = jobs, False, None, 0
            local.deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000
            local.skewed = queue.endswith(self.skewed_queue)
            try:
                if faults.chance(faults.rates.crash_before):
                    faults.record("consumer crash before a batch")
                    raise RuntimeError("soak: consumer crashed before the batch")
                for record in records:
                    if faults.chance(faults.rates.duplicate_delivery) and self.raw_sqs is not None:
                        queue_url = self.raw_sqs.get_queue_url(QueueName=queue)["QueueUrl"]
                        self.raw_sqs.send_message(QueueUrl=queue_url, MessageBody=record["body"])
                        faults.record("duplicate sqs delivery")
                if faults.chance(faults.rates.crash_during):
                    local.calls_left = faults.rng.randint(1, 3 * max(1, len(records)))
                elif faults.chance(faults.rates.overrun):
                    faults.record("consumer handler overrunning its timeout (slow)")
                    local.slow = 0.5
                try:
                    result = handler(event, context)
                except Killed as killed:
                    raise RuntimeError(f"soak: invocation killed ({killed})") from None
                except Exception as exc:
                    self.handler_errors.append((scope.get(), f"{type(exc).__name__}: {exc}"))
                    raise
                if faults.chance(faults.rates.crash_after):
                    faults.record("consumer crash after a batch")
                    raise RuntimeError("soak: consumer crashed after the batch")
                return result
            finally:
                local.jobs, local.deadline, local.calls_left, local.killed, local.skewed, local.slow = None, None, None, False, False, 0
                scope.reset(token)

        return run

    def _events(self, handler: Handler) -> Handler:
        faults = self.faults

        def run(event: dict[str, Any], context: Any) -> Any:
            token = scope.set(f"events:{uuid.uuid4().hex[:12]}")
            try:
                records = event.get("Records") or []
                if len(records) > 1 and faults.chance(faults.rates.stream_partial):
                    handler({**event, "Records": records[: faults.rng.randint(1, len(records) - 1)]}, context)
                    faults.record("stream batch applied in part, then failed (redelivered with other contents)")
                    raise RuntimeError("soak: stream batch failed after applying a prefix")
                try:
                    result = handler(event, context)
                except Exception as exc:
                    self.handler_errors.append((scope.get(), f"{type(exc).__name__}: {exc}"))
                    raise
                if faults.chance(faults.rates.stream_fail_after):
                    faults.record("stream batch failed after applying")
                    raise RuntimeError("soak: stream batch failed after applying")
                return result
            finally:
                scope.reset(token)

        return run


class ScopedApi:
    """ASGI wrapper of the app: each request runs in its own scope; 5xx answers are kept."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.server_errors: list[tuple[str, str, int]] = []

    async def __call__(self, receive_scope: Any, receive: Any, send: Any) -> None:
        if receive_scope.get("type") != "http":
            await self.app(receive_scope, receive, send)
            return
        token = scope.set(f"api:{uuid.uuid4().hex[:12]}")
        where = scope.get()
        route = f"{receive_scope.get('method')} {receive_scope.get('path')}"

        async def watch(message: Any) -> None:
            if message.get("type") == "http.response.start" and int(message.get("status", 200)) >= 500:
                self.server_errors.append((where, route, int(message["status"])))
            await send(message)

        try:
            await self.app(receive_scope, receive, watch)
        finally:
            scope.reset(token)


class ErrorLogs(logging.Handler):
    """Every logged exception (``logger.exception``), with the scope it happened in."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[0] is not None and not record.name.startswith(("jobq.local", "jobq.soak")):
            self.seen.append((scope.get(), f"{record.getMessage()[:100]}: {record.exc_info[0].__name__}: {str(record.exc_info[1])[:160]}"))


# ---- the HTTP target -----------------------------------------------------------------------------


class Target:
    """The jobs' processor: a real HTTP server on 127.0.0.1; each job's data says how it answers."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                key = f"{payload.get('userId')}/{payload.get('jobId')}"
                data = payload.get("data") or {}
                with target.lock:
                    target.calls[key] += 1
                    count = target.calls[key]
                mode = data.get("mode", "ok")
                status = 200
                if mode == "flaky" and count <= int(data.get("n", 1)):
                    status = 500
                elif mode == "permanent":
                    status = 400
                elif mode == "broken":
                    status = 500
                elif mode == "slow":
                    time.sleep(float(data.get("sleep", 0.5)))
                if status == 200:
                    with target.lock:
                        target.successes[key] += 1
                raw = json.dumps({"ok": status == 200, "call": count}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/job"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- the clients ---------------------------------------------------------------------------------


@dataclass
class Known:
    """A job a client was told about (or might exist: an error without an Idempotency-Key)."""

    user: str
    job_id: str | None
    queue: str
    mode: str
    ref: str
    told: bool  # the client got the job back
    keyed: bool = False
    cancel_accepted: bool = False
    retried: int = 0
    group: str | None = None  # options.group (the rate-limited, concurrency-capped queue)
    parent: str | None = None  # ``user/jobId`` of its flow parent
    children: list[str] = field(default_factory=list)  # ``user/jobId`` of its flow children


@dataclass
class Ledger:
    jobs: dict[str, Known] = field(default_factory=dict)  # ref -> job
    refused: list[Known] = field(default_factory=list)  # told "not stored" (or an error after retries, with a key)
    unknown: list[Known] = field(default_factory=list)  # an error with no key: may or may not exist
    firings: dict[tuple[str, str], int] = field(default_factory=dict)  # (schedule, scheduledTime) -> deliveries
    statuses: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, known: Known) -> None:
        with self.lock:
            self.jobs[known.ref] = known


class Client:
    """One user's HTTP client, with the retry rules a careful client has."""

    def __init__(self, api: str, token: str, ledger: Ledger) -> None:
        self.http = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        self.ledger = ledger

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError:
            with self.ledger.lock:
                self.ledger.statuses["connection error"] += 1
            return None
        with self.ledger.lock:
            self.ledger.statuses[str(response.status_code)] += 1
        return response

    def retrying(self, method: str, path: str, attempts: int = 8, **kwargs: Any) -> httpx.Response | None:
        response = None
        for attempt in range(attempts):
            response = self.call(method, path, **kwargs)
            if response is not None and response.status_code < 500 and response.status_code != 429:
                return response
            wait = 0.2 * 2**attempt
            if response is not None and response.headers.get("retry-after"):
                wait = float(response.headers["retry-after"])
            time.sleep(min(wait, 5.0))
        return response


QUEUES = ("email-sending", "report-generation", "video-processing")
# report-generation's jobs carry a group key half the time (a customer): per key at most GROUP_MAX_ACTIVE
# run at once and GROUP_RATE_MAX start per GROUP_RATE_MS window (flow control, issue 13).
GROUP_QUEUE, GROUP_KEYS, GROUP_MAX_ACTIVE, GROUP_RATE_MAX, GROUP_RATE_MS = "report-generation", 8, 2, 4, 1000
MODES = (("ok", 0.60), ("flaky", 0.15), ("permanent", 0.10), ("broken", 0.05), ("slow", 0.10))


def job_body(rng: random.Random, queue: str) -> tuple[dict[str, Any], str, str]:
    roll, mode = rng.random(), "ok"
    for name, share in MODES:
        if roll < share:
            mode = name
            break
        roll -= share
    ref = uuid.uuid4().hex
    data: dict[str, Any] = {"mode": mode, "ref": ref}
    if mode == "flaky":
        data["n"] = rng.randint(1, 2)
    if mode == "slow":
        data["sleep"] = round(rng.uniform(0.2, 0.8), 2)
    options: dict[str, Any] = {"attempts": 4, "backoff": {"type": "fixed", "delay": 300}}
    if rng.random() < 0.3:  # a share of every priority; "normal" is the default
        options["priority"] = rng.choice(("critical", "high", "low", "bulk"))
    if rng.random() < 0.15:
        options["delay"] = rng.randint(500, 6000)
    if queue == GROUP_QUEUE and rng.random() < 0.5:
        options["group"] = f"customer-{rng.randrange(GROUP_KEYS)}"
    return {"queue": queue, "type": JOB_TYPE, "data": data, "options": options}, mode, ref


def create_single(client: Client, user: str, rng: random.Random, ledger: Ledger) -> None:
    body, mode, ref = job_body(rng, rng.choice(QUEUES))
    keyed = rng.random() < 0.5
    if keyed:
        response = client.retrying("POST", "/jobs", json=body, headers={"Idempotency-Key": f"soak-{ref}"})
    else:
        response = client.call("POST", "/jobs", json=body)
    known = Known(user, None, body["queue"], mode, ref, told=False, keyed=keyed, group=body["options"].get("group"))
    if response is not None and response.status_code in (200, 201):
        known.job_id, known.told = response.json()["data"]["jobId"], True
        ledger.add(known)
        maybe_cancel(client, known, rng)
    elif response is not None and response.status_code < 500 and response.status_code != 429:
        raise AssertionError(f"a valid create answered {response.status_code}: {response.text[:300]}")
    elif keyed:
        with ledger.lock:
            ledger.refused.append(known)  # given up after retries: it must not exist
    else:
        with ledger.lock:
            ledger.unknown.append(known)


def create_bulk(client: Client, user: str, rng: random.Random, ledger: Ledger, count: int) -> None:
    items = [job_body(rng, rng.choice(QUEUES)) for _ in range(count)]
    response = client.call("POST", "/jobs/bulk", json={"jobs": [body for body, _, _ in items]})
    if response is None or response.status_code >= 500 or response.status_code == 429:
        with ledger.lock:
            for body, mode, ref in items:
                # 429 and 5xx before any item: nothing stored (checked); a lost answer: unknown
                target = ledger.refused if response is not None else ledger.unknown
                target.append(Known(user, None, body["queue"], mode, ref, told=False))
        return
    if response.status_code >= 400:
        raise AssertionError(f"a valid bulk create answered {response.status_code}: {response.text[:300]}")
    results = response.json()["data"]["results"]
    for (body, mode, ref), result in zip(items, results, strict=True):
        known = Known(user, None, body["queue"], mode, ref, told=False, group=body["options"].get("group"))
        if result.get("success"):
            known.job_id, known.told = (result.get("job") or {}).get("jobId") or result.get("jobId"), True
            ledger.add(known)
            maybe_cancel(client, known, rng)
        else:
            with ledger.lock:
                ledger.refused.append(known)


def create_flow(client: Client, user: str, rng: random.Random, ledger: Ledger) -> None:
    """A parent (its own step succeeds) with 2 or 3 children on any queue, under the default policy
    (failParentOnFailure); an Idempotency-Key-like retry comes from the root's own ``jobId``."""
    root_body, _, root_ref = job_body(rng, rng.choice(QUEUES))
    root_body["data"] = {"mode": "ok", "ref": root_ref}
    root_body["options"].pop("delay", None)
    root_id = f"flow-{root_ref[:16]}"
    root_body["options"]["jobId"] = root_id
    children = [job_body(rng, rng.choice(QUEUES)) for _ in range(rng.choice((2, 3)))]
    root_body["children"] = [body for body, _, _ in children]
    response = client.retrying("POST", "/flows", json=root_body)
    nodes = [(root_id, root_body["queue"], "parent", root_ref, root_body["options"].get("group"))] + [
        (f"{root_id}:{i}", body["queue"], mode, ref, body["options"].get("group")) for i, (body, mode, ref) in enumerate(children)
    ]
    if response is not None and response.status_code in (200, 201):
        root_key = f"{user}/{root_id}"
        for index, (job_id, queue, mode, ref, group) in enumerate(nodes):
            known = Known(user, job_id, queue, mode, ref, told=True, keyed=True, group=group)
            if index == 0:
                known.children = [f"{user}/{n[0]}" for n in nodes[1:]]
            else:
                known.parent = root_key
            ledger.add(known)
    elif response is not None and response.status_code < 500 and response.status_code != 429:
        raise AssertionError(f"a valid flow answered {response.status_code}: {response.text[:300]}")
    else:
        with ledger.lock:  # given up after retries with its own jobId: none of it may exist
            ledger.refused.extend(Known(user, None, queue, mode, ref, told=False) for _, queue, mode, ref, _ in nodes)


def maybe_cancel(client: Client, known: Known, rng: random.Random) -> None:
    if rng.random() >= 0.05:
        return
    response = client.call("DELETE", f"/jobs/{known.job_id}")
    if response is not None and response.status_code == 200:
        known.cancel_accepted = True


def operate(admin: Client, clients: dict[str, Client], ledger: Ledger, rng: random.Random, stop: threading.Event) -> None:
    """The operator: retries some failed jobs, redrives some dead letters."""
    while not stop.wait(2.0):
        with ledger.lock:
            candidates = [k for k in ledger.jobs.values() if not k.cancel_accepted and k.retried == 0 and k.mode in ("flaky", "ok", "broken") and not k.children]
        rng.shuffle(candidates)
        for known in candidates[:20]:
            if stop.is_set():
                return
            got = admin.call("GET", f"/jobs/{known.job_id}", params={"userId": known.user})
            if got is None or got.status_code != 200 or got.json()["data"]["status"] != "failed":
                continue
            known.retried += 1
            if rng.random() < 0.5:
                clients[known.user].retrying("POST", f"/jobs/{known.job_id}/retry", attempts=4)
            else:
                admin.retrying("POST", f"/queues/{known.queue}/dead-letters/redrive", attempts=4, json={"jobIds": [known.job_id], "userId": known.user})


def fire_schedules(api: str, admin: Client, ledger: Ledger, rng: random.Random, schedules: list[str], firings: int) -> None:
    """Each schedule fired at ``firings`` scheduled times, each delivered 2 or 3 times at once."""
    control = httpx.Client(base_url=api, timeout=60)
    base = int(time.time() // 60) * 60 - 86400
    plan = [(name, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + 60 * i))) for name in schedules for i in range(firings)]
    rng.shuffle(plan)

    def fire(item: tuple[str, str]) -> None:
        name, when = item
        deliveries = rng.choice((2, 3))
        ledger.firings[item] = deliveries
        control.post("/_local/scheduler/fire", json={"name": f"repeat-{name}", "scheduledTime": when, "deliveries": deliveries})

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(fire, plan))


# ---- the run -------------------------------------------------------------------------------------


@dataclass
class Config:
    jobs: int = 10_000
    users: int = 50
    workers: int = 6
    seed: int = 17
    schedules: int = 3
    firings: int = 5
    drain_seconds: float | None = None  # None: 900 s, or 0.3 s a job past 3,000 jobs
    rates: FaultRates = field(default_factory=FaultRates)


def soak_template(directory: Path) -> Path:
    """template.yaml with every queue's consumer Timeout and VisibilityTimeout shortened (same ratio)."""
    text = (ROOT / "template.yaml").read_text()
    text = text.replace("Location: infra/queue.yaml", f"Location: {ROOT / 'infra' / 'queue.yaml'}")
    text = re.sub(r"(\n {8}Timeout: )\d+", rf"\g<1>{CONSUMER_TIMEOUT}", text)
    text = re.sub(r"(\n {8}VisibilityTimeout: )\d+", rf"\g<1>{VISIBILITY}", text)
    path = directory / "template.yaml"
    path.write_text(text)
    return path


def run(config: Config) -> dict[str, Any]:
    rng = random.Random(config.seed)
    faults = Faults(config.rates, config.seed)
    wrappers = Wrappers(faults, skewed_queue="video-processing")
    errors = ErrorLogs()
    from shared.observability import logger as service_logger

    service_logger.addHandler(errors)  # Powertools' logger does not propagate to the root
    service_logger.setLevel(logging.ERROR)
    apps: list[ScopedApi] = []

    def app_factory() -> Any:
        from api.app import create_app

        apps.append(ScopedApi(create_app()))
        return apps[-1]

    target = Target()
    ledger = Ledger()
    began = time.monotonic()
    # The health sweep on the soak's time scale: orphans (a message lost, or moved to the DLQ by SQS
    # after maxReceiveCount crashed deliveries) are woken after 10 s, again every 30 s.
    os.environ.update({"JOBQ_ORPHAN_GRACE_SECONDS": "10", "JOBQ_ORPHAN_RESEND_SECONDS": "30"})
    with tempfile.TemporaryDirectory(prefix="jobq-soak-") as tmp:
        stack = LocalStack(
            api_port=0,
            stack_name="jobq-soak",
            state_dir=Path(tmp) / "state",
            template=soak_template(Path(tmp)),
            # Retention and the health sweep on the soak's terms (drain runs the sweep); quiet logs but errors.
            parameters={"CleanupRate": "rate(7 days)", "HealthCheckRate": "rate(1 day)", "UserJobsPerMinute": "600", "LogLevel": "ERROR"},
            handler_resolver=wrappers.resolve,
            app_factory=app_factory,
            websocket_port=None,
        )
        with stack:
            import boto3

            wrappers.raw_sqs = boto3.client(
                "sqs", endpoint_url=stack.aws_endpoint, region_name=stack.region, aws_access_key_id="testing", aws_secret_access_key="testing"
            )
            install_aws_faults(faults)
            install_skew(faults, stack.clock.now_ms)
            api = str(stack.api_url)
            admin = Client(api, stack.mint_token("soak-admin", admin=True), ledger)
            for queue in QUEUES:
                answer = admin.retrying("PUT", f"/queues/{queue}/processors/{JOB_TYPE}", json={"kind": "http", "url": target.url, "timeoutSeconds": 2})
                assert answer is not None and answer.status_code == 200, answer.text if answer is not None else "no answer"
            groups = {"maxActive": GROUP_MAX_ACTIVE, "rateLimit": {"max": GROUP_RATE_MAX, "duration": GROUP_RATE_MS}}
            answer = admin.retrying("PATCH", f"/queues/{GROUP_QUEUE}", json={"groups": groups})
            assert answer is not None and answer.status_code == 200, answer.text if answer is not None else "no answer"
            schedules = []
            for i in range(config.schedules):
                name = f"soak-{i}"
                body = {"name": name, "queue": QUEUES[i % 3], "type": JOB_TYPE, "data": {"mode": "ok", "ref": name}, "cron": "0 0 1 1 *"}
                answer = admin.retrying("POST", "/schedules", json=body)
                assert answer is not None and answer.status_code == 201, answer.text if answer is not None else "no answer"
                schedules.append(name)
            users = [f"soak-user-{i:02d}" for i in range(config.users)]
            clients = {u: Client(api, stack.mint_token(u), ledger) for u in users}
            setup = time.monotonic() - began

            # -- the workload, with faults on --
            faults.on = True
            stop = threading.Event()

            def bursts() -> None:
                while not stop.wait(faults.rng.uniform(0.5, 1.5) * config.rates.ddb_burst_every):
                    faults.burst_until = time.monotonic() + config.rates.ddb_burst_length

            if config.rates.ddb_burst_every > 0 and config.rates.ddb_burst_share > 0:
                threading.Thread(target=bursts, daemon=True).start()
            operator = threading.Thread(target=operate, args=(admin, clients, ledger, random.Random(config.seed + 1), stop), daemon=True)
            operator.start()
            plan: list[tuple[str, int]] = []
            remaining = config.jobs
            while remaining > 0:
                user = rng.choice(users)
                if rng.random() < 0.05 and remaining >= 4:
                    plan.append((user, -4))  # a flow: a parent and 2 or 3 children
                    remaining -= 4
                elif rng.random() < 0.3 and remaining >= 5:
                    count = min(remaining, rng.randint(5, 20))
                    plan.append((user, count))
                    remaining -= count
                else:
                    plan.append((user, 1))
                    remaining -= 1

            created = [0]
            created_lock = threading.Lock()

            def step(item: tuple[int, tuple[str, int]]) -> None:
                index, (user, count) = item
                with created_lock:
                    before, created[0] = created[0], created[0] + abs(count)
                if before // 500 != created[0] // 500:
                    progress(f"load: {created[0]} of {config.jobs} jobs sent, {time.monotonic() - began - setup:.0f} s")
                local = random.Random(config.seed * 1_000_003 + index)
                if count < 0:
                    create_flow(clients[user], user, local, ledger)
                elif count == 1:
                    create_single(clients[user], user, local, ledger)
                else:
                    create_bulk(clients[user], user, local, ledger, count)

            firing = threading.Thread(target=fire_schedules, args=(api, admin, ledger, random.Random(config.seed + 2), schedules, config.firings))
            firing.start()
            with ThreadPoolExecutor(max_workers=config.workers) as pool:
                list(pool.map(step, enumerate(plan)))
            firing.join()
            load = time.monotonic() - began - setup
            # a little more time under faults for the consumers, then none
            time.sleep(min(20.0, 2 + config.jobs / 500))
            stop.set()
            operator.join()
            faults.on = False

            # -- drain --
            progress(f"load done in {load:.0f} s; draining")
            drained = drain(stack, admin, config.drain_seconds or max(900.0, 0.3 * config.jobs))
            for stream in stack.streams:
                stream.wait_caught_up(60)
            drain_time = time.monotonic() - began - setup - load
            progress(f"drained in {time.monotonic() - began - setup - load:.0f} s; checking")
            report = check(stack, admin, ledger, faults, wrappers, apps, errors, target)
            report["figures"] = {
                "jobs planned": config.jobs,
                "users": config.users,
                "setup s": round(setup, 1),
                "load s": round(load, 1),
                "drain s": round(drain_time, 1),
                "drained": drained,
                "clock skew": f"+{config.rates.skew_seconds:g} s on the video-processing consumer",
            }
    target.stop()
    service_logger.removeHandler(errors)
    return report


def statuses_of(admin: Client, jobs: list[Known]) -> dict[str, dict[str, Any]]:
    """``user/job`` -> the job as GET /jobs/{id}?userId= shows it (admin), for every given job."""
    out: dict[str, dict[str, Any]] = {}

    def one(known: Known) -> None:
        response = admin.retrying("GET", f"/jobs/{known.job_id}", params={"userId": known.user})
        if response is not None and response.status_code == 200:
            out[f"{known.user}/{known.job_id}"] = response.json()["data"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, jobs))
    return out


def progress(line: str) -> None:
    """A progress line on stderr (the stack's loggers are quieted, and stdout carries the functions' metrics)."""
    print(time.strftime("%H:%M:%S"), "soak", line, file=sys.stderr, flush=True)


def drain(stack: LocalStack, admin: Client, budget: float) -> bool:
    """Until no queue lists an unfinished job, with the HealthFunction run every 10 s as its rule would.

    The sweep runs on a thread of its own, as the rule would beside the consumers: at 10,000 jobs one
    run (its recount reads every job) takes minutes here, and the listing must not wait for it, nor
    it for the listing. Each round reads every queue's listing once (a page costs the same at any
    size), not a GET per job. A told-about job missing from every listing is finished or lost:
    ``check`` reads every one of them.
    """
    deadline = time.monotonic() + budget
    health = next((k for k in (stack.rules.rules if stack.rules else {}) if k.startswith("HealthFunction")), None)
    done = threading.Event()

    def sweep() -> None:
        while health and stack.rules and not done.wait(10):
            began = time.monotonic()
            try:
                stack.rules.run_now(health)
            except Exception as exc:
                log.warning("health run failed: %s", exc)
            progress(f"health run took {time.monotonic() - began:.0f} s")

    sweeper = threading.Thread(target=sweep, name="soak-health", daemon=True)
    sweeper.start()
    try:
        while time.monotonic() < deadline:
            busy = Counter(j["status"] for queue in QUEUES for j in _all_jobs(admin, queue) if j["status"] not in TERMINAL)
            if not busy:
                return True
            progress(f"draining: {sum(busy.values())} jobs unfinished {dict(busy)}")
            time.sleep(10)  # a round reads every job: leave the consumers the time between
        return False
    finally:
        done.set()
        sweeper.join()


def _all_jobs(admin: Client, queue: str, status: str | None = None) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        response = admin.retrying("GET", f"/queues/{queue}/jobs", params=params)
        assert response is not None and response.status_code == 200, response.text if response is not None else "no answer"
        data = response.json()["data"]
        jobs += data["jobs"]
        cursor = data.get("nextCursor")
        if not cursor:
            return jobs


def _dlq_copies(stack: LocalStack) -> Counter[str]:
    """``user/job`` -> copies in the queues' DLQs (read through the stack's endpoint, then left visible again)."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=stack.aws_endpoint, region_name=stack.region, aws_access_key_id="testing", aws_secret_access_key="testing")
    copies: Counter[str] = Counter()
    for info in stack.queues.values():
        seen: set[str] = set()
        empty = 0
        while empty < 3:
            out = sqs.receive_message(QueueUrl=info.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=120, WaitTimeSeconds=0)
            messages = out.get("Messages") or []
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                empty += 1
                continue
            for message in fresh:
                seen.add(message["MessageId"])
                try:
                    body = json.loads(message["Body"])
                    copies[f"{body.get('userId')}/{body.get('jobId')}"] += 1
                except ValueError:
                    copies["(not json)"] += 1
    return copies


def check(stack: LocalStack, admin: Client, ledger: Ledger, faults: Faults, wrappers: Wrappers, apps: list[ScopedApi], errors: ErrorLogs, target: Target) -> dict[str, Any]:
    violations: dict[str, list[str]] = defaultdict(list)
    explained: Counter[str] = Counter()
    told = [k for k in ledger.jobs.values() if k.told]
    jobs = statuses_of(admin, told)
    listed: dict[str, dict[str, Any]] = {}
    for queue in QUEUES:
        for job in _all_jobs(admin, queue):
            listed[f"{job['userId']}/{job['jobId']}"] = job
    by_ref = {str((j.get("data") or {}).get("ref")): key for key, j in listed.items()}
    states: Counter[str] = Counter()

    def faulted(key: str) -> list[str]:
        return faults.by_job.get(key, [])

    for known in told:
        key = f"{known.user}/{known.job_id}"
        job = jobs.get(key)
        if job is None:
            violations["every job told about exists (none lost)"].append(f"{key}: not found")
            continue
        status = job["status"]
        states[status] += 1
        if status not in TERMINAL:
            violations["every job ends in one terminal state"].append(f"{key}: {status} (mode {known.mode})")
        if int(job.get("attempts") or 0) > int(job.get("maxAttempts") or 0):
            violations["attempts never above maxAttempts"].append(f"{key}: {job.get('attempts')} > {job.get('maxAttempts')}")
        completions = sum(1 for h in job.get("history") or [] if h.get("outcome") == "completed")
        if completions > 1:
            violations["none completed twice"].append(f"{key}: {completions} completed attempts in its history")
        if known.cancel_accepted and status != "cancelled":
            violations["every accepted cancel honoured"].append(f"{key}: cancel accepted, now {status}")
        if known.mode in ("ok", "slow") and status == "failed" and not known.cancel_accepted:
            why = f"{key}: mode {known.mode} failed: {str(job.get('error'))[:120]}; faults on it: {Counter(faulted(key)).most_common(3)}"
            if faulted(key):
                explained["a success-mode job failed after injected faults spent its attempts"] += 1
            else:
                violations["no success recorded as a failure"].append(why)
        if known.mode in ("permanent",) and status == "completed":
            violations["no failure recorded as a success"].append(f"{key}: mode {known.mode} completed")
    # flows: a parent runs only after its children, and ends as its children's ends say (failParentOnFailure)
    tolerance_ms = (faults.rates.skew_seconds + 1) * 1000  # one consumer's clock is skewed on purpose
    flows = 0
    for known in told:
        if not known.children:
            continue
        flows += 1
        key = f"{known.user}/{known.job_id}"
        parent = jobs.get(key)
        kids = {child: jobs.get(child) for child in known.children}
        if parent is None or any(kid is None for kid in kids.values()):
            continue  # reported as lost above
        kid_status = {child: kid["status"] for child, kid in kids.items() if kid is not None}
        if parent["status"] == "completed" and any(s != "completed" for s in kid_status.values()):
            violations["a parent completes only when all its children completed"].append(f"{key}: completed; children {kid_status}")
        if any(s == "failed" for s in kid_status.values()) and parent["status"] != "failed":
            violations["a failed child fails its parent (failParentOnFailure)"].append(f"{key}: {parent['status']}; children {kid_status}")
        if all(s == "completed" for s in kid_status.values()) and parent["status"] != "completed":
            if faulted(key):
                explained["a flow parent failed after injected faults spent its attempts"] += 1
            else:
                violations["a parent whose children all completed completes"].append(f"{key}: {parent['status']}; error {str(parent.get('error'))[:120]}")
        ended = [_ms(h.get("endedAt")) for kid in kids.values() if kid for h in kid.get("history") or [] if h.get("outcome") == "completed"]
        started = [_ms(h.get("startedAt")) for h in parent.get("history") or [] if h.get("outcome") == "completed"]
        if ended and started and min(started) + tolerance_ms < max(ended):
            violations["a parent runs only after its children ended"].append(f"{key}: its completed attempt started before a child's ended")
    # group keys: never more than maxActive running, never more than the rate's max started in a window
    attempts_by_key: dict[str, list[tuple[int, int]]] = defaultdict(list)  # key -> (start, end) of attempts ended in a consumer
    starts_by_key: dict[str, list[int]] = defaultdict(list)
    for known in told:
        job = jobs.get(f"{known.user}/{known.job_id}")
        if job is None or known.group is None:
            continue
        for h in job.get("history") or []:
            started = _ms(h.get("startedAt"))
            starts_by_key[known.group].append(started)
            if h.get("outcome") in ("completed", "failed", "retrying", "timed_out") and h.get("endedAt"):
                attempts_by_key[known.group].append((started, _ms(h.get("endedAt"))))
    for key, spans in attempts_by_key.items():
        edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
        running = peak = 0
        for _, step in edges:
            running += step
            peak = max(peak, running)
        if peak > GROUP_MAX_ACTIVE:
            violations["a key's active jobs never above its maxActive"].append(f"{key}: {peak} attempts ran at once (maxActive {GROUP_MAX_ACTIVE})")
    slack_ms = 100  # a start counted at the end of one window may be stamped at the start of the next
    for key, starts in starts_by_key.items():
        windows: Counter[int] = Counter(t // GROUP_RATE_MS for t in starts)
        early: Counter[int] = Counter(t // GROUP_RATE_MS for t in starts if t % GROUP_RATE_MS < slack_ms)
        for window, n in windows.items():
            if n - early[window] > GROUP_RATE_MAX:
                violations["a key's starts never above its rate limit"].append(f"{key}: {n} starts in window {window} (max {GROUP_RATE_MAX})")
    # phantoms: jobs nobody was told about
    told_keys = {f"{k.user}/{k.job_id}" for k in told}
    unknown_refs = {k.ref for k in ledger.unknown}
    refused_refs = {k.ref for k in ledger.refused}
    schedule_jobs = [key for key in listed if ":repeat:" in key or key.split("/", 1)[1].startswith("repeat:")]
    for key, job in listed.items():
        ref = str((job.get("data") or {}).get("ref"))
        if key in told_keys or key in schedule_jobs:
            continue
        if ref in refused_refs:
            violations["no phantom job from a refused request (or an error with an Idempotency-Key)"].append(f"{key}: ref {ref}, the client was told it was not stored")
        elif ref in unknown_refs:
            explained["a job from a request whose answer was an error without a key (may exist)"] += 1
        else:
            violations["no job nobody asked for"].append(f"{key}: ref {ref}")
    for ref in refused_refs:
        if ref in by_ref and by_ref[ref] not in told_keys:
            pass  # listed above
    # schedule firings: exactly one job each
    fired: Counter[tuple[str, str]] = Counter()
    for key in schedule_jobs:
        job_id = key.split("/", 1)[1]
        parts = job_id.split(":")
        if len(parts) >= 3:
            fired[(parts[1], ":".join(parts[2:]))] += 1
    per_schedule = Counter(name for name, _ in fired)
    for (name, when), deliveries in ledger.firings.items():
        made = sum(n for (n2, w2), n in fired.items() if n2 == name and _same_time(w2, when))
        if made != 1:
            violations["each schedule firing made exactly one job"].append(f"{name} at {when} ({deliveries} deliveries): {made} jobs")
    # counters against a recount
    for queue in QUEUES:
        response = admin.retrying("GET", f"/queues/{queue}")
        assert response is not None and response.status_code == 200
        data = response.json()["data"]
        counts = _counts_of(data)
        recount = Counter(j["status"] for key, j in listed.items() if j["queue"] == queue)
        for status in sorted(set(counts) | set(recount)):
            if status in ("total",):
                continue
            if counts.get(status, 0) != recount.get(status, 0):
                violations["counters equal to a recount"].append(f"{queue} {status}: counter {counts.get(status, 0)}, recount {recount.get(status, 0)}")
        metrics = admin.retrying("GET", f"/queues/{queue}/metrics", params={"hours": 6})
        assert metrics is not None and metrics.status_code == 200, metrics.text if metrics is not None else "no answer"
        totals = metrics.json()["data"]["totals"]
        finished: Counter[str] = Counter()
        for job in listed.values():
            if job["queue"] == queue:
                finished["created"] += 1
                finished.update(e["outcome"] for e in job.get("history") or [] if e.get("outcome") in ("completed", "failed"))
        for outcome in ("created", "completed", "failed"):
            if int(totals.get(outcome) or 0) != finished[outcome]:
                violations["metric buckets equal to a recount"].append(
                    f"{queue} {outcome}: buckets {totals.get(outcome)}, recount {finished[outcome]} (jobs, history entries)"
                )
    # every failed job's DLQ copy
    copies = _dlq_copies(stack)
    children_of = {f"{k.user}/{k.job_id}": k.children for k in told if k.children}
    for key, job in listed.items():
        if job["status"] == "failed" and copies.get(key, 0) == 0:
            # A parent failed by its child (fail_for_child) has no copy of its own, by design: the failed
            # child's copy revives it when redriven; a copy of the parent would run it alone (README, Flows).
            ended_children = [jobs.get(child) or listed.get(child) or {} for child in children_of.get(key, [])]
            ran_and_failed = ((job.get("history") or [{}])[-1]).get("outcome") == "failed"
            if not ran_and_failed and any(kid.get("status") in ("failed", "cancelled") for kid in ended_children):
                explained["a parent failed by its child: no DLQ copy of its own (redriving or retrying the child revives it)"] += 1
            else:
                violations["every failed job's DLQ copy present"].append(f"{key}: failed, no copy in {job['queue']}-dlq")
    stale = sum(n for key, n in copies.items() if listed.get(key, {}).get("status") != "failed")
    # every 5xx and unhandled exception explained by an injected fault
    server_errors = [e for app in apps for e in app.server_errors]
    for where, route, status in server_errors:
        if faults.by_scope.get(where):
            explained[f"{status} answered after an injected fault"] += 1
        else:
            violations["every 5xx explained by an injected fault"].append(f"{route} -> {status} ({where}), no fault injected in it")
    for where, text in errors.seen + wrappers.handler_errors:
        if faults.by_scope.get(where) or "soak:" in text:
            explained["an exception logged after an injected fault"] += 1
        else:
            violations["every unhandled exception explained by an injected fault"].append(f"{where}: {text}")
    invariants = [
        "every job told about exists (none lost)",
        "every job ends in one terminal state",
        "no phantom job from a refused request (or an error with an Idempotency-Key)",
        "no job nobody asked for",
        "none completed twice",
        "attempts never above maxAttempts",
        "no success recorded as a failure",
        "no failure recorded as a success",
        "every accepted cancel honoured",
        "a parent completes only when all its children completed",
        "a failed child fails its parent (failParentOnFailure)",
        "a parent whose children all completed completes",
        "a parent runs only after its children ended",
        "a key's active jobs never above its maxActive",
        "a key's starts never above its rate limit",
        "counters equal to a recount",
        "metric buckets equal to a recount",
        "every failed job's DLQ copy present",
        "each schedule firing made exactly one job",
        "every 5xx explained by an injected fault",
        "every unhandled exception explained by an injected fault",
    ]
    return {
        "jobs": {
            "told about": len(told),
            "refused (429/5xx, nothing stored)": len(ledger.refused),
            "unknown (error, no key)": len(ledger.unknown),
            "flows (parent + 2-3 children)": flows,
            "with a group key": sum(1 for k in told if k.group),
            "with a priority": sum(1 for j in jobs.values() if int(j.get("priority") or 0) != 0),
            "schedule firings": len(ledger.firings),
            "schedule jobs": sum(per_schedule.values()),
            "cancels accepted": sum(k.cancel_accepted for k in told),
            "retried or redriven": sum(k.retried for k in told),
            **{f"final {s}": n for s, n in sorted(states.items())},
            "dlq copies of non-failed jobs": stale,
            "target calls": sum(target.calls.values()),
        },
        "requests": dict(sorted(ledger.statuses.items())),
        "faults": dict(faults.counts.most_common()),
        "explained": dict(explained),
        "invariants": {name: len(violations.get(name, [])) for name in invariants},
        "violations": {name: items for name, items in violations.items() if items},
    }


def _ms(timestamp: str | None) -> int:
    if not timestamp:
        return 0
    from datetime import datetime

    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


def _same_time(a: str, b: str) -> bool:
    def norm(t: str) -> str:
        return re.sub(r"\D", "", t)[:12]

    return norm(a) == norm(b)


def _counts_of(queue: dict[str, Any]) -> dict[str, int]:
    """The per-status counters in GET /queues/{name} (``counts`` or ``stats``, as the shape has them)."""
    for name in ("liveStats", "counts", "stats"):
        value = queue.get(name)
        if isinstance(value, dict):
            return {k: int(v) for k, v in value.items() if isinstance(v, int) and k in TERMINAL | {"waiting", "active", "delayed", "stalled"}}
    return {}


def summary_table(report: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    for section in ("figures", "jobs", "requests", "faults", "explained"):
        rows.append((f"[{section}]", ""))
        rows += [(f"  {k}", str(v)) for k, v in report.get(section, {}).items()]
    rows.append(("[invariants]", "violations"))
    rows += [(f"  {k}", str(v)) for k, v in report["invariants"].items()]
    width = max(len(k) for k, _ in rows) + 2
    lines = [f"{k:<{width}}{v}" for k, v in rows]
    for name, items in report["violations"].items():
        lines.append(f"\nviolations of '{name}' ({len(items)}):")
        lines += [f"  {item}" for item in items]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--workers", type=int, default=6, help="client threads")
    parser.add_argument("--without", action="append", default=[], choices=sorted(FaultRates.__dataclass_fields__), help="a fault not to inject (repeatable)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--drain-seconds", type=float, default=None, help="the drain's budget (default: 900 s, or 0.3 s a job if more)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("jobq", "jobq.local", "jobq.local.esm", "jobq.local.streams", "botocore", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL if noisy.startswith("jobq.local") else logging.ERROR)
    logging.getLogger("jobq.soak").setLevel(logging.INFO)
    rates = FaultRates()
    for name in args.without:
        setattr(rates, name, 0.0)
    config = Config(jobs=args.jobs, users=args.users, workers=args.workers, seed=args.seed, drain_seconds=args.drain_seconds, rates=rates)
    out = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the functions' metric lines (EMF) go to stdout
    try:
        report = run(config)
    finally:
        sys.stdout.close()
        sys.stdout = out
    report["figures"]["faults left out"] = ", ".join(args.without) or "none"
    print(summary_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
