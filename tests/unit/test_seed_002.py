"""Seed 002 (a scraping queue on BullMQ): priority names, and dead letters revived at low priority
with one attempt.

Its ``JobPriority`` enum numbers the tiers the other way round (``CRITICAL = 1`` ... ``BULK = 5``):
seed 000's "higher is more important" wins, so the names are what carries over.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from api.main import handler
from functions.consumer.handler import handler as consumer
from shared.adapters import policies
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
