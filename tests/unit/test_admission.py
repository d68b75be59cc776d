"""Back-pressure (shared/admission.py) on moto: a full queue refuses creates and stores nothing,
concurrent creates never pass the limit, and the stream gives places back as jobs finish."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from api.deps import job_service
from api.main import handler
from infra.local import moto_fixes
from shared.access import Identity
from shared.adapters import policies
from shared.adapters.admission import DynamoAdmissionCounters
from shared.client_models import JobCreate
from shared.errors import TooManyJobs
from shared.models import QueuePolicy
from tests.unit.api_events import http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack
from tests.unit.stream_feed import StreamFeed

QUEUE = "email-sending"
EMAIL = {"to": "a@example.com", "subject": "s", "body": "b"}


def limit(stack: Stack, **fields: Any) -> None:
    policies.update_policy(stack.queues[QUEUE], lambda p: p.model_copy(update=fields))


def create(who: str, **options: Any) -> dict[str, Any]:
    body = {"queue": QUEUE, "type": "send-email", "data": EMAIL, "options": options}
    return handler(http_event("POST", "/jobs", body=body, claims=user(who)), FakeLambdaContext())


def listing(who: str) -> list[dict[str, Any]]:
    out = handler(http_event("GET", f"/jobs/user/{who}", claims=user(who)), FakeLambdaContext())
    return json.loads(out["body"])["data"]["jobs"]


def test_a_full_queue_answers_429_with_retry_after_and_stores_nothing(stack: Stack) -> None:
    limit(stack, max_unfinished_jobs=2)
    assert [create("ann")["statusCode"] for _ in range(2)] == [201, 201]
    refused = create("ann", jobId="third")
    assert refused["statusCode"] == 429
    assert int(refused["headers"]["retry-after"]) == stack.settings.backpressure_retry_after_seconds
    assert json.loads(refused["body"])["error"]["code"] == "TOO_MANY_JOBS"
    assert stack.store.get("ann", "third") is None and len(listing("ann")) == 2
    assert DynamoAdmissionCounters(stack.table_name).read(QUEUE) == 2


def test_a_paused_full_queue_answers_503(stack: Stack) -> None:
    limit(stack, max_unfinished_jobs=1, paused=True)
    assert create("ann")["statusCode"] == 201
    refused = create("ann")
    assert refused["statusCode"] == 503
    assert json.loads(refused["body"])["error"]["code"] == "QUEUE_PAUSED_AND_FULL"
    assert int(refused["headers"]["retry-after"]) == 12 * stack.settings.backpressure_retry_after_seconds


def test_a_user_cap_stops_that_user_only(stack: Stack) -> None:
    limit(stack, max_unfinished_jobs_per_user=1)
    assert create("ann")["statusCode"] == 201
    assert create("ann")["statusCode"] == 429
    assert create("bob")["statusCode"] == 201


def test_concurrent_creates_never_pass_the_limit(stack: Stack) -> None:
    # moto's DynamoDB takes no lock: a transaction's conditions and its writes are not isolated from
    # another thread's, as DynamoDB's are. The local stack's moto runs with the fix; so does this test.
    moto_fixes.apply()
    limit(stack, max_unfinished_jobs=5)
    jobs = job_service()
    request = JobCreate.model_validate({"queue": QUEUE, "type": "send-email", "data": EMAIL})

    def race(i: int) -> int:
        try:
            jobs.create(request, Identity(f"racer-{i % 4}"))
        except TooManyJobs as full:
            return full.status_code
        return 201

    with ThreadPoolExecutor(max_workers=8) as pool:  # the use case itself: Mangum wants one event loop per thread
        statuses = list(pool.map(race, range(24)))
    assert statuses.count(201) == 5 and statuses.count(429) == 19
    assert sum(len(listing(f"racer-{i}")) for i in range(4)) == 5


def test_a_repeated_create_of_the_same_job_takes_no_second_place(stack: Stack) -> None:
    limit(stack, max_unfinished_jobs=2)
    assert create("ann", jobId="same")["statusCode"] == 201
    assert create("ann", jobId="same")["statusCode"] == 200
    assert DynamoAdmissionCounters(stack.table_name).read(QUEUE) == 1


def test_places_come_back_as_jobs_finish_and_a_retry_takes_one_again(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    limit(stack, max_unfinished_jobs=1)
    counters = DynamoAdmissionCounters(stack.table_name)
    assert create("ann", jobId="first")["statusCode"] == 201
    assert create("ann")["statusCode"] == 429
    cancel = handler(http_event("DELETE", "/jobs/first", claims=user("ann")), FakeLambdaContext())
    assert cancel["statusCode"] == 200
    feed.deliver()
    assert counters.read(QUEUE) == 0
    assert create("ann", jobId="second")["statusCode"] == 201
    feed.deliver()
    # a retry of a finished job is not a create: never refused, but it counts again
    retried = handler(http_event("POST", "/jobs/first/retry", claims=user("ann")), FakeLambdaContext())
    assert retried["statusCode"] == 200
    feed.deliver()
    assert counters.read(QUEUE) == 2


def test_jobs_created_before_a_limit_hold_no_place(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    assert create("ann", jobId="old")["statusCode"] == 201
    limit(stack, max_unfinished_jobs=1)
    handler(http_event("DELETE", "/jobs/old", claims=user("ann")), FakeLambdaContext())
    feed.deliver()
    assert DynamoAdmissionCounters(stack.table_name).read(QUEUE) == 0
    assert create("ann")["statusCode"] == 201


@pytest.mark.parametrize("field", ["maxUnfinishedJobs", "maxUnfinishedJobsPerUser"])
def test_limits_are_set_and_removed_through_the_queue_policy(stack: Stack, field: str) -> None:
    from tests.unit.api_events import admin

    set_ = handler(http_event("PATCH", f"/queues/{QUEUE}", body={field: 3}, claims=admin()), FakeLambdaContext())
    assert json.loads(set_["body"])["data"][field] == 3
    cleared = handler(http_event("PATCH", f"/queues/{QUEUE}", body={field: None}, claims=admin()), FakeLambdaContext())
    assert json.loads(cleared["body"])["data"][field] is None
    assert QueuePolicy.model_validate(policies.read_policy(stack.queues[QUEUE])[0].model_dump()).max_unfinished_jobs is None
