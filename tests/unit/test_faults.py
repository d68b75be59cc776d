"""Faults lose nothing: AWS errors injected into the real clients (tests/unit/faults.py) while the
real consumer, API, health sweep and store run on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from api.main import handler as api_handler
from shared.adapters import policies, queues
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.clock import iso, now_ms
from shared.health import HealthSweep
from shared.jobs import Identity, JobService
from shared.lifecycle import MAX_ERROR_CHARS, MAX_HISTORY, MAX_RECORD_ERROR_CHARS
from shared.models import AttemptRecord, HttpTarget, JobRef
from shared.status import JobStatus
from shared.worker import Delivery, JobContext, Outcome, RetryLater
from tests.target_server import TargetServer
from tests.unit.api_events import http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event
from tests.unit.faults import INTERNAL_ERROR, SQS_UNAVAILABLE, THROTTLED, failing, writes_status
from tests.unit.scheduling import put_job

ADMIN = Identity("root", is_admin=True)
ALICE = Identity("alice")
QUEUE = "email-sending"
# The consumer keeps 3 s of its remaining time for keeping an ending: with 3.2 s left, a final
# write gets one try (botocore's own retries included) before the ending is kept.
SHORT_INVOCATION_MS = 3200


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def service(stack: Stack) -> JobService:
    return JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)


def add_job(stack: Stack, target: TargetServer, path: str, *, options: dict[str, Any] | None = None) -> str:
    jobs = service(stack)
    jobs.targets.put_http(QUEUE, "call", HttpTarget(url=f"{target.url}{path}", timeout_seconds=2), ADMIN)
    job, _ = jobs.create(JobCreate(queue=QUEUE, type="call", data={"n": 1}, options=options or {}), ALICE)
    return job.job_id


def deliver(stack: Stack, *, remaining_ms: int = 30_000, wait: int = 0) -> dict[str, Any]:
    from functions.consumer.handler import handler

    messages = stack.receive(QUEUE, wait=wait)
    assert messages, "expected a message on the queue"
    return handler(sqs_event(stack, QUEUE, messages), FakeLambdaContext(remaining_ms))


def one_delivery(stack: Stack, worker_job: str) -> Delivery:
    (message,) = [m for m in stack.receive(QUEUE) if worker_job in m["Body"]]
    return Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], stack.queues[QUEUE], 1)


# ---- final writes ---------------------------------------------------------------------------------------
def test_a_success_stays_a_success_when_its_completion_write_is_throttled_for_the_whole_invocation(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/ok")

    with failing("dynamodb", "UpdateItem", response=THROTTLED, when=writes_status("completed")) as fault:
        first = deliver(stack, remaining_ms=SHORT_INVOCATION_MS)

    assert fault.hits >= 1 and first == {"batchItemFailures": []}
    assert stack.store.require("alice", job_id).status is JobStatus.ACTIVE  # not failed, not run again yet
    deliver(stack, wait=2)  # the message that keeps the ending

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.COMPLETED and job.attempts == 1
    assert job.result == {"echo": {"n": 1}, "attempt": 1}
    assert len(target.calls_for(job_id)) == 1  # the processor ran once
    assert [h.outcome for h in job.history] == ["completed"]


def test_a_completion_write_that_fails_for_a_moment_is_retried_within_the_invocation(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/ok")

    with failing("dynamodb", "UpdateItem", response=INTERNAL_ERROR, when=writes_status("completed"), times=4) as fault:
        response = deliver(stack)

    assert fault.hits == 4 and response == {"batchItemFailures": []}  # botocore's four tries, then jobq's retry
    assert stack.store.require("alice", job_id).status is JobStatus.COMPLETED
    assert stack.receive(QUEUE) == []


def test_a_retry_write_that_stays_throttled_keeps_the_failed_attempt_and_its_backoff(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/fail-times/1", options={"attempts": 3, "backoff": {"type": "fixed", "delay": 1000}})

    with failing("dynamodb", "UpdateItem", response=THROTTLED, when=writes_status("delayed")):
        deliver(stack, remaining_ms=SHORT_INVOCATION_MS)
    assert stack.store.require("alice", job_id).status is JobStatus.ACTIVE

    kept = deliver(stack, wait=2)  # writes the kept retry; the message then waits out the backoff
    assert len(kept["batchItemFailures"]) == 1 and stack.store.require("alice", job_id).status is JobStatus.DELAYED
    deliver(stack, wait=3)

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.COMPLETED and job.attempts == 2
    assert [h.outcome for h in job.history] == ["retrying", "completed"]
    assert len(target.calls_for(job_id)) == 2


# ---- dead letters ---------------------------------------------------------------------------------------
def test_the_dead_letter_copy_of_a_failed_job_is_not_lost_when_sqs_fails(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/always/422")  # a 4xx: failed at once
    dlq_url = stack.queues[QUEUE].dlq_url

    with failing("sqs", "SendMessage", response=SQS_UNAVAILABLE, when=lambda body: body.get("QueueUrl") == dlq_url) as fault:
        deliver(stack, remaining_ms=SHORT_INVOCATION_MS)

    assert fault.hits >= 1
    assert stack.store.require("alice", job_id).status is JobStatus.ACTIVE  # not written failed without its copy
    deliver(stack, wait=2)

    assert stack.store.require("alice", job_id).status is JobStatus.FAILED
    copies = [m for m in stack.receive(QUEUE, dlq=True) if json.loads(m["Body"])["jobId"] == job_id]
    assert len(copies) == 1 and copies[0]["MessageAttributes"]["jobqFailureReason"]["StringValue"].startswith("target ")


def test_one_sqs_error_in_the_health_sweep_stops_neither_the_queue_nor_the_others(stack: Stack) -> None:
    policies.reset_cache()
    dying = put_job(stack, JobStatus.ACTIVE, attempts=3, max_attempts=3, lease_until=now_ms() - 60_000, lease_token="gone")
    stalled = put_job(stack, JobStatus.ACTIVE, attempts=1, lease_until=now_ms() - 60_000, lease_token="gone")
    dlq_url = stack.queues[QUEUE].dlq_url
    sweep = HealthSweep(stack.store, queues.directory(), stack.settings)

    with failing("sqs", "SendMessage", response=SQS_UNAVAILABLE, when=lambda body: body.get("QueueUrl") == dlq_url):
        run = sweep.check_health()

    assert set(run.queues) == set(stack.queues) and run.errors == {}
    assert stack.store.require(dying.user_id, dying.job_id).status is JobStatus.ACTIVE  # left for the next run, its copy not lost
    assert stack.store.require(stalled.user_id, stalled.job_id).status is JobStatus.STALLED
    sweep.check_health()
    assert stack.store.require(dying.user_id, dying.job_id).status is JobStatus.FAILED
    assert [json.loads(m["Body"])["jobId"] for m in stack.receive(QUEUE, dlq=True)] == [dying.job_id]


# ---- cancels --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("outcome", ["raise", "return"])
def test_a_cancel_requested_while_running_ends_cancelled_whatever_the_attempt_does(stack: Stack, outcome: str) -> None:
    jobs = service(stack)
    job, _ = jobs.create(JobCreate(queue=QUEUE, type="send-email", data={"to": "a@example.com", "subject": "s", "body": "b"}, options={"attempts": 3}), ALICE)

    def processor(context: JobContext) -> Any:
        jobs.cancel(context.job_id, ALICE)  # DELETE /jobs/{id} while the attempt runs: 202, cancelRequested
        if outcome == "raise":
            raise RuntimeError("the attempt failed after the cancel")
        return {"done": True}

    worker = stack.worker(lambda queue, j: processor)
    result = worker.handle(one_delivery(stack, job.job_id))

    assert result is Outcome.CANCELLED
    ended = stack.store.require(job.user_id, job.job_id)
    assert ended.status is JobStatus.CANCELLED and ended.cancel_requested
    assert ended.history[-1].outcome == "cancelled" and ended.result is None
    assert ended.version > job.version + 2  # claim, cancel request, cancel: it never went backwards


def test_a_stalled_job_can_be_cancelled(stack: Stack) -> None:
    job = put_job(stack, JobStatus.STALLED, attempts=1)

    response = api_handler(http_event("DELETE", f"/jobs/{job.job_id}", claims=user("alice")), FakeLambdaContext())

    assert response["statusCode"] == 200
    assert json.loads(response["body"])["data"]["status"] == "cancelled"
    assert stack.store.require(job.user_id, job.job_id).status is JobStatus.CANCELLED


# ---- create -----------------------------------------------------------------------------------------------
def _post(path: str, body: Any) -> tuple[int, Any]:
    response = api_handler(http_event("POST", path, body=body, claims=user("alice")), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


EMAIL = {"queue": QUEUE, "type": "send-email", "data": {"to": "a@example.com", "subject": "s", "body": "b"}}


def test_bulk_create_reports_each_items_truth_when_a_later_chunk_cannot_be_stored(stack: Stack) -> None:
    with failing("dynamodb", "BatchWriteItem", response=INTERNAL_ERROR, after=1) as fault:
        status, body = _post("/jobs/bulk", {"jobs": [EMAIL] * 30})

    assert fault.hits >= 1 and status == 200
    results = body["data"]["results"]
    assert [r["status"] for r in results] == [201] * 25 + [503] * 5
    stored = [r["job"]["jobId"] for r in results[:25]]
    assert all(stack.store.get("alice", job_id) is not None for job_id in stored)
    assert len(stack.receive(QUEUE, max_messages=10)) == 10  # the stored ones are enqueued


@pytest.mark.parametrize("fault_kwargs", [{"connection_error": True}, {"response": SQS_UNAVAILABLE}])
def test_an_sqs_error_on_create_leaves_no_job_behind_and_answers_503(stack: Stack, fault_kwargs: dict[str, Any]) -> None:
    with failing("sqs", "SendMessage", **fault_kwargs):
        status, body = _post("/jobs", {**EMAIL, "options": {"jobId": "invoice-42"}})

    assert status == 503 and body["success"] is False and body["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert stack.store.get("alice", "invoice-42") is None
    status, _ = _post("/jobs", {**EMAIL, "options": {"jobId": "invoice-42"}})  # the client's retry starts clean
    assert status == 201


def test_a_job_stored_but_not_enqueued_is_reported_stored_when_it_cannot_be_taken_back(stack: Stack) -> None:
    with failing("sqs", "SendMessage", connection_error=True), failing("dynamodb", "DeleteItem", response=INTERNAL_ERROR):
        status, body = _post("/jobs", {**EMAIL, "options": {"jobId": "invoice-43"}})

    assert status == 201 and body["data"]["jobId"] == "invoice-43" and body["data"]["status"] == "waiting"
    assert stack.store.require("alice", "invoice-43").status is JobStatus.WAITING  # the health sweep enqueues it


# ---- the consumer path ------------------------------------------------------------------------------------
def test_a_throttled_claim_backs_off_briefly_without_spending_an_attempt(stack: Stack, target: TargetServer) -> None:
    job_id = add_job(stack, target, "/ok")

    with failing("dynamodb", "UpdateItem", response=THROTTLED), failing("sqs", "ChangeMessageVisibility", response=None) as visibility:
        response = deliver(stack)

    assert len(response["batchItemFailures"]) == 1
    assert [body["VisibilityTimeout"] for body in visibility.seen] == [2]  # 2**receives, not the 6-minute timeout
    assert stack.store.require("alice", job_id).attempts == 0
    assert target.calls_for(job_id) == []


# ---- item growth ---------------------------------------------------------------------------------------------
def test_error_text_and_history_stay_bounded_whatever_a_processor_raises(stack: Stack) -> None:
    many = [AttemptRecord(attempt=i, started_at=iso(now_ms()), ended_at=iso(now_ms()), outcome="retrying", error="x") for i in range(1, 41)]
    job = put_job(stack, JobStatus.WAITING, attempts=40, max_attempts=50, history=many, queue=QUEUE)
    queues.send_job(stack.queues[QUEUE], JobRef.of(job))

    def huge(context: JobContext) -> Any:
        raise ValueError("y" * 1_000_000)

    with pytest.raises(RetryLater):
        stack.worker(lambda queue, j: huge).handle(one_delivery(stack, job.job_id))

    ended = stack.store.require(job.user_id, job.job_id)
    assert ended.status is JobStatus.DELAYED
    assert len(ended.error or "") <= MAX_ERROR_CHARS and len(ended.history) == MAX_HISTORY
    assert len(ended.history[-1].error or "") <= MAX_RECORD_ERROR_CHARS and ended.history[-1].attempt == 41
