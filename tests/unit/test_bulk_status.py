"""POST /jobs/status on moto: one BatchGetItem, throttled keys retried, hidden jobs not told apart
from unknown ones. Throttling is injected with a botocore hook on the real client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from api.main import handler
from shared.adapters import clients
from tests.unit.api_events import admin, http_event, in_group, user
from tests.unit.conftest import FakeLambdaContext, Stack

EMAIL = {"to": "a@example.com", "subject": "s", "body": "b"}


def create(who: str, job_id: str) -> None:
    body = {"queue": "email-sending", "type": "send-email", "data": EMAIL, "options": {"jobId": job_id}}
    assert handler(http_event("POST", "/jobs", body=body, claims=user(who)), FakeLambdaContext())["statusCode"] == 201


def statuses(claims: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return handler(http_event("POST", "/jobs/status", body=body, claims=claims), FakeLambdaContext())


@pytest.fixture
def throttle(stack: Stack) -> Iterator[dict[str, int]]:
    """Answer the first ``times`` BatchGetItem calls with all but ``keep`` keys unprocessed, as DynamoDB does when throttled."""
    state = {"times": 0, "calls": 0, "keep": 1}
    events = clients.client("dynamodb").meta.events

    def unprocess(parsed: dict[str, Any], **_: Any) -> None:
        state["calls"] += 1
        if state["calls"] > state["times"]:
            return
        items = parsed.get("Responses", {}).get(stack.table_name, [])
        kept, pushed = items[: state["keep"]], items[state["keep"] :]
        parsed["Responses"][stack.table_name] = kept
        if pushed:
            parsed["UnprocessedKeys"] = {stack.table_name: {"Keys": [{"pk": i["pk"], "sk": i["sk"]} for i in pushed], "ConsistentRead": True}}

    events.register("after-call.dynamodb.BatchGetItem", unprocess)
    yield state
    events.unregister("after-call.dynamodb.BatchGetItem", unprocess)


def test_bulk_status_retries_throttled_keys_and_still_returns_every_job(stack: Stack, throttle: dict[str, int]) -> None:
    ids = [f"job-{i}" for i in range(5)]
    for job_id in ids:
        create("ann", job_id)
    throttle["times"] = 3
    out = statuses(user("ann"), {"jobIds": ids})
    assert out["statusCode"] == 200, out
    data = json.loads(out["body"])["data"]
    assert sorted(j["jobId"] for j in data["jobs"]) == ids and data["notFound"] == []
    assert throttle["calls"] == 4  # one read, three retries of what was left


def test_bulk_status_that_stays_throttled_is_a_503_never_a_false_not_found(stack: Stack, throttle: dict[str, int]) -> None:
    for job_id in ("a", "b"):
        create("ann", job_id)
    throttle.update(times=100, keep=0)
    out = statuses(user("ann"), {"jobIds": ["a", "b"]})
    assert out["statusCode"] == 503


def test_bulk_status_hides_other_users_jobs_among_the_unknown_ones(stack: Stack) -> None:
    create("ann", "mine")
    create("bob", "his")
    data = json.loads(statuses(user("ann"), {"jobIds": ["mine", "his", "nobodys"]})["body"])["data"]
    assert [j["jobId"] for j in data["jobs"]] == ["mine"] and data["notFound"] == ["his", "nobodys"]
    # a reader or an admin names owners
    for claims in (admin(), in_group("rita", "readonly")):
        seen = json.loads(statuses(claims, {"jobs": [{"jobId": "his", "userId": "bob"}, {"jobId": "mine", "userId": "ann"}]})["body"])["data"]
        assert [j["jobId"] for j in seen["jobs"]] == ["his", "mine"]


def test_bulk_status_takes_at_most_100_ids(stack: Stack) -> None:
    assert statuses(user("ann"), {"jobIds": [f"j{i}" for i in range(101)]})["statusCode"] == 400
    assert statuses(user("ann"), {"jobIds": []})["statusCode"] == 400
    assert statuses(user("ann"), {"jobIds": ["bad id"]})["statusCode"] == 400
