"""The outbox (EnqueueFromStream): the EventsFunction sends new jobs' messages with SendMessageBatch.

A SendMessageBatch can succeed for some entries and fail for others (``Failed`` in its answer).
These tests make SQS refuse chosen entries (a botocore hook drops them from the real request and
reports them failed, as SQS does) and check that no job is left without a message and none gets
two from one batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from functions.events.handler import handler as events_handler
from shared.adapters import clients, counters, queues
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.errors import Unavailable
from shared.jobs import Identity, JobService
from tests.unit.conftest import FakeLambdaContext, Stack
from tests.unit.stream_feed import StreamFeed


class Refusals:
    """SendMessageBatch calls seen, and how many entries were refused."""

    def __init__(self) -> None:
        self.calls: list[int] = []  # entries per call
        self.refused = 0


@contextmanager
def sqs_refusing(entry_ids: set[str], *, calls: int | None = None, sender_fault: bool = False) -> Iterator[Refusals]:
    """SendMessageBatch refuses the entries of these ids (jobq numbers a batch's entries from "0") in its first ``calls`` calls."""
    seen = Refusals()
    dropped: list[list[str]] = []
    events = clients.client("sqs").meta.events

    def drop(params: dict[str, Any], **kwargs: Any) -> None:
        seen.calls.append(len(params["Entries"]))
        if calls is not None and len(seen.calls) > calls:
            dropped.append([])
            return
        keep = [e for e in params["Entries"] if e["Id"] not in entry_ids]
        dropped.append([e["Id"] for e in params["Entries"] if e not in keep])
        params["Entries"] = keep or params["Entries"]  # every entry refused: answered below, nothing sent

    def answer(params: dict[str, Any], **kwargs: Any) -> tuple[Any, dict[str, Any]] | None:
        # botocore uses a before-call handler's answer instead of sending the request
        if dropped and len(dropped[-1]) == len(json.loads(params["body"]).get("Entries", [])):
            return SimpleNamespace(status_code=200, headers={}), {"Successful": [], "ResponseMetadata": {"HTTPStatusCode": 200}}
        return None

    def report(parsed: dict[str, Any], **kwargs: Any) -> None:
        ids = dropped.pop(0) if dropped else []
        seen.refused += len(ids)
        parsed.setdefault("Failed", []).extend(
            {"Id": i, "SenderFault": sender_fault, "Code": "InvalidParameterValue" if sender_fault else "InternalError", "Message": "refused"}
            for i in ids
        )

    events.register("before-parameter-build.sqs.SendMessageBatch", drop)
    events.register("before-call.sqs.SendMessageBatch", answer)
    events.register("after-call.sqs.SendMessageBatch", report)
    try:
        yield seen
    finally:
        events.unregister("before-parameter-build.sqs.SendMessageBatch", drop)
        events.unregister("before-call.sqs.SendMessageBatch", answer)
        events.unregister("after-call.sqs.SendMessageBatch", report)


def create_boxed(stack: Stack, count: int) -> list[str]:
    service = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings.replace(enqueue_from_stream=True))
    ids = []
    for i in range(count):
        job, _ = service.create(JobCreate(queue="email-sending", type="send-email", data={"to": f"u{i}@example.com"}, options={"jobId": f"boxed-{i}"}), Identity("ann"))
        ids.append(job.job_id)
    return ids


def enqueued(stack: Stack) -> list[str]:
    """The job ids of every message on the queue (one per message)."""
    ids: list[str] = []
    while messages := stack.receive("email-sending"):
        ids += [json.loads(m["Body"])["jobId"] for m in messages]
    return ids


def test_a_stream_batch_whose_send_partly_fails_still_enqueues_every_new_job_once(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    ids = create_boxed(stack, 12)
    assert stack.receive("email-sending") == []  # the API wrote the items only
    event = feed.next_event()

    with sqs_refusing({"1", "4"}, calls=1) as refusals:  # the first request of the batch loses two entries
        events_handler(event, FakeLambdaContext())

    assert refusals.refused == 2
    assert refusals.calls[:3] == [10, 2, 2]  # the batch of 10 less two, then the two alone, then the other 2 jobs
    assert sorted(enqueued(stack)) == sorted(ids)  # every job once: the 8 sent are not sent again
    counts = counters.read_counts("email-sending")
    assert (counts["waiting"], counts["total"]) == (12, 12)


def test_a_send_that_keeps_failing_fails_the_stream_batch_and_its_retry_loses_no_job(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    ids = create_boxed(stack, 3)
    event = feed.next_event()

    with sqs_refusing({"2"}) as refusals, pytest.raises(Unavailable):
        events_handler(event, FakeLambdaContext())  # Lambda retries the batch (then EventsFailedBatches)

    assert refusals.calls == [3, 1, 1, 1]  # sent again alone three times before giving up
    assert counters.read_counts("email-sending")["total"] == 0  # the failed batch counted nothing
    events_handler(event, FakeLambdaContext())  # Lambda's retry of the same batch, SQS well again

    sent = enqueued(stack)
    assert set(sent) == set(ids)  # no job lost (the two sent first are sent again: the claim runs a job once)
    assert (counters.read_counts("email-sending")["waiting"], counters.read_counts("email-sending")["total"]) == (3, 3)


def test_an_entry_sqs_rejects_as_the_senders_fault_is_not_sent_again_in_the_batch(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    create_boxed(stack, 2)
    event = feed.next_event()

    with sqs_refusing({"0"}, sender_fault=True) as refusals, pytest.raises(Unavailable):
        events_handler(event, FakeLambdaContext())

    assert refusals.calls == [2]  # the same request would be refused again: the batch fails at once
