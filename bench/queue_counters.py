"""Counter lag after a burst of jobs, and the DynamoDB writes per job the EventsFunction adds.

    .venv/bin/python -m bench.queue_counters            # 1,000 jobs on email-sending
    .venv/bin/python -m bench.queue_counters --jobs 200

Runs the local stack in this process (moto, the consumers, the DynamoDB stream emulation with
the template's BatchSize and batching window) and the API over HTTP:

1. pause the queue, create the jobs with POST /jobs/bulk (100 a call) and measure how long
   after the last insert GET /queues/{name} shows them all waiting (creation lag);
2. resume, let the consumers run them (send-email on moto's SES), sample the gap between the
   jobs' real statuses (the jobs repository's recount, the ground truth) and the counters,
   and measure how long after the last job completed the counters show them all (lag);
3. count what the EventsFunction wrote: transactions, items (each costs 2 WCU in a
   transaction), per job and per stream record.

The local figures are bounded by moto (a few jobs per second end to end) and by the
template's MaximumBatchingWindowInSeconds (1 s), which is most of the lag.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import threading
import time
from typing import Any

import boto3
import httpx

from infra.local.runtime import Handler, import_handler
from infra.local.stack import LocalStack

EVENTS_HANDLER = "functions.events.handler.handler"


class Meter:
    """Wraps the EventsFunction's handler and adds up what each batch wrote."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.invocations = 0
        self.records = 0
        self.job_records = 0
        self.transactions = 0
        self.items = 0
        self.duplicates = 0
        self.batch_sizes: list[int] = []

    def resolve(self, handler: str) -> Handler:
        real = import_handler(handler)
        if handler != EVENTS_HANDLER:
            return real
        from functions.events.handler import process

        def metered(event: dict[str, Any], context: Any) -> None:
            outcome = process(event)
            with self.lock:
                self.invocations += 1
                self.records += outcome.records
                self.job_records += outcome.job_records
                self.transactions += outcome.transactions
                self.items += outcome.write_actions
                self.duplicates += outcome.duplicates
                self.batch_sizes.append(outcome.records)

        return metered

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"invocations": self.invocations, "records": self.records, "transactions": self.transactions, "items": self.items}


def count_status(ddb: Any, table: str, queue: str, status: str) -> int:
    """The ground truth from the jobs repository (its indexes and their shards are its business)."""
    from shared.adapters.job_repository import JobStore
    from shared.status import JobStatus

    return JobStore(table).count_by_queue(queue, JobStatus(status))


def wait(check: Any, timeout: float, interval: float = 0.05) -> float:
    """Seconds until ``check()`` holds (raises after ``timeout``)."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise TimeoutError("the counters did not catch up")
        time.sleep(interval)
    return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--queue", default="email-sending")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    meter = Meter()
    queue, n = args.queue, args.jobs
    with tempfile.TemporaryDirectory() as state, LocalStack(
        api_port=0, stack_name="jobq-bench", state_dir=state, handler_resolver=meter.resolve, parameters={"LogLevel": "ERROR"}
    ) as stack:
        admin = httpx.Client(base_url=str(stack.api_url), headers={"Authorization": f"Bearer {stack.mint_token('root', admin=True)}"}, timeout=60)
        user = httpx.Client(base_url=str(stack.api_url), headers={"Authorization": f"Bearer {stack.mint_token('bench')}"}, timeout=60)
        ddb = boto3.client("dynamodb")
        table = stack.provisioned.resources["JobsTable"].ref  # type: ignore[union-attr]

        def live() -> dict[str, int]:
            return dict(admin.get(f"/queues/{queue}").json()["data"]["liveStats"])

        # 1. the creation burst, consumers paused
        assert admin.post(f"/queues/{queue}/pause").json()["data"]["paused"]
        job = {"queue": queue, "type": "send-email", "data": {"to": "bench@example.com", "subject": "bench", "body": "x"}}
        began = time.monotonic()
        for start in range(0, n, 100):
            response = user.post("/jobs/bulk", json={"jobs": [job] * min(100, n - start)})
            assert response.status_code in (200, 201, 207), response.text
            assert response.json()["data"]["created"] == min(100, n - start), response.text
        insert_seconds = time.monotonic() - began
        creation_lag = wait(lambda: live()["waiting"] >= n, 60)
        after_create = meter.snapshot()

        # 2. processing
        assert admin.post(f"/queues/{queue}/resume").json()["data"]["isActive"]
        began = time.monotonic()
        gaps: list[int] = []
        while (done := count_status(ddb, table, queue, "completed")) < n:
            gaps.append(done - live()["completed"])
            time.sleep(0.5)
            if time.monotonic() - began > 1800:
                raise TimeoutError("the jobs did not finish")
        processing_seconds = time.monotonic() - began
        completion_lag = wait(lambda: live()["completed"] >= n, 60)
        final = live()
        for stream in stack.streams:
            stream.wait_caught_up(10)
        total = meter.snapshot()

    per_job_items = total["items"] / n
    print(f"\njobq counters bench: {n} jobs on {queue} (local stack, moto)")
    print(f"  insert burst (POST /jobs/bulk x{-(-n // 100)})      {insert_seconds:6.2f} s")
    print(f"  creation lag (last insert -> waiting={n})     {creation_lag:6.2f} s")
    print(f"  processing ({n} jobs, consumers on moto)      {processing_seconds:6.1f} s  ({n / processing_seconds:.1f} jobs/s)")
    print(f"  completion lag (last completed -> counters)  {completion_lag:6.2f} s")
    if gaps:
        print(f"  jobs behind while processing (sampled)       median {statistics.median(gaps):.0f}, max {max(gaps)}")
    print(f"  final liveStats                               {final}")
    print(f"  EventsFunction: {total['invocations']} invocations, {total['records']} stream records "
          f"({total['records'] / n:.2f} per job), median batch {statistics.median(meter.batch_sizes):.0f}")
    print(f"  writes: {total['transactions']} transactions, {total['items']} items "
          f"= {per_job_items:.3f} items per job ({2 * per_job_items:.3f} WCU, transactional writes cost 2)")
    print(f"    creation phase: {after_create['transactions']} transactions, {after_create['items']} items "
          f"({after_create['items'] / n:.3f} per job)")
    print("  reading a queue's counts: one GetItem (STATS), whatever the table holds")


if __name__ == "__main__":
    main()
