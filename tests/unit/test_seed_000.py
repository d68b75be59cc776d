"""Seed 000 (the canonical dialect): its requests, copied as it prints them, get its answers.

The seed's queues (business-discovery, video-analysis, cleanup, ...) are its own domain; here
its job types are HTTP targets on jobq's example queues, and every body is the seed's otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from api.main import handler
from api.routes import health
from functions.consumer.handler import handler as consumer
from shared.adapters import clients, policies
from shared.clock import now_ms, parse_iso
from tests.target_server import TargetServer
from tests.unit.api_events import admin, http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event
from tests.unit.scheduling import Scheduling, scheduling_fixture  # noqa: F401 (the fixture)
from tests.unit.stream_feed import StreamFeed

QUEUE = "report-generation"

CREATE_JOB = {  # seed 000, "Create Job", with jobq's queue
    "queue": QUEUE,
    "type": "discover-with-instagram",
    "data": {"businessName": "Downtown Restaurant", "location": "New York, NY", "businessType": "restaurant", "radius": 50},
    "options": {"priority": 5, "attempts": 3, "delay": 0},
}


def call(method: str, path: str, *, body: Any = None, claims: dict[str, str] | None = None) -> tuple[int, Any]:
    route, _, query = path.partition("?")
    response = handler(http_event(method, route, body=body, claims=claims, query=query), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def as_admin(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return call(method, path, body=body, claims=admin())


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    policies.reset_cache()
    health._cached = None
    yield
    policies.reset_cache()


@pytest.fixture
def target(stack: Stack) -> Iterator[TargetServer]:
    """The seed's job types, each POSTed to a local target that answers 200."""
    with TargetServer() as server:
        for job_type in ("discover-with-instagram", "discover-competitors", "analyze-video-content", "cleanup-expired-jobs"):
            status, out = as_admin("PUT", f"/queues/{QUEUE}/processors/{job_type}", {"kind": "http", "url": f"{server.url}/ok", "timeoutSeconds": 5})
            assert status == 200, out
        yield server


def run_consumer(stack: Stack, queue: str = QUEUE) -> None:
    while messages := stack.receive(queue):
        consumer(sqs_event(stack, queue, messages), FakeLambdaContext())


# ---- jobs ------------------------------------------------------------------------------------------
def test_create_job_answers_as_the_seed_prints(target: TargetServer) -> None:
    status, body = call("POST", "/jobs", body=CREATE_JOB, claims=user("test-user-123"))

    assert status == 201 and body["success"] is True
    job = body["data"]
    assert {"jobId", "queue", "type", "status", "createdAt"} <= set(job)
    assert (job["queue"], job["type"], job["status"]) == (QUEUE, "discover-with-instagram", "waiting")
    assert job["priority"] == 5 and job["priorityName"] == "high" and job["maxAttempts"] == 3 and job["delay"] == 0


def test_get_job_status_has_the_seed_fields_once_it_ran(stack: Stack, target: TargetServer) -> None:
    created = call("POST", "/jobs", body=CREATE_JOB, claims=user("test-user-123"))[1]["data"]
    run_consumer(stack)

    status, body = call("GET", f"/jobs/{created['jobId']}", claims=user("test-user-123"))

    job = body["data"]
    assert status == 200 and job["status"] == "completed"
    for field in ("jobId", "queue", "type", "status", "progress", "data", "result", "attempts", "maxAttempts", "processingTime", "createdAt", "completedAt"):
        assert field in job, field
    assert job["data"]["businessName"] == "Downtown Restaurant" and job["attempts"] == 1 and job["maxAttempts"] == 3
    assert job["result"] == {"echo": CREATE_JOB["data"], "attempt": 1}  # the target's answer


def test_user_jobs_page_and_limit_as_well_as_cursors(target: TargetServer) -> None:
    ids = [call("POST", "/jobs", body=CREATE_JOB, claims=user("u1"))[1]["data"]["jobId"] for _ in range(5)]
    newest_first = ids[::-1]

    first = call("GET", "/jobs/user/u1?page=1&limit=2", claims=user("u1"))[1]["data"]
    second = call("GET", "/jobs/user/u1?page=2&limit=2", claims=user("u1"))[1]["data"]
    third = call("GET", f"/jobs/user/u1?page=3&limit=2&status=waiting&queue={QUEUE}", claims=user("u1"))[1]["data"]

    assert [j["jobId"] for j in first["jobs"]] == newest_first[:2] and first["page"] == 1 and first["hasMore"] is True
    assert [j["jobId"] for j in second["jobs"]] == newest_first[2:4]
    assert [j["jobId"] for j in third["jobs"]] == newest_first[4:]
    by_cursor = call("GET", f"/jobs/user/u1?limit=2&cursor={first['nextCursor']}", claims=user("u1"))[1]["data"]
    assert [j["jobId"] for j in by_cursor["jobs"]] == newest_first[2:4]
    status, body = call("GET", f"/jobs/user/u1?page=2&cursor={first['nextCursor']}", claims=user("u1"))
    assert status == 400 and "page or cursor" in body["error"]["message"]
    assert call("GET", "/jobs/user/u1?page=200&limit=20", claims=user("u1"))[0] == 400  # too deep: follow the cursor


def test_cancel_then_retry_as_the_seed_routes_say(target: TargetServer) -> None:
    job_id = call("POST", "/jobs", body=CREATE_JOB, claims=user("u1"))[1]["data"]["jobId"]

    status, cancelled = call("DELETE", f"/jobs/{job_id}", claims=user("u1"))
    assert status == 200 and cancelled["data"]["status"] == "cancelled"
    status, retried = call("POST", f"/jobs/{job_id}/retry", claims=user("u1"))
    assert status == 200 and retried["data"]["status"] == "waiting"


# ---- queues -----------------------------------------------------------------------------------------
def test_get_all_queues_data_is_the_list_itself_with_description(stack: Stack, target: TargetServer) -> None:
    call("POST", "/jobs", body=CREATE_JOB, claims=user("u1"))
    StreamFeed(stack.table_name).deliver()

    status, body = as_admin("GET", "/queues")

    assert status == 200 and body["success"] is True and isinstance(body["data"], list)
    queue = {q["name"]: q for q in body["data"]}[QUEUE]
    assert queue["description"].startswith("CSV reports")
    for field in ("name", "description", "isActive", "liveStats", "healthStatus", "processingRate", "averageProcessingTime", "lastProcessedAt"):
        assert field in queue, field
    assert {"waiting", "active", "completed", "failed", "total"} <= set(queue["liveStats"])
    assert queue["liveStats"]["waiting"] == 1 and queue["liveStats"]["total"] == 1 and queue["isActive"] is True


def test_queue_details_carry_the_seed_queue_model(stack: Stack, target: TargetServer) -> None:
    status, body = as_admin("GET", f"/queues/{QUEUE}")

    queue = body["data"]
    assert status == 200
    for field in ("totalJobs", "completedJobs", "failedJobs", "activeJobs", "waitingJobs", "delayedJobs", "lastHealthCheck", "healthStatus"):
        assert field in queue, field
    config = queue["configuration"]
    assert config["concurrency"] == 5 and config["retryAttempts"] == 3 and config["retryDelay"] == 1000
    assert config["removeOnComplete"] == 10_000 and config["removeOnFail"] == 10_000  # keep N, as the seed's numbers


def test_queue_jobs_pause_resume_clean_and_metrics(stack: Stack, target: TargetServer) -> None:
    call("POST", "/jobs", body=CREATE_JOB, claims=user("u1"))

    status, jobs = as_admin("GET", f"/queues/{QUEUE}/jobs?status=waiting&page=1&limit=50")
    assert status == 200 and len(jobs["data"]["jobs"]) == 1
    assert as_admin("GET", f"/queues/{QUEUE}/jobs?status=failed&page=1&limit=50")[1]["data"]["jobs"] == []
    status, cleaned = as_admin("POST", f"/queues/{QUEUE}/clean", {"olderThan": 86400000, "status": "completed"})
    assert status == 200 and cleaned["data"]["removed"] == 0
    status, metrics = as_admin("GET", f"/queues/{QUEUE}/metrics?hours=24")
    assert status == 200 and metrics["data"]["hours"] == 24


def test_patch_takes_the_configuration_get_returns(stack: Stack, target: TargetServer) -> None:
    typed = {"kind": "http", "url": f"{target.url}/ok", "timeoutSeconds": 5, "dataSchema": {"type": "object"}, "failOn": [503], "cancelUrl": f"{target.url}/ok"}
    assert as_admin("PUT", f"/queues/{QUEUE}/processors/typed", typed)[0] == 200
    config = as_admin("GET", f"/queues/{QUEUE}")[1]["data"]["configuration"]

    status, same = as_admin("PATCH", f"/queues/{QUEUE}", config)  # read-modify-write without a change
    assert status == 200, same
    status, changed = as_admin("PATCH", f"/queues/{QUEUE}", {**config, "retryAttempts": 7, "retryDelay": 2500, "removeOnFail": 50})
    assert status == 200 and changed["data"]["defaultAttempts"] == 7 and changed["data"]["defaultBackoff"]["delay"] == 2500
    assert changed["data"]["retention"]["removeOnFail"]["maxCount"] == 50
    status, changed = as_admin("PATCH", f"/queues/{QUEUE}", {**changed["data"], "defaultAttempts": 4})  # jobq's name this time
    assert status == 200 and changed["data"]["retryAttempts"] == 4
    status, refused = as_admin("PATCH", f"/queues/{QUEUE}", {**changed["data"], "defaultAttempts": 5, "retryAttempts": 6})
    assert status == 400 and "retryAttempts and defaultAttempts are one setting" in refused["error"]["message"]
    after = as_admin("GET", f"/queues/{QUEUE}")[1]["data"]["configuration"]
    assert after["processors"] == config["processors"] and after["processors"]["http"]["typed"]["failOn"] == [503]
    # Concurrency is a runtime setting now (issue 13: the event source mapping changes at once).
    status, changed = as_admin("PATCH", f"/queues/{QUEUE}", {**config, "concurrency": config["concurrency"] + 1})
    assert status == 200, changed
    assert as_admin("GET", f"/queues/{QUEUE}")[1]["data"]["configuration"]["concurrency"] == config["concurrency"] + 1


UNKNOWN_QUEUE_ROUTES = [
    ("GET", "/queues/nope", None),
    ("POST", "/queues/nope", {"action": "pause"}),
    ("DELETE", "/queues/nope?jobIds=a", None),
    ("PATCH", "/queues/nope", {"retryAttempts": 2}),
    ("GET", "/queues/nope/jobs", None),
    ("POST", "/queues/nope/pause", None),
    ("POST", "/queues/nope/resume", None),
    ("POST", "/queues/nope/clean", {"olderThan": 0, "status": "completed"}),
    ("GET", "/queues/nope/metrics", None),
    ("GET", "/queues/nope/dead-letters", None),
    ("POST", "/queues/nope/dead-letters/redrive", {}),
    ("DELETE", "/queues/nope/dead-letters", None),
    ("PUT", "/queues/nope/processors/x", {"url": "http://127.0.0.1:9/x"}),
]


def test_an_unknown_queue_is_a_404_on_every_queue_route(stack: Stack) -> None:
    for method, path, body in UNKNOWN_QUEUE_ROUTES:
        status, out = as_admin(method, path, body)
        assert status == 404 and "queue 'nope' not found" in out["error"]["message"], (method, path, out)


# ---- scheduler -------------------------------------------------------------------------------------------
def test_schedule_delayed_job_with_delay_ms(scheduling: Scheduling, target: TargetServer) -> None:
    body = {"queue": QUEUE, "type": "analyze-video-content", "data": {"videoId": "video123", "analysisType": "comprehensive"}, "delayMs": 300000}

    before = now_ms()
    status, out = call("POST", "/scheduler/delayed", body=body, claims=user("u1"))

    assert status == 201 and out["data"]["status"] == "delayed" and out["data"]["delay"] == 300000
    assert before + 300_000 <= parse_iso(out["data"]["runAt"]) <= now_ms() + 300_000
    status, both = call("POST", "/scheduler/delayed", body={**body, "delay": 1000}, claims=user("u1"))
    assert status == 400 and "delayMs or delay" in both["error"]["message"]


REPEATING = {  # seed 000, "Schedule Repeating Job", with jobq's queue
    "queue": QUEUE,
    "type": "cleanup-expired-jobs",
    "data": {"olderThanDays": 30},
    "cronExpression": "0 2 * * *",
    "description": "Daily cleanup of expired jobs",
}


def test_repeating_job_without_a_name_is_named_by_its_type_and_triggered_by_it(scheduling: Scheduling, target: TargetServer) -> None:
    status, created = as_admin("POST", "/scheduler/repeating", REPEATING)

    assert status == 201, created
    schedule = created["data"]
    assert schedule["name"] == "cleanup-expired-jobs" and schedule["expression"] == "cron(0 2 * * ? *)"
    assert schedule["description"] == "Daily cleanup of expired jobs"
    status, job = as_admin("POST", "/scheduler/jobs/cleanup-expired-jobs/trigger")
    assert status == 201 and job["data"]["type"] == "cleanup-expired-jobs" and job["data"]["status"] == "waiting"


def test_the_same_repeating_job_again_is_the_same_schedule_and_another_under_its_name_a_409(
    scheduling: Scheduling, target: TargetServer
) -> None:
    assert as_admin("POST", "/scheduler/repeating", REPEATING)[0] == 201

    status, again = as_admin("POST", "/scheduler/repeating", REPEATING)
    assert status == 200 and again["data"]["name"] == "cleanup-expired-jobs"
    status, other = as_admin("POST", "/scheduler/repeating", {**REPEATING, "cronExpression": "0 3 * * *"})
    assert status == 409 and "give another name" in other["error"]["message"]
    status, named = as_admin("POST", "/scheduler/repeating", {**REPEATING, "cronExpression": "0 3 * * *", "name": "cleanup-at-3"})
    assert status == 201 and named["data"]["name"] == "cleanup-at-3"
    assert call("POST", "/scheduler/repeating", body=REPEATING, claims=user("u1"))[0] == 403  # admin only


def test_scheduler_stats_as_the_seed_prints(scheduling: Scheduling, target: TargetServer) -> None:
    as_admin("POST", "/scheduler/repeating", REPEATING)

    status, body = as_admin("GET", "/scheduler/stats")

    stats = body["data"]
    assert status == 200
    assert stats["scheduledJobsCount"] == 1 and stats["scheduledJobs"] == ["cleanup-expired-jobs"]
    health_lines = {q["name"]: q for q in stats["queueHealth"]}
    assert set(health_lines) == {"email-sending", "report-generation", "video-processing"}
    assert set(health_lines[QUEUE]) == {"name", "healthStatus", "processingRate", "totalJobs"}
    assert isinstance(stats["uptime"], int) and "lastHealthCheck" in stats


def test_scheduler_health_and_metrics_answer(scheduling: Scheduling) -> None:
    status, health = as_admin("GET", "/scheduler/health")  # seed 000's "Queue Health Summary"
    assert status == 200 and [q["name"] for q in health["data"]["queueHealth"]] == ["email-sending", "report-generation", "video-processing"]
    assert {"healthStatus", "processingRate", "totalJobs"} <= set(health["data"]["queueHealth"][0])
    status, metrics = as_admin("GET", "/scheduler/metrics")
    assert status == 200 and metrics["data"]["hours"] == 24


# ---- health ------------------------------------------------------------------------------------------------
def test_system_health_is_unwrapped_with_the_seed_checks(stack: Stack) -> None:
    status, body = call("GET", "/health")

    assert status == 200
    assert {"status", "timestamp", "uptime", "checks", "details"} <= set(body) and "success" not in body
    assert body["status"] == "healthy"
    assert {"database", "redis", "queues", "memory"} <= set(body["checks"]) and all(body["checks"].values())
    assert body["details"]["queues"] == 3
    memory = body["details"]["memory"]
    assert memory["heapUsed"] > 0 and memory["heapTotal"] >= memory["heapUsed"] and memory["usage"].endswith("%")


def test_system_health_is_503_when_the_database_is_down(stack: Stack) -> None:
    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "DescribeTable")

    clients.client("dynamodb").meta.events.register("before-call.dynamodb.DescribeTable", refuse)
    try:
        status, body = call("GET", "/health")
    finally:
        clients.client("dynamodb").meta.events.unregister("before-call.dynamodb.DescribeTable", refuse)
    assert status == 503 and body["status"] == "unhealthy" and body["checks"]["database"] is False
    assert body["checks"]["redis"] is True and body["details"]["probes"]["dynamodb"]["status"] == "down"


def test_detailed_health_is_for_admins(stack: Stack) -> None:
    assert call("GET", "/health/detailed", claims=user("u1"))[0] == 403
    assert as_admin("GET", "/health/detailed")[0] in (200, 503)


def test_cancelling_a_job_whose_http_target_is_working_stops_waiting_and_tells_the_target(stack: Stack) -> None:
    with TargetServer() as server:
        hook = {"kind": "http", "url": f"{server.url}/slow/6", "timeoutSeconds": 30, "cancelUrl": f"{server.url}/ok"}
        assert as_admin("PUT", f"/queues/{QUEUE}/processors/slow-report", hook)[0] == 200
        job_id = call("POST", "/jobs", body={**CREATE_JOB, "type": "slow-report"}, claims=user("u1"))[1]["data"]["jobId"]
        worker = threading.Thread(target=run_consumer, args=(stack,))
        worker.start()
        deadline = time.monotonic() + 5
        while not server.calls_for(job_id):  # the target is working on it
            assert time.monotonic() < deadline, "the target was never called"
            time.sleep(0.05)

        cancelled_at = time.monotonic()
        status, body = call("DELETE", f"/jobs/{job_id}", claims=user("u1"))
        worker.join(timeout=10)

        assert status == 202 and body["data"]["cancelRequested"] is True
        assert not worker.is_alive() and time.monotonic() - cancelled_at < 4  # not the target's 6 s
        job = call("GET", f"/jobs/{job_id}", claims=user("u1"))[1]["data"]
        assert job["status"] == "cancelled" and job["history"][-1]["outcome"] == "cancelled"
        notices = [c.payload for c in server.calls_for(job_id) if c.payload.get("event") == "cancelled"]
        assert notices == [{"jobId": job_id, "userId": "u1", "queue": QUEUE, "type": "slow-report", "event": "cancelled"}]
