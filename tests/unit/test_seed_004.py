"""Seed 004 (a Next.js app on BullMQ): queue actions, bulk removal, ``?action=`` on DELETE /jobs,
``includeJobs``, typed job data, and a body without ``queue`` going to the queue of its type."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from api.deps import job_service
from api.main import handler
from functions.consumer.handler import handler as consumer
from infra.local.esm import MappingRegistry
from shared.adapters import clients, policies
from shared.jobs import Identity
from shared.status import JobStatus
from tests.target_server import TargetServer
from tests.unit.api_events import admin, http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event
from tests.unit.scheduling import put_job
from tests.unit.stream_feed import StreamFeed
from tests.unit.test_queues import mappings  # noqa: F401 (the fixture: the consumer mappings behind Lambda's API)

QUEUE = "report-generation"
RESEARCH_SCHEMA = {  # seed 004's "Data Fields" of a research job
    "type": "object",
    "required": ["companyId", "companyName"],
    "properties": {
        "companyId": {"type": "string"},
        "companyName": {"type": "string"},
        "domain": {"type": "string"},
        "priority": {"enum": ["low", "normal", "high"]},
        "userId": {"type": "string"},
    },
}
RESEARCH = {"type": "research", "data": {"companyId": "comp_123", "companyName": "Acme Corp", "domain": "acme.com", "priority": "high"}}


@pytest.fixture(autouse=True)
def fresh_policy_cache() -> Iterator[None]:
    policies.reset_cache()
    yield
    policies.reset_cache()


@pytest.fixture
def target(stack: Stack) -> Iterator[TargetServer]:
    with TargetServer() as server:
        status, out = call("PUT", f"/queues/{QUEUE}/processors/research", body={"url": f"{server.url}/ok", "dataSchema": RESEARCH_SCHEMA})
        assert status == 200, out
        status, out = call("PUT", f"/queues/{QUEUE}/processors/flaky", body={"url": f"{server.url}/always/500"})
        assert status == 200, out
        yield server


def call(method: str, path: str, *, body: Any = None, claims: dict[str, str] | None = None) -> tuple[int, Any]:
    route, _, query = path.partition("?")
    response = handler(http_event(method, route, body=body, claims=claims or admin(), query=query), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def create(body: dict[str, Any], owner: str = "alice") -> dict[str, Any]:
    status, out = call("POST", "/jobs", body=body, claims=user(owner))
    assert status == 201, out
    return dict(out["data"])


def fail(stack: Stack, owner: str = "alice") -> dict[str, Any]:
    job = create({"queue": QUEUE, "type": "flaky", "data": {}, "options": {"attempts": 1}}, owner)
    while messages := stack.receive(QUEUE):
        consumer(sqs_event(stack, QUEUE, messages), FakeLambdaContext())
    assert stack.store.require(job["userId"], job["jobId"]).status is JobStatus.FAILED
    return job


# ---- POST /jobs without a queue, typed data ------------------------------------------------------------
def test_a_body_without_queue_goes_to_the_queue_of_its_type_and_takes_its_priority_from_data(stack: Stack, target: TargetServer) -> None:
    job = create(RESEARCH)
    assert job["queue"] == QUEUE and job["priority"] == 5  # data.priority "high", as seed 004 writes it
    assert job["data"]["priority"] == "high"


def test_a_type_no_queue_or_several_queues_handle_is_a_400(stack: Stack, target: TargetServer) -> None:
    status, body = call("POST", "/jobs", body={"type": "signal", "data": {}}, claims=user("alice"))
    assert status == 400 and "handled by no queue" in body["error"]["message"]
    assert call("PUT", "/queues/email-sending/processors/research", body={"url": f"{target.url}/ok"})[0] == 200
    status, body = call("POST", "/jobs", body=RESEARCH, claims=user("alice"))
    assert status == 400 and "several queues (email-sending, report-generation)" in body["error"]["message"]
    assert create({**RESEARCH, "queue": QUEUE})["queue"] == QUEUE  # naming the queue still works


def test_data_that_breaks_the_targets_schema_is_a_400_naming_the_fields(stack: Stack, target: TargetServer) -> None:
    status, body = call("POST", "/jobs", body={"type": "research", "data": {"companyId": 123, "priority": "urgent"}}, claims=user("alice"))

    assert status == 400
    message = body["error"]["message"]
    assert "data: 'companyName' is a required property" in message
    assert "data.companyId: 123 is not of type 'string'" in message and "data.priority: 'urgent' is not one of" in message
    assert stack.receive(QUEUE) == []


def test_a_schedule_whose_jobs_would_break_the_schema_is_refused(stack: Stack, target: TargetServer) -> None:
    body = {"queue": QUEUE, "type": "research", "data": {"companyId": "comp_123"}, "cronExpression": "0 2 * * *"}
    status, out = call("POST", "/scheduler/repeating", body=body)
    assert status == 400 and "'companyName' is a required property" in out["error"]["message"]


def test_a_schema_that_is_not_json_schema_is_refused_at_registration(stack: Stack, target: TargetServer) -> None:
    status, body = call("PUT", f"/queues/{QUEUE}/processors/odd", body={"url": f"{target.url}/ok", "dataSchema": {"type": "nope"}})
    assert status == 400 and "not a valid JSON Schema" in body["error"]["message"]


def test_a_schema_whose_ref_resolves_nowhere_is_a_400_not_a_crash(stack: Stack, target: TargetServer) -> None:
    schema = {"$ref": "https://schemas.example.com/research.json"}  # remote documents are never fetched
    assert call("PUT", f"/queues/{QUEUE}/processors/remote", body={"url": f"{target.url}/ok", "dataSchema": schema})[0] == 200
    status, body = call("POST", "/jobs", body={"queue": QUEUE, "type": "remote", "data": {}}, claims=user("alice"))
    assert status == 400 and "dataSchema cannot be applied" in body["error"]["message"]


# ---- DELETE /jobs/{id}?action= --------------------------------------------------------------------------
def test_delete_with_action_remove_deletes_the_job_for_its_owner_or_an_admin(stack: Stack, target: TargetServer) -> None:
    job = create(RESEARCH)
    assert call("DELETE", f"/jobs/{job['jobId']}?action=remove", claims=user("bob"))[0] == 404

    status, body = call("DELETE", f"/jobs/{job['jobId']}?action=remove", claims=user("alice"))

    assert status == 200 and body["data"]["jobId"] == job["jobId"]
    assert call("GET", f"/jobs/{job['jobId']}", claims=user("alice"))[0] == 404
    other = create(RESEARCH)
    assert call("DELETE", f"/jobs/{other['jobId']}?action=remove")[0] == 404  # an admin's own namespace: none of that id
    assert call("DELETE", f"/jobs/{other['jobId']}?action=remove&userId=alice")[0] == 200  # an admin, naming the owner


def test_delete_with_action_retry_retries_a_failed_job(stack: Stack, target: TargetServer) -> None:
    job = fail(stack)
    status, body = call("DELETE", f"/jobs/{job['jobId']}?action=retry", claims=user("alice"))
    assert status == 200 and body["data"]["status"] == "waiting"
    assert call("DELETE", f"/jobs/{job['jobId']}?action=explode", claims=user("alice"))[0] == 400


def test_removing_a_running_job_is_refused(stack: Stack, target: TargetServer) -> None:
    job = put_job(stack, JobStatus.ACTIVE, queue=QUEUE, type="research", user_id="alice", attempts=1, lease_token="t", lease_until=2**40)
    status, body = call("DELETE", f"/jobs/{job.job_id}?action=remove", claims=user("alice"))
    assert status == 409 and "cancel it first" in body["error"]["message"]


# ---- queue actions ----------------------------------------------------------------------------------------
def test_queue_actions_pause_resume_and_clean(stack: Stack, mappings: MappingRegistry) -> None:  # noqa: F811
    status, paused = call("POST", f"/queues/{QUEUE}", body={"action": "pause"})
    assert status == 200 and paused["data"]["paused"] is True and paused["data"]["consumerState"] == "Disabled"
    status, resumed = call("POST", f"/queues/{QUEUE}", body={"action": "resume"})
    assert status == 200 and resumed["data"]["paused"] is False

    status, cleaned = call("POST", f"/queues/{QUEUE}", body={"action": "clean", "options": {"grace": 86400000, "limit": 100, "type": "completed"}})
    assert status == 200 and cleaned["data"] == {"removed": 0, "jobIds": [], "hasMore": False}
    assert call("POST", f"/queues/{QUEUE}", body={"action": "clean", "options": {"grace": 3600000}})[0] == 200
    status, bad = call("POST", f"/queues/{QUEUE}", body={"action": "clean", "options": {"type": "wait"}})
    assert status == 400 and "completed" in bad["error"]["message"]
    assert call("POST", f"/queues/{QUEUE}", body={"action": "drain"})[0] == 400
    assert call("POST", "/queues/nope", body={"action": "pause"})[0] == 404
    assert call("POST", f"/queues/{QUEUE}", body={"action": "pause"}, claims=user("alice"))[0] == 403


def test_clean_through_the_action_removes_old_finished_jobs(stack: Stack, target: TargetServer) -> None:
    job = fail(stack)
    status, cleaned = call("POST", f"/queues/{QUEUE}", body={"action": "clean", "options": {"grace": 0, "type": "failed"}})
    assert status == 200 and cleaned["data"]["jobIds"] == [job["jobId"]]


# ---- GET /queues/{name}?includeJobs= ------------------------------------------------------------------------
def test_queue_details_include_its_jobs_when_asked(stack: Stack, target: TargetServer) -> None:
    waiting = create(RESEARCH)
    failed = fail(stack)

    assert call("GET", f"/queues/{QUEUE}")[1]["data"]["jobs"] is None
    _, recent = call("GET", f"/queues/{QUEUE}?includeJobs=true&limit=20")
    assert [j["jobId"] for j in recent["data"]["jobs"]] == [failed["jobId"], waiting["jobId"]]
    _, only_failed = call("GET", f"/queues/{QUEUE}?includeJobs=true&status=failed")
    assert [j["jobId"] for j in only_failed["data"]["jobs"]] == [failed["jobId"]]
    assert only_failed["data"]["liveStats"] is not None


# ---- DELETE /queues/{name}: bulk removal --------------------------------------------------------------------
def test_bulk_removal_by_ids_takes_owner_and_id_pairs_from_a_listing(stack: Stack, target: TargetServer) -> None:
    alices, bobs, keep = create(RESEARCH, "alice"), create(RESEARCH, "bob"), create(RESEARCH, "carol")
    listed = call("GET", f"/queues/{QUEUE}/jobs?status=waiting")[1]["data"]["jobs"]
    refs = ",".join(f"{j['userId']}/{j['jobId']}" for j in listed if j["jobId"] in (alices["jobId"], bobs["jobId"]))

    status, body = call("DELETE", f"/queues/{QUEUE}?jobIds={refs},carol/never-existed")

    assert status == 200
    assert sorted(r["jobId"] for r in body["data"]["removed"]) == sorted([alices["jobId"], bobs["jobId"]])
    assert [r["jobId"] for r in body["data"]["notRemoved"]] == ["never-existed"]
    assert call("GET", f"/jobs/{keep['jobId']}", claims=user("carol"))[0] == 200
    assert call("GET", f"/jobs/{alices['jobId']}", claims=user("alice"))[0] == 404


def test_bulk_removal_of_a_bare_id_is_in_the_named_owners_namespace(stack: Stack, target: TargetServer) -> None:
    job = create(RESEARCH, "alice")
    assert call("DELETE", f"/queues/{QUEUE}?jobIds={job['jobId']}")[1]["data"]["removed"] == []  # the admin's own: none
    status, body = call("DELETE", f"/queues/{QUEUE}?jobIds={job['jobId']}&userId=alice")
    assert status == 200 and [r["jobId"] for r in body["data"]["removed"]] == [job["jobId"]]


def test_bulk_removal_by_status_removes_every_failed_job_and_only_those(stack: Stack, target: TargetServer) -> None:
    failed = [fail(stack, owner)["jobId"] for owner in ("alice", "bob")]
    waiting = create(RESEARCH)

    status, body = call("DELETE", f"/queues/{QUEUE}?status=failed")

    assert status == 200 and sorted(r["jobId"] for r in body["data"]["removed"]) == sorted(failed)
    assert all(r["status"] == "failed" for r in body["data"]["removed"]) and body["data"]["hasMore"] is False
    assert stack.store.require(waiting["userId"], waiting["jobId"]).status is JobStatus.WAITING
    StreamFeed(stack.table_name).deliver()
    assert call("GET", f"/queues/{QUEUE}")[1]["data"]["liveStats"]["failed"] == 0


def test_bulk_removal_leaves_a_job_that_changed_since_it_was_read(stack: Stack, target: TargetServer) -> None:
    job = fail(stack)
    ddb = clients.client("dynamodb")

    def retried_meanwhile(**_: Any) -> None:
        ddb.meta.events.unregister("before-call.dynamodb.DeleteItem", retried_meanwhile)
        job_service().retry(job["jobId"], Identity("alice"))  # the owner's retry lands first

    ddb.meta.events.register("before-call.dynamodb.DeleteItem", retried_meanwhile)
    try:
        status, body = call("DELETE", f"/queues/{QUEUE}?status=failed")
    finally:
        ddb.meta.events.unregister("before-call.dynamodb.DeleteItem", retried_meanwhile)

    assert status == 200 and body["data"]["removed"] == []
    assert body["data"]["notRemoved"] == [{"jobId": job["jobId"], "reason": "the job changed meanwhile; look again"}]
    assert stack.store.require(job["userId"], job["jobId"]).status is JobStatus.WAITING


def test_bulk_removal_is_for_admins_and_needs_ids_or_a_status(stack: Stack, target: TargetServer) -> None:
    assert call("DELETE", f"/queues/{QUEUE}?status=failed", claims=user("alice"))[0] == 403
    assert call("DELETE", f"/queues/{QUEUE}")[0] == 400
    assert call("DELETE", f"/queues/{QUEUE}?status=active")[0] == 400
    assert call("DELETE", f"/queues/{QUEUE}?jobIds=bad id!")[0] == 400
    assert call("DELETE", "/queues/nope?status=failed")[0] == 404
