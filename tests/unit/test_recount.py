"""Queue counters stay right when the stream misbehaves: each record counts once however Lambda
redelivers it, and the HealthFunction recounts them from Queries (what a discarded batch lost)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pytest

from functions.consumer.handler import handler as consumer_handler
from functions.events.handler import handler as events_handler
from shared import stats, stats_models
from shared.adapters import clients, counters, policies, queues
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.clock import parse_iso
from shared.health import HealthSweep
from shared.jobs import Identity, JobService
from shared.models import Job
from shared.settings import get_settings
from shared.stats_models import Resolution
from shared.status import JobStatus
from tests.unit.conftest import STACK, FakeLambdaContext, Stack, sqs_event
from tests.unit.scheduling import put_job
from tests.unit.stream_feed import StreamFeed

QUEUE = "email-sending"
ALICE = Identity("alice")
EMAIL = {"to": "a@example.com", "subject": "Hi", "body": "Hello"}


@pytest.fixture
def sweep(stack: Stack) -> HealthSweep:
    policies.reset_cache()
    return HealthSweep(stack.store, queues.directory(), stack.settings)


def test_a_stream_batch_redelivered_with_different_contents_leaves_counters_and_buckets_equal_to_a_recount(
    stack: Stack, sweep: HealthSweep
) -> None:
    feed = StreamFeed(stack.table_name)
    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    ids = [jobs.create(JobCreate(queue=QUEUE, type="send-email", data=EMAIL), ALICE)[0].job_id for _ in range(4)]
    jobs.cancel(ids[0], ALICE)
    while messages := stack.receive(QUEUE):
        consumer_handler(sqs_event(stack, QUEUE, messages), FakeLambdaContext())
    event = feed.next_event()
    records = event["Records"]
    assert len(records) >= 10  # 4 inserts, a cancel, 3 claims, 3 completions

    def deliver(part: list[dict[str, Any]]) -> None:
        events_handler({**event, "Records": part}, FakeLambdaContext())

    half = len(records) // 2
    deliver(records[:half])  # the function timed out after counting the first half ...
    deliver(records)  # ... and the retry came as a bigger batch
    deliver(records[half - 2 :])  # a smaller one, overlapping
    deliver(list(reversed(records)))  # and reordered
    deliver(records[1::2])  # and a subset with gaps

    recount = sweep.check_health().queues[QUEUE].recount
    assert recount is not None and recount.drift == {}
    assert counters.read_raw_counts(QUEUE) == recount.counted
    assert (recount.counted["completed"], recount.counted["cancelled"], recount.counted["total"]) == (3, 1, 4)
    stored = [stack.store.get("alice", job_id) for job_id in ids]
    since = min(parse_iso(job.created_at) for job in stored) - 3_600_000
    for resolution in ("minute", "hour"):
        expected = buckets_recounted_from([job for job in stored if job is not None], resolution)
        got = {b.start_ms: b for b in counters.read_buckets(QUEUE, since, resolution)}
        assert {start: bucket_values(b) for start, b in got.items()} == expected


def buckets_recounted_from(jobs: list[Job], resolution: Resolution) -> dict[int, dict[str, int]]:
    """What each metric bucket must hold, from the jobs themselves: when they were created and finished."""
    expected: dict[int, Counter[str]] = defaultdict(Counter)
    for job in jobs:
        expected[stats.bucket_start(parse_iso(job.created_at), resolution)]["created"] += 1
        if job.completed_at:
            bucket = expected[stats.bucket_start(parse_iso(job.completed_at), resolution)]
            bucket.update({"completed": 1, "ptCount": 1, "ptSum": job.processing_time or 0})
        if job.cancelled_at:
            expected[stats.bucket_start(parse_iso(job.cancelled_at), resolution)]["cancelled"] += 1
    return {start: dict(values) for start, values in expected.items()}


def bucket_values(bucket: stats_models.Bucket) -> dict[str, int]:
    values = {
        "created": bucket.created,
        "completed": bucket.completed,
        "failed": bucket.failed,
        "retried": bucket.retried,
        "cancelled": bucket.cancelled,
        "stalled": bucket.stalled,
        "ptCount": bucket.pt_count,
        "ptSum": bucket.pt_sum,
    }
    assert sum(bucket.histogram) == bucket.pt_count
    return {name: value for name, value in values.items() if value}


def test_counters_lost_with_a_discarded_stream_batch_are_corrected_by_the_second_recount(stack: Stack, sweep: HealthSweep) -> None:
    feed = StreamFeed(stack.table_name)
    for _ in range(3):
        put_job(stack, JobStatus.WAITING)
    event = feed.next_event()
    assert len(event["Records"]) == 3
    # Lambda gave up on the batch after counting only its first record (the rest went to EventsFailedBatches).
    events_handler({**event, "Records": event["Records"][:1]}, FakeLambdaContext())
    assert counters.read_counts(QUEUE)["waiting"] == 1

    first = sweep.check_health().queues[QUEUE].recount
    assert first is not None and first.drift == {"waiting": 2, "total": 2, "normal.waiting": 2} and first.corrected == {}
    second = sweep.check_health().queues[QUEUE].recount

    assert second is not None and second.corrected == {"waiting": 2, "total": 2, "normal.waiting": 2}
    counts = counters.read_counts(QUEUE)
    assert (counts["waiting"], counts["total"]) == (3, 3)
    assert sweep.check_health().queues[QUEUE].recount is None  # next one at the interval


def test_counts_per_priority_that_drifted_are_rewritten_by_the_recount(stack: Stack, sweep: HealthSweep) -> None:
    feed = StreamFeed(stack.table_name)
    for priority in (10, -5, -5, 0):
        put_job(stack, JobStatus.WAITING, priority=priority)
    feed.deliver()
    assert counters.read_stats(QUEUE).by_priority["critical"]["waiting"] == 1
    # What a batch counted against the wrong bands would leave: the status counts right, the bands not.
    clients.client("dynamodb").update_item(
        TableName=stack.table_name,
        Key={"pk": {"S": f"QUEUE#{QUEUE}"}, "sk": {"S": stats.STATS_SK}},
        UpdateExpression="ADD #c :three, #l :minus_one",
        ExpressionAttributeNames={"#c": "critical.waiting", "#l": "low.waiting"},
        ExpressionAttributeValues={":three": {"N": "3"}, ":minus_one": {"N": "-1"}},
    )

    first = sweep.check_health().queues[QUEUE].recount
    assert first is not None and first.drift == {"critical.waiting": -3, "low.waiting": 1} and first.corrected == {}
    second = sweep.check_health().queues[QUEUE].recount

    assert second is not None and second.corrected == {"critical.waiting": -3, "low.waiting": 1}
    by_priority = counters.read_stats(QUEUE).by_priority
    assert {band: counts["waiting"] for band, counts in by_priority.items()} == {"critical": 1, "high": 0, "normal": 1, "low": 2, "bulk": 0}
    assert counters.read_counts(QUEUE)["waiting"] == 4


def test_a_difference_the_stream_has_not_caught_up_with_is_not_corrected(stack: Stack, sweep: HealthSweep) -> None:
    feed = StreamFeed(stack.table_name)
    put_job(stack, JobStatus.WAITING)
    feed.deliver()
    put_job(stack, JobStatus.WAITING)  # its stream record is not applied before the first recount

    first = sweep.check_health().queues["email-sending"].recount
    assert first is not None and first.drift == {"waiting": 1, "total": 1, "normal.waiting": 1}
    feed.deliver()
    second = sweep.check_health().queues["email-sending"].recount

    assert second is not None and second.drift == {} and second.corrected == {}
    assert counters.read_counts("email-sending")["waiting"] == 2


def test_a_discarded_stream_batch_raises_every_queue_health_to_error(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    sqs = clients.client("sqs")
    url = sqs.get_queue_url(QueueName=f"{STACK}-events-failed-batches")["QueueUrl"]
    # What Lambda sends the event source mapping's on-failure destination for a batch it gave up on.
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"requestContext": {"condition": "RetryAttemptsExhausted"}, "DDBStreamBatchInfo": {"batchSize": 3}}))
    monkeypatch.setenv("JOBQ_EVENTS_FAILED_BATCHES_URL", url)
    get_settings.cache_clear()
    policies.reset_cache()
    sweep = HealthSweep(stack.store, queues.directory(), get_settings())

    run = sweep.check_health()

    assert run.discarded_stream_batches == 1 and run.status == "error"
    for health in run.queues.values():
        assert health.status == "error" and any("stream batch was discarded" in r for r in health.reasons)
        assert health.recount is not None  # recounted at once, not at the next interval
