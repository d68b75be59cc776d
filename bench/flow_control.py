"""Flow control on the local stack: rate limits, a key's active jobs, a quiet tenant during a burst, timeouts.

    .venv/bin/python -m bench.flow_control                  # the issue's figures (2,000-job burst)
    .venv/bin/python -m bench.flow_control --burst 500      # quicker
    .venv/bin/python -m bench.flow_control --only priorities | grep -v '^{'   # without the service's EMF metric lines

Runs the local stack in this process (moto, the consumers behind the emulated event source
mappings, the API over HTTP on 127.0.0.1) and an HTTP target on 127.0.0.1 that answers after
``--work`` seconds. Every figure comes from the job items' own ``createdAt`` / ``startedAt`` /
``completedAt`` (what the consumer wrote when it claimed and ended each job):

1. rate limit: a queue limit of ``--rate`` starts per ``--window`` ms, a backlog of 5 windows'
   worth, maxConcurrency 10: the most starts in any of the limiter's windows, the most in any
   sliding window of the same length, and the achieved rate against the limit;
2. max active per key: ``groups.maxActive`` 2 (one key overridden to 1), 3 keys x 15 jobs: the
   most jobs of each key running at once, from the start/end intervals;
3. fairness: one tenant's burst of ``--burst`` jobs arriving at once (created while the consumers
   are paused), a quiet tenant adding one job every 0.2 s while the first half is worked off: the
   quiet tenant's wait (created -> started) p50/p95 against the burst's;
4. timeouts: jobs with ``options.timeout`` shorter than the target's answer: every attempt ends
   ``timed_out``, is counted and retried;
5. priorities: the consumers saturated by a backlog of ``--backlog`` low jobs (one tenant), a
   critical job from the same tenant: its wait against one low batch's processing time, nominal
   (BatchSize x work) and as the batches ran (each timed at the consumer). It runs last: the
   backlog is left to the stack's shutdown.

Creation survives a loaded machine: bulk creates of 100, 180 s client timeouts, retries on
timeouts, 429 and 5xx, progress lines. The small sets give each job a jobId (a retried request
returns what it created), which makes every item its own conditional write and SendMessage; the
backlog and the burst go without, so a request is 4 BatchWriteItem and 10 SendMessageBatch calls
(5,000 jobs in about a minute or two here; a retry after a timeout may add up to 100 jobs more,
which only lengthens a backlog). The stack runs without the per-user rate quota
(``UserJobsPerMinute`` 0: its default 1,200 a minute would hold a 5,000-job backlog back four
minutes; the quota has its own tests). The priorities stage stops once the critical jobs and the
low batches around them are measured: it pauses the queue and leaves the rest of the backlog.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import tempfile
import threading
import time
from collections import Counter
from typing import Any

import httpx

from infra.local.stack import LocalStack
from shared.adapters.job_repository import JobStore
from shared.clock import parse_iso
from shared.models import Job
from tests.target_server import TargetServer

QUEUE = "email-sending"
BULK = 100  # POST /jobs/bulk's maximum
CLIENT_TIMEOUT = httpx.Timeout(180.0, connect=10.0)  # a bulk create on a loaded moto can take a minute
RETRIES = 8


def _post_with_retries(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST, retried with backoff on a timeout, a dropped connection, a 429 or a 5xx."""
    for attempt in range(RETRIES):
        try:
            response = client.post(path, json=body)
        except httpx.TransportError as exc:  # timeouts included
            problem = f"{type(exc).__name__}"
        else:
            if response.status_code in (200, 201, 207):
                return response.json()
            if response.status_code != 429 and response.status_code < 500:
                raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")
            problem = f"HTTP {response.status_code}"
        wait = min(30.0, 2.0 * 2**attempt)
        print(f"   POST {path}: {problem}; retrying in {wait:.0f} s ({attempt + 1}/{RETRIES})", flush=True)
        time.sleep(wait)
    raise RuntimeError(f"POST {path}: gave up after {RETRIES} attempts")


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class BatchClock:
    """Wraps the queue's consumer handler behind its emulated event source mapping: how long each batch ran."""

    def __init__(self, stack: LocalStack) -> None:
        self.mapping = stack.mappings[QUEUE]
        self.batches: list[tuple[float, float, int, bool]] = []  # (start, end, records, has a critical record) in monotonic s
        handler = self.mapping.handler

        def timed(event: dict[str, Any], context: Any) -> Any:
            started = time.monotonic()
            try:
                return handler(event, context)
            finally:
                records = event.get("Records") or []
                critical = any('"priority": 10' in r.get("body", "") or '"priority":10' in r.get("body", "") for r in records)
                self.batches.append((started, time.monotonic(), len(records), critical))

        self.mapping.handler = timed

    def low_batches(self, since: float, until: float) -> list[float]:
        """Durations of the full batches without a critical record that ended in [since, until]."""
        return [end - start for start, end, n, critical in list(self.batches) if since <= end <= until and n >= 10 and not critical]


class Bench:
    def __init__(self, stack: LocalStack, target: TargetServer) -> None:
        self.admin = httpx.Client(base_url=str(stack.api_url), headers={"Authorization": f"Bearer {stack.mint_token('root', admin=True)}"}, timeout=CLIENT_TIMEOUT)
        self.requests = itertools.count(1)  # bulk requests so far: part of each jobId (next() is atomic)
        self.stack = stack
        self.target = target
        self.work_path = "0.2"
        self.batch_clock = BatchClock(stack)
        self.store = JobStore(stack.provisioned.resources["JobsTable"].ref)  # type: ignore[union-attr]

    def user(self, name: str) -> httpx.Client:
        return httpx.Client(base_url=str(self.stack.api_url), headers={"Authorization": f"Bearer {self.stack.mint_token(name)}"}, timeout=CLIENT_TIMEOUT)

    def stack_batch_size(self) -> int:
        response = self.admin.get(f"/queues/{QUEUE}")
        assert response.status_code == 200, response.text
        return int((response.json()["data"].get("configuration") or {}).get("batchSize") or 10)

    def patch(self, body: dict[str, Any]) -> None:
        response = self.admin.patch(f"/queues/{QUEUE}", json=body)
        assert response.status_code == 200, response.text

    def target_type(self, job_type: str, path: str) -> None:
        body = {"kind": "http", "url": f"{self.target.url}{path}", "timeoutSeconds": 20}
        response = self.admin.put(f"/queues/{QUEUE}/processors/{job_type}", json=body)
        assert response.status_code == 200, response.text

    def create(
        self, client: httpx.Client, job_type: str, n: int, *, label: str = "", with_ids: bool = True, **options: Any
    ) -> list[tuple[str, str]]:
        """``n`` jobs in bulk creates of 100. ``with_ids``: each job has its own jobId, so a request retried
        after a timeout or a 429/5xx returns the jobs it had created instead of adding them twice; without,
        the API writes and enqueues a request's jobs in batches (many times faster), and a retried request
        may add jobs the first one stored."""
        made: list[tuple[str, str]] = []
        started = time.monotonic()
        for start in range(0, n, BULK):
            request = next(self.requests)
            jobs = [
                {"queue": QUEUE, "type": job_type, "data": {"i": start + i},
                 "options": {**options, "jobId": f"b{request}-{start + i}"} if with_ids else dict(options)}
                for i in range(min(BULK, n - start))
            ]
            results = _post_with_retries(client, "/jobs/bulk", {"jobs": jobs})["data"]["results"]
            made += [(r["job"]["userId"], r["job"]["jobId"]) for r in results if r["success"]]
            failed = [r["error"] for r in results if not r["success"]]
            if failed:
                print(f"   {label or job_type}: {len(failed)} jobs refused: {failed[0]}", flush=True)
            if n >= 1000 and (start // BULK) % 10 == 9:
                print(f"   {label or job_type}: {len(made)}/{n} created in {time.monotonic() - started:.0f} s", flush=True)
        return made

    def jobs(self, refs: list[tuple[str, str]]) -> list[Job]:
        return [j for j in (self.store.get(u, i) for u, i in refs) if j is not None]

    def wait_done(self, refs: list[tuple[str, str]], timeout: float, statuses: tuple[str, ...] = ("completed",)) -> list[Job]:
        """The jobs once each reached one of ``statuses`` (or at the timeout); only the others are read again,
        and a large set every 2 s, so polling leaves the consumers the CPU."""
        deadline = time.monotonic() + timeout
        seen: dict[tuple[str, str], Job] = {}
        pending = list(refs)
        while True:
            for ref in pending:
                job = self.store.get(*ref)
                if job is not None:
                    seen[ref] = job
            pending = [ref for ref in pending if ref not in seen or seen[ref].status.value not in statuses]
            if not pending or time.monotonic() > deadline:
                return [seen[ref] for ref in refs if ref in seen]
            time.sleep(0.5 if len(pending) < 50 else 2.0)


def rate_limit(bench: Bench, rate: int, window_ms: int) -> None:
    bench.patch({"rateLimit": {"max": rate, "duration": window_ms}, "maxConcurrency": 10})
    n = rate * 5
    refs = bench.create(bench.user("rate"), "work", n)
    jobs = bench.wait_done(refs, timeout=120 + 10 * window_ms / 1000)
    bench.patch({"rateLimit": None})
    starts = sorted(parse_iso(j.started_at) for j in jobs if j.started_at)
    per_window = Counter(s // window_ms for s in starts)
    sliding = max(sum(1 for t in starts[i:] if t < s + window_ms) for i, s in enumerate(starts))
    span = (starts[-1] - starts[0]) / 1000 if len(starts) > 1 else float("nan")
    done = sum(j.status.value == "completed" for j in jobs)
    attempts = sum(j.attempts for j in jobs)
    print(f"\n1. rate limit {rate} per {window_ms} ms, {n} jobs, maxConcurrency 10")
    print(f"   most starts in one limiter window      {max(per_window.values())} (limit {rate})")
    print(f"   most starts in any sliding {window_ms} ms   {sliding} (fixed windows allow up to 2 x {rate} across a boundary)")
    print(f"   achieved rate                          {(len(starts) - 1) / span * window_ms / 1000:.2f} per window over {span:.1f} s "
          f"(limit {rate}); {done}/{n} completed, {attempts} attempts")


def max_active(bench: Bench, work_s: float) -> None:
    bench.patch({"groups": {"maxActive": 2, "overrides": {"key-c": {"maxActive": 1}}}, "maxConcurrency": 10})
    client = bench.user("groups")
    refs: list[tuple[str, str]] = []
    for key in ("key-a", "key-b", "key-c"):
        refs += bench.create(client, "work", 15, group=key)
    jobs = bench.wait_done(refs, timeout=300)
    bench.patch({"groups": None})
    print(f"\n2. max active per key ({len(jobs)} jobs, 15 per key, each {work_s} s of work, maxConcurrency 10)")
    for key, limit in (("key-a", 2), ("key-b", 2), ("key-c", 1)):
        spans = [(parse_iso(j.started_at), parse_iso(j.completed_at)) for j in jobs if j.group == key and j.started_at and j.completed_at]
        events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
        running = most = 0
        for _, step in events:
            running += step
            most = max(most, running)
        print(f"   {key}: most active at once {most} (limit {limit}); {len(spans)} completed, attempts {sum(j.attempts for j in jobs if j.group == key)}")


def fairness(bench: Bench, burst: int) -> None:
    bench.patch({"maxConcurrency": 10})
    noisy, quiet = bench.user("noisy-tenant"), bench.user("quiet-tenant")
    quiet_refs: list[tuple[str, str]] = []
    feeding = threading.Event()

    def feed_quiet() -> None:
        while not feeding.is_set():
            quiet_refs.extend(bench.create(quiet, "work", 1))
            time.sleep(0.2)

    # The burst arrives at once (created with the consumers paused: on a loaded machine creating it
    # is slower than consuming it, which would make it a trickle), then the quiet tenant adds a job
    # every 0.2 s while the first half of the burst is worked off.
    assert bench.admin.post(f"/queues/{QUEUE}/pause").status_code == 200
    noisy_refs = bench.create(noisy, "work", burst, label="burst", with_ids=False)
    assert bench.admin.post(f"/queues/{QUEUE}/resume").status_code == 200
    feeder = threading.Thread(target=feed_quiet, daemon=True)
    feeder.start()
    bench.wait_done(noisy_refs[: burst // 2], timeout=1800)
    feeding.set()
    feeder.join()
    jobs = bench.wait_done(noisy_refs + quiet_refs, timeout=1800)

    def waits(owner: str) -> list[float]:
        return [(parse_iso(j.started_at) - parse_iso(j.created_at)) / 1000 for j in jobs if j.user_id == owner and j.started_at]

    q, b = waits("quiet-tenant"), waits("noisy-tenant")
    print(f"\n3. fairness: a burst of {burst} jobs from one tenant, {len(quiet_refs)} jobs from a quiet one meanwhile (maxConcurrency 10)")
    print(f"   quiet tenant's wait   p50 {_p(q, 0.5):6.2f} s   p95 {_p(q, 0.95):6.2f} s   max {max(q or [0]):6.2f} s")
    print(f"   burst tenant's wait   p50 {_p(b, 0.5):6.2f} s   p95 {_p(b, 0.95):6.2f} s   max {max(b or [0]):6.2f} s")


def timeouts(bench: Bench) -> None:
    bench.target_type("slow", "/slow/2")
    refs = bench.create(bench.user("timeouts"), "slow", 5, timeout=300, attempts=2, backoff={"type": "fixed", "delay": 500})
    jobs = bench.wait_done(refs, timeout=60, statuses=("failed",))
    outcomes = Counter(h.outcome for j in jobs for h in j.history)
    took = [(parse_iso(h.ended_at) - parse_iso(h.started_at)) for j in jobs for h in j.history if h.ended_at]
    print("\n4. timeouts: 5 jobs, options.timeout 300 ms, target answers after 2 s, 2 attempts")
    print(f"   attempt outcomes {dict(outcomes)}; attempt length p50 {statistics.median(took):.0f} ms, max {max(took)} ms; "
          f"statuses {dict(Counter(j.status.value for j in jobs))}")


def priorities(bench: Bench, backlog: int, work_s: float, criticals: int) -> None:
    concurrency, batch_size = 10, bench.stack_batch_size()
    mapping = bench.batch_clock.mapping
    bench.patch({"maxConcurrency": concurrency})
    tenant = bench.user("busy-tenant")
    assert bench.admin.post(f"/queues/{QUEUE}/pause").status_code == 200
    creating = time.monotonic()
    bench.create(tenant, "work", backlog, label="low backlog", priority="low", with_ids=False)
    created_in = time.monotonic() - creating
    assert bench.admin.post(f"/queues/{QUEUE}/resume").status_code == 200
    resumed, done_before = time.monotonic(), mapping.stats.deleted
    # Every consumer busy with low jobs, and each through a batch already (what "one low batch" is measured from).
    while len(bench.batch_clock.low_batches(resumed, time.monotonic())) < concurrency and time.monotonic() < resumed + 180:
        time.sleep(1)
    rows = []
    for _ in range(criticals):
        sent, in_flight = time.monotonic(), mapping.in_flight
        left = backlog - (mapping.stats.deleted - done_before)  # low jobs not yet worked off (each delete is one)
        [ref] = bench.create(tenant, "work", 1, priority="critical")
        [job] = bench.wait_done([ref], timeout=600, statuses=("active", "completed"))
        wait = (parse_iso(job.started_at or job.updated_at) - parse_iso(job.created_at)) / 1000
        # One low batch as it ran on this machine: the median of the full low batches that ended in the 60 s before.
        batches = bench.batch_clock.low_batches(sent - 60, sent + wait)
        measured = statistics.median(batches) if batches else float("nan")
        rows.append((wait, measured, len(batches), left, in_flight))
        time.sleep(1)
    # Measured: stop here rather than drain the backlog (the stack's shutdown drops what is left), once the
    # batches in flight have ended (the shutdown restores the environment they read).
    ran = time.monotonic() - resumed
    assert bench.admin.post(f"/queues/{QUEUE}/pause").status_code == 200
    mapping.wait_idle(timeout=120)
    print(f"\n5. priorities: {backlog} low jobs from one tenant saturating {concurrency} consumers (BatchSize {batch_size}), "
          f"then {criticals} critical jobs from the same tenant, one at a time")
    print(f"   backlog created in {created_in:.0f} s (consumers paused); the run stopped {ran:.0f} s after they resumed")
    print(f"   one low batch, nominal   {batch_size} x {work_s} s = {batch_size * work_s:.1f} s (the target's time alone)")
    for wait, measured, n, left, in_flight in rows:
        print(f"   critical job's wait      {wait:5.2f} s; one low batch as it ran {measured:5.2f} s (median of {n}), "
              f"so the wait is {wait / measured:.2f} batches; {left} low jobs left, {in_flight} batches in flight when sent")
    waits = [r[0] for r in rows]
    print(f"   critical waits           max {max(waits):.2f} s, median {statistics.median(waits):.2f} s; "
          f"worst {max(r[0] / r[1] for r in rows):.2f} batches")
    print(f"   most batches in flight at once {mapping.stats.max_in_flight} (maxConcurrency {concurrency})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=10)
    parser.add_argument("--window", type=int, default=2000, help="ms")
    parser.add_argument("--work", type=float, default=0.2, help="seconds each job's HTTP target takes")
    parser.add_argument("--backlog", type=int, default=5000, help="low jobs ahead of the critical one")
    parser.add_argument("--criticals", type=int, default=5, help="critical jobs sent (one at a time) into the backlog")
    parser.add_argument("--only", choices=["rate", "active", "fairness", "timeouts", "priorities"], action="append")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # Quiet: the service logs a line or two per job (JSON, and again through the root logger), which
    # at thousands of jobs costs the consumers CPU and buries the figures.
    from shared.observability import logger as service_logger

    service_logger.setLevel(logging.ERROR)
    for noisy in ("jobq", "jobq.local", "jobq.local.esm", "jobq.local.streams"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    only = set(args.only or ["rate", "active", "fairness", "timeouts", "priorities"])
    with TargetServer() as target, tempfile.TemporaryDirectory() as state, LocalStack(
        api_port=0, stack_name="jobq-bench", state_dir=state, parameters={"LogLevel": "ERROR", "UserJobsPerMinute": "0"}
    ) as stack:
        # A job that timed out hangs up on the target: its broken pipe is expected, not worth a traceback.
        target._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        bench = Bench(stack, target)
        bench.work_path = str(args.work)
        bench.target_type("work", f"/slow/{args.work}")
        print(f"jobq flow-control bench (local stack on moto, 127.0.0.1; target work {args.work} s per job)")
        if "timeouts" in only:
            timeouts(bench)
        if "rate" in only:
            rate_limit(bench, args.rate, args.window)
        if "active" in only:
            max_active(bench, args.work)
        if "fairness" in only:
            fairness(bench, args.burst)
        if "priorities" in only:
            priorities(bench, args.backlog, args.work, args.criticals)


if __name__ == "__main__":
    main()
