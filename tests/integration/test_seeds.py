"""The seeds' requests, copied as they print them, sent to the local stack over HTTP: the seeds' answers.

One test per seed (../shared/seeds/); the unit tests tests/unit/test_seed_00N.py go through every
route in detail. The seeds' own job types are HTTP targets here, registered on jobq's queues.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.integration.conftest import LocalStackProcess, wait_for_status
from tests.target_server import TargetServer

pytestmark = pytest.mark.integration

QUEUE = "report-generation"


def register(admin: httpx.Client, queue: str, job_type: str, url: str, **extra: Any) -> None:
    response = admin.put(f"/queues/{queue}/processors/{job_type}", json={"kind": "http", "url": url, "timeoutSeconds": 10, **extra})
    assert response.status_code == 200, response.text


def test_seed_000_jobs_queues_scheduler_and_health(local_stack: LocalStackProcess, target: TargetServer) -> None:
    with local_stack.client("test-user-123") as user, local_stack.client("root", admin=True) as admin:
        register(admin, QUEUE, "discover-with-instagram", f"{target.url}/ok")
        created = user.post("/jobs", json={
            "queue": QUEUE,
            "type": "discover-with-instagram",
            "data": {"businessName": "Downtown Restaurant", "location": "New York, NY", "businessType": "restaurant", "radius": 50},
            "options": {"priority": 5, "attempts": 3, "delay": 0},
        })
        assert created.status_code == 201, created.text
        job = created.json()["data"]
        assert created.json()["success"] is True and {"jobId", "queue", "type", "status", "createdAt"} <= set(job)
        done = wait_for_status(user, job["jobId"], {"completed"})
        assert {"progress", "data", "result", "attempts", "maxAttempts", "processingTime", "completedAt"} <= set(done)
        assert done["priority"] == 5 and done["maxAttempts"] == 3

        page = user.get("/jobs/user/test-user-123?page=1&limit=20&status=completed&queue=" + QUEUE).json()["data"]
        assert job["jobId"] in [j["jobId"] for j in page["jobs"]] and page["page"] == 1

        queues = admin.get("/queues").json()["data"]
        mine = next(q for q in queues if q["name"] == QUEUE)
        assert {"description", "isActive", "liveStats", "healthStatus", "processingRate", "averageProcessingTime"} <= set(mine)
        assert admin.get(f"/queues/{QUEUE}/jobs?status=completed&page=1&limit=50").status_code == 200
        assert admin.get(f"/queues/{QUEUE}/metrics?hours=24").status_code == 200
        clean = admin.post(f"/queues/{QUEUE}/clean", json={"olderThan": 86400000, "status": "completed"})
        assert clean.status_code == 200 and "removed" in clean.json()["data"]

        delayed = user.post("/scheduler/delayed", json={
            "queue": QUEUE, "type": "discover-with-instagram", "data": {"videoId": "video123", "analysisType": "comprehensive"}, "delayMs": 300000
        })
        assert delayed.status_code == 201 and delayed.json()["data"]["status"] == "delayed"
        register(admin, QUEUE, "cleanup-expired-jobs", f"{target.url}/ok")
        repeating = admin.post("/scheduler/repeating", json={
            "queue": QUEUE, "type": "cleanup-expired-jobs", "data": {"olderThanDays": 30},
            "cronExpression": "0 2 * * *", "description": "Daily cleanup of expired jobs",
        })
        assert repeating.status_code in (200, 201), repeating.text
        assert admin.post("/scheduler/jobs/cleanup-expired-jobs/trigger").status_code in (200, 201)
        stats = admin.get("/scheduler/stats").json()["data"]
        assert "cleanup-expired-jobs" in stats["scheduledJobs"] and stats["scheduledJobsCount"] >= 1
        assert {"queueHealth", "uptime", "lastHealthCheck"} <= set(stats)
        assert admin.get("/scheduler/health").status_code == 200 and admin.get("/scheduler/metrics").status_code == 200

        health = user.get("/health").json()
        assert health["status"] == "healthy" and set(health["checks"]) >= {"database", "redis", "queues", "memory"}
        assert admin.get("/health/detailed").status_code == 200


def test_seed_000_cancel_of_a_job_an_http_target_is_working_on(local_stack: LocalStackProcess, target: TargetServer) -> None:
    with local_stack.client("test-user-123") as user, local_stack.client("root", admin=True) as admin:
        register(admin, QUEUE, "slow-analysis", f"{target.url}/slow/8", cancelUrl=f"{target.url}/ok")
        job_id = user.post("/jobs", json={"queue": QUEUE, "type": "slow-analysis", "data": {}}).json()["data"]["jobId"]
        deadline = time.monotonic() + 15
        while not target.calls_for(job_id):
            assert time.monotonic() < deadline, "the target was never called"
            time.sleep(0.05)
        asked = time.monotonic()
        assert user.delete(f"/jobs/{job_id}").status_code == 202
        job = wait_for_status(user, job_id, {"cancelled", "completed"}, timeout=10)
        assert job["status"] == "cancelled" and time.monotonic() - asked < 5  # not the target's 8 s
        assert [c.payload["event"] for c in target.calls_for(job_id) if "event" in c.payload] == ["cancelled"]


def test_seed_001_priorities_own_jobs_and_the_dashboard(local_stack: LocalStackProcess, target: TargetServer) -> None:
    with local_stack.client("user-id") as user, local_stack.client("root", admin=True) as admin:
        register(admin, QUEUE, "process-video", f"{target.url}/ok")
        job = user.post("/api/jobs", json={"queue": QUEUE, "type": "process-video", "data": {"contentId": "content-id"}, "options": {"priority": -5}})
        assert job.status_code == 201 and job.json()["data"]["priority"] == -5 and job.json()["data"]["priorityName"] == "low"
        job_id = job.json()["data"]["jobId"]
        assert job_id in [j["jobId"] for j in user.get("/api/jobs/user").json()["data"]["jobs"]]
        # The whole-stack summary reads every queue (moto answers each Query by walking the table): under a
        # loaded CI it can pass the client's default 10 s; what is checked here is its shape.
        board = admin.get("/api/jobs/dashboard", timeout=60).json()["data"]
        assert {"queues", "recentFailures", "activeJobs", "upcomingSchedules"} <= set(board)


def test_seed_002_named_priority_and_dead_letters_revived_low_once(local_stack: LocalStackProcess, target: TargetServer) -> None:
    with local_stack.client("customer-123") as user, local_stack.client("root", admin=True) as admin:
        register(admin, QUEUE, "scrape-website", f"{target.url}/always/500", failOn=[500])
        body = {"queue": QUEUE, "type": "scrape-website", "data": {"url": "https://example.com", "customerId": "customer-123"},
                "options": {"priority": "high", "attempts": 3, "backoff": {"type": "exponential"}}}
        job = user.post("/jobs", json=body).json()["data"]
        assert job["priority"] == 5
        failed = wait_for_status(user, job["jobId"], {"failed"})
        assert failed["attempts"] == 1  # failOn: 500 is not retried for this type
        revived = admin.post(f"/queues/{QUEUE}/dead-letters/redrive", json={"jobIds": [job["jobId"]], "priority": "low", "attempts": 1})
        assert revived.status_code == 200 and job["jobId"] in revived.json()["data"]["redriven"]
        again = wait_for_status(user, job["jobId"], {"failed"})
        assert again["priority"] == -5 and again["maxAttempts"] == 1


def test_seed_003_a_registered_service_method_runs_as_a_job(local_stack: LocalStackProcess) -> None:
    with local_stack.client("user_456") as user:
        created = user.post("/jobs", json={"service": "TaskUtils", "method": "calculateSum", "args": [[1, 2, 3]]})
        assert created.status_code == 201, created.text
        assert wait_for_status(user, created.json()["data"]["jobId"], {"completed"})["result"] == 6
        unknown = user.post("/jobs", json={"service": "BusinessFinderService", "method": "searchBusinesses", "args": []})
        assert unknown.status_code == 400 and "registered: ExportService: exportResults" in unknown.json()["error"]["message"]


def test_seed_004_typed_jobs_queue_actions_and_bulk_removal(local_stack: LocalStackProcess, target: TargetServer) -> None:
    schema = {"type": "object", "required": ["companyId", "companyName"], "properties": {"companyId": {"type": "string"}}}
    with local_stack.client("alice") as user, local_stack.client("root", admin=True) as admin:
        register(admin, QUEUE, "seed-research", f"{target.url}/ok", dataSchema=schema)
        research = {"type": "seed-research", "data": {"companyId": "comp_123", "companyName": "Acme Corp", "domain": "acme.com", "priority": "high"}}
        job = user.post("/api/jobs", json=research)
        assert job.status_code == 201 and job.json()["data"]["queue"] == QUEUE and job.json()["data"]["priority"] == 5
        bad = user.post("/api/jobs", json={"type": "seed-research", "data": {"companyId": 123}})
        assert bad.status_code == 400 and "'companyName' is a required property" in bad.json()["error"]["message"]

        assert admin.post(f"/api/queues/{QUEUE}", json={"action": "pause"}).status_code == 200
        paused = user.post("/api/jobs", json=research).json()["data"]["jobId"]
        assert admin.post(f"/api/queues/{QUEUE}", json={"action": "resume"}).status_code == 200
        wait_for_status(user, paused, {"completed"})
        clean = admin.post(f"/api/queues/{QUEUE}", json={"action": "clean", "options": {"grace": 86400000, "limit": 100, "type": "completed"}})
        assert clean.status_code == 200
        listing = admin.get(f"/api/queues/{QUEUE}?includeJobs=true&limit=20&status=completed").json()["data"]
        assert paused in [j["jobId"] for j in listing["jobs"]]

        removed = user.delete(f"/api/jobs/{paused}?action=remove")
        assert removed.status_code == 200 and user.get(f"/jobs/{paused}").status_code == 404
        first = user.post("/jobs", json=research).json()["data"]["jobId"]
        wait_for_status(user, first, {"completed"})
        bulk = admin.delete(f"/api/queues/{QUEUE}?jobIds=alice/{first}")
        assert bulk.status_code == 200 and [r["jobId"] for r in bulk.json()["data"]["removed"]] == [first]
