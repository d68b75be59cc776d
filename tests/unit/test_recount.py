"""Queue counters stay right when the stream misbehaves: the HealthFunction recounts them from Queries."""

from __future__ import annotations

import json

import pytest

from functions.events.handler import handler as events_handler
from shared.adapters import clients, counters, policies, queues
from shared.maintenance import Maintenance
from shared.settings import get_settings
from shared.status import JobStatus
from tests.unit.conftest import STACK, FakeLambdaContext, Stack
from tests.unit.scheduling import put_job
from tests.unit.stream_feed import StreamFeed


@pytest.fixture
def maintenance(stack: Stack) -> Maintenance:
    policies.reset_cache()
    return Maintenance(stack.store, queues.directory(), stack.settings)


def test_counters_are_right_after_a_stream_batch_is_redelivered_with_different_contents(stack: Stack, maintenance: Maintenance) -> None:
    feed = StreamFeed(stack.table_name)
    for _ in range(3):
        put_job(stack, JobStatus.WAITING)
    event = feed.next_event()
    assert len(event["Records"]) == 3
    # Lambda delivered the first two records, the function timed out after writing them, and
    # the retry came as a batch of all three: its digest differs, so the two are counted again.
    events_handler({"Records": event["Records"][:2]}, FakeLambdaContext())
    events_handler(event, FakeLambdaContext())
    assert counters.read_counts("email-sending")["waiting"] == 5

    first = maintenance.check_health().queues["email-sending"].recount
    assert first is not None and first.drift == {"waiting": -2, "total": -2} and first.corrected == {}
    second = maintenance.check_health().queues["email-sending"].recount

    assert second is not None and second.corrected == {"waiting": -2, "total": -2}
    counts = counters.read_counts("email-sending")
    assert (counts["waiting"], counts["total"]) == (3, 3)
    assert maintenance.check_health().queues["email-sending"].recount is None  # next one at the interval


def test_a_difference_the_stream_has_not_caught_up_with_is_not_corrected(stack: Stack, maintenance: Maintenance) -> None:
    feed = StreamFeed(stack.table_name)
    put_job(stack, JobStatus.WAITING)
    feed.deliver()
    put_job(stack, JobStatus.WAITING)  # its stream record is not applied before the first recount

    first = maintenance.check_health().queues["email-sending"].recount
    assert first is not None and first.drift == {"waiting": 1, "total": 1}
    feed.deliver()
    second = maintenance.check_health().queues["email-sending"].recount

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
    maintenance = Maintenance(stack.store, queues.directory(), get_settings())

    run = maintenance.check_health()

    assert run.discarded_stream_batches == 1 and run.status == "error"
    for health in run.queues.values():
        assert health.status == "error" and any("stream batch was discarded" in r for r in health.reasons)
        assert health.recount is not None  # recounted at once, not at the next interval
