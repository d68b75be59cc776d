"""Seed 002 (a scraping queue on BullMQ): priority names, dead letters revived at low priority
with one attempt, and which errors are retried chosen per job type (its ``retryCondition``).

Its ``JobPriority`` enum numbers the tiers the other way round (``CRITICAL = 1`` ... ``BULK = 5``):
seed 000's "higher is more important" wins, so the names are what carries over.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from api.main import handler
from functions.consumer.handler import handler as consumer
from shared.adapters import clients, policies
from shared.status import JobStatus
from tests.target_server import TargetServer
from tests.unit.api_events import admin, http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event

QUEUE = "email-sending"
OWNER = "customer-123"


@pytest.fixture(autouse=True)
def fresh_policy_cache() -> Iterator[None]:
    policies.reset_cache()
    yield
    policies.reset_cache()


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def call(method: str, path: str, *, body: Any = None, claims: dict[str, str] | None = None) -> tuple[int, Any]:
    route, _, query = path.partition("?")
    response = handler(http_event(method, route, body=body, claims=claims or admin(), query=query), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def register(target: TargetServer, job_type: str, path: str, **rule: Any) -> None:
    status, out = call("PUT", f"/queues/{QUEUE}/processors/{job_type}", body={"kind": "http", "url": f"{target.url}{path}", "timeoutSeconds": 2, **rule})
    assert status == 200, out


def create(job_type: str, data: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    body = {"queue": QUEUE, "type": job_type, "data": data or {"url": "https://example.com", "customerId": "customer-123"}, "options": options}
    status, out = call("POST", "/jobs", body=body, claims=user(OWNER))
    assert status == 201, out
    return dict(out["data"])


def run_consumer(stack: Stack) -> None:
    while messages := stack.receive(QUEUE):
        consumer(sqs_event(stack, QUEUE, messages), FakeLambdaContext())


def test_add_job_with_priority_high_attempts_and_exponential_backoff(stack: Stack, target: TargetServer) -> None:
    register(target, "scrape-website", "/ok")
    # queueManager.addJob('scrape-website', {...}, {priority: 'high', attempts: 3, backoff: 'exponential'})
    job = create("scrape-website", priority="high", attempts=3, backoff={"type": "exponential"})
    assert job["priority"] == 5 and job["priorityName"] == "high" and job["maxAttempts"] == 3 and job["backoff"]["type"] == "exponential"
    assert create("scrape-website", priority="bulk")["priority"] == -10


def test_dead_letters_are_revived_at_low_priority_with_one_attempt(stack: Stack, target: TargetServer) -> None:
    register(target, "scrape-website", "/always/500")
    failed = [create("scrape-website", attempts=1, priority="critical")["jobId"] for _ in range(2)]
    run_consumer(stack)
    assert all(stack.store.require(OWNER, job_id).status is JobStatus.FAILED for job_id in failed)

    # reprocessFailedJobs(): re-add with {priority: JobPriority.LOW, attempts: 1}
    status, out = call("POST", f"/queues/{QUEUE}/dead-letters/redrive", body={"jobIds": failed, "priority": "low", "attempts": 1})

    assert status == 200 and sorted(out["data"]["redriven"]) == sorted(failed)
    for job_id in failed:
        job = stack.store.require(OWNER, job_id)
        assert job.status is JobStatus.WAITING and job.priority == -5 and job.max_attempts == 1 and job.attempts == 0
    run_consumer(stack)  # still failing: one attempt, then failed again, not retried
    assert all(stack.store.require(OWNER, job_id).status is JobStatus.FAILED and stack.store.require(OWNER, job_id).attempts == 1 for job_id in failed)
    status, bad = call("POST", f"/queues/{QUEUE}/dead-letters/redrive", body={"jobIds": failed, "priority": "lowest"})
    assert status == 400 and "low (-5)" in bad["error"]["message"]


def test_an_http_target_may_fail_at_once_on_a_status_the_default_rule_retries(stack: Stack, target: TargetServer) -> None:
    register(target, "never-recovers", "/always/503", failOn=[503])
    job_id = create("never-recovers", attempts=3)["jobId"]

    run_consumer(stack)

    job = stack.store.require(OWNER, job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1 and "503" in (job.error or "")


def test_an_http_target_may_retry_only_the_statuses_it_names(stack: Stack, target: TargetServer) -> None:
    register(target, "picky", "/always/502", retryOn=[503])
    job_id = create("picky", attempts=3)["jobId"]

    run_consumer(stack)

    assert stack.store.require(OWNER, job_id).status is JobStatus.FAILED and stack.store.require(OWNER, job_id).attempts == 1
    register(target, "patient", "/always/409", retryOn=[409])
    patient = create("patient", attempts=3)["jobId"]
    run_consumer(stack)
    assert stack.store.require(OWNER, patient).status is JobStatus.DELAYED  # retried after its backoff, as asked
    status, body = call("PUT", f"/queues/{QUEUE}/processors/x", body={"url": f"{target.url}/ok", "retryOn": [200]})
    assert status == 400 and "statuses are 300 to 599" in body["error"]["message"]


def _ses_fails_with(code: str) -> Any:
    def fail(**_: Any) -> None:
        raise ClientError({"Error": {"Code": code, "Message": "as the test says"}}, "SendEmail")

    return fail


def test_a_code_processor_fails_at_once_on_the_exceptions_its_type_names(stack: Stack) -> None:
    """send-email declares fail_on=MessageRejected: SES refusing a message is not retried."""
    job_id = create("send-email", {"to": "a@example.com", "subject": "Hi", "body": "Hello"}, attempts=3)["jobId"]
    reject = _ses_fails_with("MessageRejected")
    ses = clients.client("ses")
    ses.meta.events.register("before-call.ses.SendEmail", reject)
    try:
        run_consumer(stack)
    finally:
        ses.meta.events.unregister("before-call.ses.SendEmail", reject)

    job = stack.store.require(OWNER, job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1 and "not retried for this job type" in (job.error or "")


def test_a_code_processor_retries_what_its_type_does_not_name(stack: Stack) -> None:
    job_id = create("send-email", {"to": "a@example.com", "subject": "Hi", "body": "Hello"}, attempts=3)["jobId"]
    throttle = _ses_fails_with("Throttling")
    ses = clients.client("ses")
    ses.meta.events.register("before-call.ses.SendEmail", throttle)
    try:
        run_consumer(stack)
    finally:
        ses.meta.events.unregister("before-call.ses.SendEmail", throttle)

    job = stack.store.require(OWNER, job_id)
    assert job.status is JobStatus.DELAYED and job.attempts == 1  # waiting out its backoff
