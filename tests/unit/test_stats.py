"""Queue counters and metric buckets: what the EventsFunction keeps from the table's stream.

The jobs go through the real API service, consumer and store (moto); the stream is read
with the DynamoDB Streams API and fed to the real handler, filtered as template.yaml says.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.consumer.handler import handler as consumer
from functions.events.handler import process
from shared import stats, stats_models
from shared.adapters import clients, counters, queues
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.clock import iso, now_ms
from shared.jobs import Identity, JobService
from shared.models import HttpTarget
from shared.status import JobStatus
from tests.target_server import TargetServer
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event
from tests.unit.stream_feed import StreamFeed, template_stream_event
from tests.unit.test_queues import call as call_api

ADMIN = Identity("root", is_admin=True)
ALICE = Identity("alice")
QUEUE = "email-sending"


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


@pytest.fixture
def feed(stack: Stack) -> StreamFeed:
    return StreamFeed(stack.table_name)


def service(stack: Stack) -> JobService:
    return JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)


def create(jobs: JobService, job_type: str, **options: Any) -> str:
    job, _ = jobs.create(JobCreate(queue=QUEUE, type=job_type, data={"n": 1}, options=options), ALICE)
    return job.job_id


def run_consumer(stack: Stack) -> None:
    while messages := stack.receive(QUEUE):
        consumer(sqs_event(stack, QUEUE, messages), FakeLambdaContext())


def listed_counts(stack: Stack) -> dict[str, int]:
    """Counts the slow way: a Query per status on the byQueueStatus index."""
    counts = {}
    for status in JobStatus:
        jobs, _ = stack.store.page_by_queue(QUEUE, status, limit=100)
        counts[status.value] = len(jobs)
    counts["total"] = sum(counts.values())
    return counts


def job_record(job_id: str, event: str, old: dict[str, str] | None, new: dict[str, str] | None, seq: int) -> dict[str, Any]:
    """A stream record of a job item as Lambda passes it (only the attributes the counters read)."""

    def image(fields: dict[str, str]) -> dict[str, Any]:
        return {
            "pk": {"S": f"JOB#{job_id}"},
            "sk": {"S": "JOB"},
            "queue": {"S": QUEUE},
            **{k: ({"N": v} if k == "processingTime" else {"S": v}) for k, v in fields.items()},
        }

    change: dict[str, Any] = {
        "Keys": {"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}},
        "SequenceNumber": str(seq),
        "ApproximateCreationDateTime": now_ms() // 1000,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if old is not None:
        change["OldImage"] = image(old)
    if new is not None:
        change["NewImage"] = image(new)
    return {"eventID": f"event-{job_id}-{seq}", "eventName": event, "eventSource": "aws:dynamodb", "dynamodb": change}


# ---- counts ---------------------------------------------------------------------------------------


def test_counts_match_the_jobs_after_a_mixed_run(stack: Stack, target: TargetServer, feed: StreamFeed) -> None:
    jobs = service(stack)
    jobs.targets.put_http(QUEUE, "echo", HttpTarget(url=f"{target.url}/ok", timeout_seconds=2), ADMIN)
    jobs.targets.put_http(QUEUE, "broken", HttpTarget(url=f"{target.url}/always/500", timeout_seconds=2), ADMIN)
    for _ in range(3):
        create(jobs, "echo")
    for _ in range(2):
        create(jobs, "broken", attempts=1)
    jobs.cancel(create(jobs, "echo", delay=60_000), ALICE)
    create(jobs, "echo", delay=60_000)
    feed.deliver()
    assert counters.read_counts(QUEUE) == {**dict.fromkeys(stats.COUNT_NAMES, 0), "waiting": 5, "delayed": 1, "cancelled": 1, "total": 7}

    run_consumer(stack)
    feed.deliver()

    counts = counters.read_counts(QUEUE)
    assert counts == {**dict.fromkeys(stats.COUNT_NAMES, 0), "completed": 3, "failed": 2, "cancelled": 1, "delayed": 1, "total": 7}
    assert counts == listed_counts(stack)
    assert counters.read_stats(QUEUE).last_processed_at is not None


def test_the_queue_counts_its_unfinished_jobs_per_priority_in_the_same_write(stack: Stack, target: TargetServer, feed: StreamFeed) -> None:
    jobs = service(stack)
    jobs.targets.put_http(QUEUE, "echo", HttpTarget(url=f"{target.url}/ok", timeout_seconds=2), ADMIN)
    for priority in ("critical", "low", "low", 3):
        create(jobs, "echo", priority=priority)
    create(jobs, "echo", priority="high", delay=60_000)
    event = feed.next_event()
    outcome = process(event)

    # STATS (the counts per priority in its same ADD), the minute and hour buckets, the batch's marker: no write of their own
    assert (outcome.transactions, outcome.write_actions) == (1, 4)
    by_priority = counters.read_stats(QUEUE).by_priority
    assert {band: sum(c.values()) for band, c in by_priority.items() if sum(c.values())} == {"critical": 1, "high": 1, "low": 2, "normal": 1}
    assert by_priority["high"] == {"waiting": 0, "delayed": 1, "active": 0}

    run_consumer(stack)
    feed.deliver()
    after = counters.read_stats(QUEUE).by_priority
    assert {band: c for band, c in after.items() if any(c.values())} == {"high": {"waiting": 0, "delayed": 1, "active": 0}}
    _, queue = call_api("GET", f"/queues/{QUEUE}")
    assert queue["data"]["byPriority"]["high"] == {"waiting": 0, "delayed": 1, "active": 0}
    assert queue["data"]["byPriority"]["critical"] == {"waiting": 0, "delayed": 0, "active": 0}


def test_a_redelivered_batch_changes_nothing(stack: Stack, feed: StreamFeed) -> None:
    jobs = service(stack)
    create(jobs, "send-email")
    create(jobs, "send-email")
    event = feed.next_event()

    first = process(event)
    again = process(event)

    assert (first.transactions, first.duplicates) == (1, 0)
    assert (again.transactions, again.duplicates, again.write_actions) == (0, 2, 0)
    assert counters.read_counts(QUEUE)["waiting"] == 2


def test_a_batch_too_big_for_one_transaction_is_split_and_each_part_counts_once(stack: Stack) -> None:
    start = stats.bucket_start(now_ms(), "minute") - 109 * 60_000
    records = [
        job_record(f"j{i}", "INSERT", None, {"status": "waiting", "createdAt": iso(start + i * 60_000)}, 100 + i) for i in range(110)
    ]

    first = counters.apply_stream_records(records)
    again = counters.apply_stream_records(records)

    # 1 STATS update + 110 minute buckets + 2 or 3 hour buckets: two transactions of at most 100 items.
    assert first.transactions == 2 and first.duplicates == 0
    assert again.transactions == 0 and again.duplicates == 110
    assert counters.read_counts(QUEUE)["waiting"] == 110
    minutes = counters.read_buckets(QUEUE, start, "minute")
    assert len(minutes) == 110 and all(b.created == 1 for b in minutes)
    assert sum(b.created for b in counters.read_buckets(QUEUE, start, "hour")) == 110


def test_removing_a_job_takes_it_out_of_the_counts(stack: Stack, feed: StreamFeed) -> None:
    jobs = service(stack)
    job_id = create(jobs, "send-email")
    feed.deliver()
    stack.store.delete("alice", job_id)

    feed.deliver()

    assert counters.read_counts(QUEUE)["waiting"] == 0 and counters.read_counts(QUEUE)["total"] == 0


def test_the_counters_own_writes_and_other_items_never_count(stack: Stack, feed: StreamFeed) -> None:
    jobs = service(stack)
    create(jobs, "send-email", jobId="mine")
    feed.deliver()
    # The stream now holds the counters' own writes (STATS, buckets, the batch marker) and a target.
    jobs.targets.put_http(QUEUE, "echo", HttpTarget(url="https://example.com/x"), ADMIN)
    raw = feed.read()
    assert raw and all(r["dynamodb"]["Keys"]["sk"]["S"] != "JOB" for r in raw)

    outcome = counters.apply_stream_records(raw)  # unfiltered, as if the filter were missing

    assert (outcome.job_records, outcome.transactions) == (0, 0)
    assert counters.read_counts(QUEUE)["waiting"] == 1


def test_a_progress_report_changes_no_count() -> None:
    active = {"status": "active", "updatedAt": iso(now_ms())}
    assert stats.aggregate([job_record("j", "MODIFY", active, {**active, "progress": "50"}, 1)]) == {}


# ---- metric buckets ---------------------------------------------------------------------------------


def test_finished_jobs_land_in_the_buckets_of_when_they_finished(stack: Stack) -> None:
    minute = stats.bucket_start(now_ms(), "minute") - 5 * 60_000
    active = {"status": "active"}
    records = [
        job_record(
            f"c{i}", "MODIFY", active, {"status": "completed", "completedAt": iso(minute + 1000 * i), "processingTime": str(ms)}, i
        )
        for i, ms in enumerate([100, 200, 300, 400, 5000])
    ]
    records.append(job_record("f1", "MODIFY", active, {"status": "failed", "failedAt": iso(minute + 120_000)}, 10))
    records.append(job_record("r1", "MODIFY", active, {"status": "delayed", "updatedAt": iso(minute + 1000)}, 11))
    records.append(job_record("x1", "MODIFY", {"status": "waiting"}, {"status": "cancelled", "cancelledAt": iso(minute)}, 12))

    counters.apply_stream_records(records)

    buckets = {b.start_ms: b for b in counters.read_buckets(QUEUE, minute, "minute")}
    first = buckets[minute]
    assert (first.completed, first.failed, first.retried, first.cancelled) == (5, 0, 1, 1)
    assert first.average_processing_ms == 1200
    assert 4000 <= (first.p95_processing_ms or 0) <= 6000
    assert buckets[minute + 120_000].failed == 1
    hours = counters.read_buckets(QUEUE, minute, "hour")
    assert (sum(b.completed for b in hours), sum(b.failed for b in hours)) == (5, 1)
    assert stats_models.summarize(counters.read_buckets(QUEUE, minute, "minute")).failure_rate == pytest.approx(1 / 6)
    assert stats_models.summarize(counters.read_buckets("video-processing", minute, "minute")).failure_rate == 0.0
    assert counters.read_stats(QUEUE).last_processed_at == iso(minute + 120_000)


def test_buckets_expire_with_the_table_ttl(stack: Stack) -> None:
    at = stats.bucket_start(now_ms(), "minute")
    counters.apply_stream_records([job_record("j", "INSERT", None, {"status": "waiting", "createdAt": iso(at)}, 1)])

    minute = queue_item(stack, stats.bucket_sk("minute", at))
    hour_start = stats.bucket_start(at, "hour")
    hour = queue_item(stack, stats.bucket_sk("hour", hour_start))

    assert int(minute["expiresAt"]["N"]) == at // 1000 + stack.settings.minute_bucket_retention_hours * 3600
    assert int(hour["expiresAt"]["N"]) == hour_start // 1000 + stack.settings.hour_bucket_retention_days * 86400


def queue_item(stack: Stack, sk: str) -> dict[str, Any]:
    out = clients.client("dynamodb").get_item(TableName=stack.table_name, Key={"pk": {"S": f"QUEUE#{QUEUE}"}, "sk": {"S": sk}})
    return dict(out["Item"])


def test_percentiles_come_from_the_histogram() -> None:
    histogram = [0] * stats_models.BINS
    assert stats_models.percentile(histogram, 0.95) is None
    for ms in [90] * 95 + [3000] * 5:
        histogram[stats.histogram_bin(ms)] += 1
    assert 60 <= (stats_models.percentile(histogram, 0.5) or 0) <= 100
    assert 60 <= (stats_models.percentile(histogram, 0.95) or 0) <= 100
    assert 2500 <= (stats_models.percentile(histogram, 0.99) or 0) <= 4000


# ---- the wiring exactly-once relies on -------------------------------------------------------------


def test_the_events_function_gets_job_items_in_whole_batches_one_shard_batch_at_a_time() -> None:
    props = template_stream_event()

    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["BisectBatchOnFunctionError"] is False
    assert props["ParallelizationFactor"] == 1
    assert "ReportBatchItemFailures" not in (props.get("FunctionResponseTypes") or [])
    assert [json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"]] == [{"dynamodb": {"Keys": {"sk": {"S": ["JOB"]}}}}]
    assert "OnFailure" in props["DestinationConfig"]


def test_two_invocations_racing_on_one_shard_count_each_record_once(stack: Stack) -> None:
    records = [job_record(f"j{i}", "INSERT", None, {"status": "waiting", "createdAt": iso(now_ms())}, 10 + i) for i in range(3)]
    ddb = clients.client("dynamodb")
    raced: list[stats.BatchOutcome] = []
    started: list[bool] = []

    def duplicate_invocation_first(**_: Any) -> None:
        # Lambda's rare duplicate invocation of the same batch writes just before this one does.
        if not started:
            started.append(True)
            raced.append(counters.apply_stream_records(records[:2], shard="shard-1"))

    event = f"before-send.{ddb.meta.service_model.service_id.hyphenize()}.TransactWriteItems"
    ddb.meta.events.register_first(event, duplicate_invocation_first)
    try:
        outcome = counters.apply_stream_records(records, shard="shard-1")
    finally:
        ddb.meta.events.unregister(event, duplicate_invocation_first)

    assert raced[0].transactions == 1  # the other invocation counted the first two ...
    assert outcome.transactions == 1  # ... and this one, its mark read again, only the third
    assert counters.read_counts(QUEUE)["waiting"] == 3
    assert sum(b.created for b in counters.read_buckets(QUEUE, now_ms() - 120_000, "minute")) == 3


def test_each_shard_keeps_its_own_high_water_mark(stack: Stack) -> None:
    first = [job_record("a", "INSERT", None, {"status": "waiting", "createdAt": iso(now_ms())}, 500)]
    second = [job_record("b", "INSERT", None, {"status": "waiting", "createdAt": iso(now_ms())}, 100)]  # lower number, other shard

    counters.apply_stream_records(first, shard="shard-1")
    counters.apply_stream_records(second, shard="shard-2")
    counters.apply_stream_records(second, shard="shard-2")

    assert counters.read_counts(QUEUE)["waiting"] == 2
