"""The consumer's rules, one by one: the real handler, store and SQS (moto), real HTTP targets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions.consumer.handler import handler
from shared.adapters.job_repository import _job_key
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.clock import now_ms, parse_iso
from shared.jobs import Identity, JobService
from shared.models import HttpTarget
from shared.status import JobStatus
from shared.worker import Delivery, Outcome, RetryLater
from tests.target_server import TargetServer
from tests.unit.conftest import FakeLambdaContext, Stack, arrange, sqs_event

ADMIN = Identity("root", is_admin=True)
ALICE = Identity("alice")


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def service(stack: Stack) -> JobService:
    from shared.adapters import queues

    return JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)


def add_job(stack: Stack, target: TargetServer, path: str, *, job_type: str = "call", options: dict[str, Any] | None = None) -> str:
    jobs = service(stack)
    jobs.targets.put_http("email-sending", job_type, HttpTarget(url=f"{target.url}{path}", timeout_seconds=1), ADMIN)
    job, _ = jobs.create(JobCreate(queue="email-sending", type=job_type, data={"n": 1}, options=options or {}), ALICE)
    return job.job_id


def deliver(stack: Stack, queue: str = "email-sending", *, remaining_ms: int = 30_000) -> dict[str, Any]:
    messages = stack.receive(queue)
    assert messages, "expected a message on the queue"
    return handler(sqs_event(stack, queue, messages), FakeLambdaContext(remaining_ms))


def test_a_job_reaches_completed_with_the_target_response_as_result(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/ok")

    response = deliver(stack)

    assert response == {"batchItemFailures": []}
    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"echo": {"n": 1}, "attempt": 1}
    assert job.attempts == 1 and job.processing_time is not None and job.completed_at
    assert [h.outcome for h in job.history] == ["completed"]
    assert job.lease_token is None
    assert stack.receive("email-sending") == []  # acknowledged


def test_a_failed_attempt_is_retried_after_its_backoff_and_the_other_records_are_unaffected(
    stack: Stack, target: TargetServer
) -> None:
    failing = add_job(stack, target, "/fail-times/1", options={"backoff": {"type": "fixed", "delay": 2000}})
    fine = add_job(stack, target, "/ok", job_type="fine")
    messages = stack.receive("email-sending")
    assert len(messages) == 2

    response = handler(sqs_event(stack, "email-sending", messages), FakeLambdaContext())

    failed_ids = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    failing_message = next(m for m in messages if failing in m["Body"])
    assert failed_ids == [failing_message["MessageId"]]
    assert stack.store.require("alice", fine).status is JobStatus.COMPLETED
    job = stack.store.require("alice", failing)
    assert job.status is JobStatus.DELAYED
    assert job.error and "500" in job.error and job.run_at
    # the message stays invisible for the backoff, then comes back and the job completes
    assert stack.receive("email-sending") == []
    deadline = time.monotonic() + 10
    while not (back := stack.receive("email-sending")):
        assert time.monotonic() < deadline, "the message never came back after its backoff"
        time.sleep(0.2)
    handler(sqs_event(stack, "email-sending", back), FakeLambdaContext())
    job = stack.store.require("alice", failing)
    assert job.status is JobStatus.COMPLETED and job.attempts == 2
    assert [h.outcome for h in job.history] == ["retrying", "completed"]


def test_after_max_attempts_the_job_is_failed_and_its_message_is_in_the_dlq(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/always/503", options={"attempts": 2, "backoff": {"type": "fixed", "delay": 0}})

    first = deliver(stack)
    assert len(first["batchItemFailures"]) == 1
    second = deliver(stack)

    assert second == {"batchItemFailures": []}
    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 2
    assert "503" in (job.error or "")
    dead = stack.receive("email-sending", dlq=True)
    assert len(dead) == 1 and job_id in dead[0]["Body"]
    assert "503" in dead[0]["MessageAttributes"]["jobqFailureReason"]["StringValue"]
    assert stack.receive("email-sending") == []


def test_a_4xx_from_the_target_fails_the_job_at_once(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/always/422", options={"attempts": 5})

    assert deliver(stack) == {"batchItemFailures": []}

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1
    assert len(stack.receive("email-sending", dlq=True)) == 1


def test_duplicate_delivery_of_a_finished_job_is_acknowledged_and_does_nothing(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/ok")
    message = stack.receive("email-sending")[0]
    event = sqs_event(stack, "email-sending", [message])
    handler(event, FakeLambdaContext())
    completed = stack.store.require("alice", job_id)

    assert handler(event, FakeLambdaContext()) == {"batchItemFailures": []}

    assert stack.store.require("alice", job_id) == completed
    assert len(target.calls_for(job_id)) == 1


def test_duplicate_delivery_of_a_running_job_does_nothing(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/ok")
    message = stack.receive("email-sending")[0]
    queue = stack.queues["email-sending"]
    delivery = Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], queue)
    second_delivery: list[Outcome] = []

    def processor(_ctx: object) -> dict[str, str]:
        second_delivery.append(worker.handle(delivery))  # the same message delivered again mid-run
        return {"done": "once"}

    worker = stack.worker(resolve=lambda _q, _j: processor)

    outcome = worker.handle(delivery)

    assert second_delivery == [Outcome.SKIPPED]
    assert outcome is Outcome.COMPLETED
    job = stack.store.require("alice", job_id)
    assert job.attempts == 1 and job.result == {"done": "once"}


def test_a_cancelled_job_is_skipped(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/ok")
    job = stack.store.require("alice", job_id)
    arrange(stack, job, JobStatus.CANCELLED, {"cancelled_at": "2026-01-01T00:00:00.000Z"})

    assert deliver(stack) == {"batchItemFailures": []}

    assert stack.store.require("alice", job_id).status is JobStatus.CANCELLED
    assert target.calls_for(job_id) == []


def test_an_active_job_whose_lease_ran_out_is_reclaimed_counting_an_attempt(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/ok", options={"attempts": 3})
    message = stack.receive("email-sending")[0]
    queue = stack.queues["email-sending"]
    delivery = Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], queue)

    def dies(_ctx: object) -> None:
        raise SystemExit("the consumer died")  # not an Exception: the worker cannot record anything

    with pytest.raises(SystemExit):
        stack.worker(resolve=lambda _q, _j: dies).handle(delivery, remaining_ms=1)
    assert stack.store.require("alice", job_id).status is JobStatus.ACTIVE
    time.sleep(0.01)  # the 1 ms lease runs out

    outcome = stack.worker().handle(delivery)

    assert outcome is Outcome.COMPLETED
    job = stack.store.require("alice", job_id)
    assert job.attempts == 2
    assert [h.outcome for h in job.history] == ["stalled", "completed"]


def test_a_lease_that_ran_out_on_the_final_attempt_fails_the_job_into_the_dlq(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/ok", options={"attempts": 1})
    message = stack.receive("email-sending")[0]
    delivery = Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], stack.queues["email-sending"])
    job = stack.store.require("alice", job_id)
    arrange(stack, job, JobStatus.ACTIVE, {"attempts": 1, "lease_until": now_ms() - 1, "lease_token": "dead"})

    assert stack.worker().handle(delivery) is Outcome.FAILED

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.FAILED and "lease expired" in (job.error or "")
    assert len(stack.receive("email-sending", dlq=True)) == 1
    assert target.calls_for(job_id) == []


def test_a_job_of_a_type_without_processor_fails_permanently(stack: Stack) -> None:
    jobs = service(stack)
    jobs.targets.put_http("email-sending", "gone", HttpTarget(url="http://127.0.0.1:9/x"), ADMIN)
    job, _ = jobs.create(JobCreate(queue="email-sending", type="gone", data={}), ALICE)
    from shared.adapters import clients

    clients.client("dynamodb").delete_item(
        TableName=stack.table_name, Key={"pk": {"S": "QUEUE#email-sending"}, "sk": {"S": "TARGET#gone"}}
    )

    deliver(stack)

    failed = stack.store.require(job.user_id, job.job_id)
    assert failed.status is JobStatus.FAILED and "no processor" in (failed.error or "")


def test_a_malformed_message_goes_to_the_dlq(stack: Stack) -> None:
    from shared.adapters import clients

    clients.client("sqs").send_message(QueueUrl=stack.queues["email-sending"].queue_url, MessageBody="not json")

    assert deliver(stack) == {"batchItemFailures": []}

    assert [m["Body"] for m in stack.receive("email-sending", dlq=True)] == ["not json"]


def test_a_delayed_job_woken_early_goes_back_to_sleep(stack: Stack, target: TargetServer) -> None:
    # 5 s: room for a loaded machine to reach the early wake before the job is due.
    job_id = add_job(stack, target, "/ok", options={"delay": 5000})
    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.DELAYED
    assert stack.receive("email-sending") == []  # SQS holds it for the delay
    from shared.adapters import clients

    clients.client("sqs").send_message(
        QueueUrl=stack.queues["email-sending"].queue_url, MessageBody=f'{{"jobId": "{job_id}", "userId": "alice"}}'
    )
    message = stack.receive("email-sending")[0]
    delivery = Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], stack.queues["email-sending"])

    with pytest.raises(RetryLater):
        stack.worker().handle(delivery)

    assert stack.store.require("alice", job_id).status is JobStatus.DELAYED
    assert target.calls_for(job_id) == []
    # The message sleeps until the job is due, not for the queue's visibility timeout: invisible
    # on every receive before runAt (SQS counts visibility in whole seconds), back soon after.
    run_at = parse_iso(job.run_at or "")
    deadline = time.monotonic() + 15
    while not [m for m in stack.receive("email-sending") if m["MessageId"] == message["MessageId"]]:
        assert time.monotonic() < deadline, "the early message never came back"
        time.sleep(0.2)
    assert now_ms() >= run_at - 1000, "the message came back before the job was due"


def test_a_job_whose_message_kept_killing_the_consumer_is_listed_with_its_job_and_redriven_to_completion(
    stack: Stack, target: TargetServer
) -> None:
    from shared import dead_letters
    from shared.adapters import clients

    sqs = clients.client("sqs")
    queue = stack.queues["email-sending"]
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=queue.queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == queue.dlq_arn
    assert int(policy["maxReceiveCount"]) == queue.max_receive_count > 20  # above any job's attempts
    sqs.set_queue_attributes(QueueUrl=queue.queue_url, Attributes={"RedrivePolicy": json.dumps({**policy, "maxReceiveCount": 2})})
    job_id = add_job(stack, target, "/ok")
    # A consumer that dies on the message (out of memory, a crash) never answers: after
    # maxReceiveCount receives SQS moves it, and the job still says waiting.
    for _ in range(2):
        assert len(sqs.receive_message(QueueUrl=queue.queue_url, VisibilityTimeout=0)["Messages"]) == 1
    assert "Messages" not in sqs.receive_message(QueueUrl=queue.queue_url, VisibilityTimeout=0)

    listing = dead_letters.peek(queue, stack.store, limit=10, hold_seconds=1)

    (letter,) = listing.dead_letters
    assert (letter.job_id, letter.user_id) == (job_id, "alice")
    assert letter.job is not None and letter.job.status is JobStatus.WAITING
    assert letter.reason and "receives" in letter.reason  # said why it is there: SQS moved it, jobq did not fail it

    result = dead_letters.redrive(queue, service(stack), ADMIN, job_ids=None, budget_seconds=5)

    assert result.requeued == [job_id] and result.remaining == 0
    assert deliver(stack) == {"batchItemFailures": []}
    assert stack.store.require("alice", job_id).status is JobStatus.COMPLETED
    assert len(target.calls_for(job_id)) == 1


def test_a_finished_job_expires_by_its_queues_retention(stack: Stack, target: TargetServer) -> None:
    from shared.adapters import clients, policies
    from shared.models import QueuePolicy, Retention

    queue = stack.queues["email-sending"]
    policies.put_policy(queue, QueuePolicy.defaults_for(queue).model_copy(update={"remove_on_complete": Retention(max_age_seconds=3600)}))
    policies.reset_cache()
    job_id = add_job(stack, target, "/ok")

    deliver(stack)

    item = clients.client("dynamodb").get_item(TableName=stack.table_name, Key=_job_key("alice", job_id))["Item"]
    finished_s = now_ms() // 1000
    assert finished_s + 3600 - 5 <= int(item["expiresAt"]["N"]) <= finished_s + 3600
