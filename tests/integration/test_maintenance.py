"""The HealthFunction and CleanupFunction on their rules (every 2 s here), through the local stack."""

from __future__ import annotations

import time
import uuid

import pytest

from shared.clock import iso, now_ms
from shared.models import AttemptRecord, Job
from shared.status import JobStatus
from tests.integration.conftest import LocalStackProcess, wait_for_status
from tests.integration.local_control import put_job
from tests.target_server import TargetServer

pytestmark = pytest.mark.integration
MINUTE = 60_000


@pytest.fixture
def echo(local_stack: LocalStackProcess, target: TargetServer) -> str:
    with local_stack.client("root", admin=True) as admin:
        response = admin.put("/queues/email-sending/processors/echo", json={"kind": "http", "url": f"{target.url}/ok", "timeoutSeconds": 5})
        assert response.status_code == 200, response.text
    return "echo"


def job(status: JobStatus, *, queue: str = "email-sending", job_type: str = "echo", created_ms: int, **fields: object) -> Job:
    values: dict = {
        "job_id": f"it-{uuid.uuid4().hex[:12]}",
        "queue": queue,
        "type": job_type,
        "user_id": "alice",
        "status": status,
        "data": {"n": 3},
        "created_at": iso(created_ms),
        "updated_at": iso(fields.pop("updated_ms", created_ms)),  # type: ignore[arg-type]
    }
    values.update(fields)
    return Job.model_validate(values)


def test_a_stalled_job_is_recovered(local_stack: LocalStackProcess, target: TargetServer, echo: str) -> None:
    # Its consumer died a minute ago in attempt 1: the lease ran out, the message is still invisible.
    started = now_ms() - 2 * MINUTE
    stalled = job(JobStatus.ACTIVE, created_ms=started, attempts=1, max_attempts=3, lease_until=now_ms() - MINUTE,
                  lease_token="dead-worker", started_at=iso(started), history=[AttemptRecord(attempt=1, started_at=iso(started))])
    put_job(local_stack, stalled)

    with local_stack.client("alice") as alice:
        done = wait_for_status(alice, stalled.job_id, {"completed", "failed"}, timeout=20)

    assert done["status"] == "completed" and done["attempts"] == 2
    assert [h["outcome"] for h in done["history"]] == ["stalled", "completed"]


def test_an_orphaned_job_is_enqueued(local_stack: LocalStackProcess, target: TargetServer, echo: str) -> None:
    # Stored ten minutes ago; the API died before it sent the message.
    orphan = job(JobStatus.WAITING, created_ms=now_ms() - 10 * MINUTE)
    put_job(local_stack, orphan)

    with local_stack.client("alice") as alice:
        done = wait_for_status(alice, orphan.job_id, {"completed", "failed"}, timeout=20)

    assert done["status"] == "completed" and len(target.calls_for(orphan.job_id)) == 1


def test_retention_removes_what_it_should_and_keeps_the_newest_n(local_stack: LocalStackProcess) -> None:
    queue = "report-generation"
    now = now_ms()
    completed = [job(JobStatus.COMPLETED, queue=queue, job_type="generate-report", created_ms=now - (10 - i) * MINUTE,
                     completed_at=iso(now - (10 - i) * MINUTE + 1000)) for i in range(5)]
    old_failure = job(JobStatus.FAILED, queue=queue, job_type="generate-report", created_ms=now - 3 * 86_400_000,
                      failed_at=iso(now - 3 * 86_400_000 + 1000), error="boom")
    new_failure = job(JobStatus.FAILED, queue=queue, job_type="generate-report", created_ms=now - MINUTE, failed_at=iso(now - MINUTE), error="boom")
    for item in [*completed, old_failure, new_failure]:
        put_job(local_stack, item)

    with local_stack.client("root", admin=True) as admin:
        before = admin.get(f"/queues/{queue}").json()["data"]["configuration"]
        # Jobs other tests completed on this queue are newer than these: keep them and the newest 2 of ours.
        others = admin.get("/jobs", params={"queue": queue, "status": "completed", "limit": 100}).json()["data"]["jobs"]
        newer = sum(1 for j in others if j["jobId"] not in {c.job_id for c in completed})
        policy = {"removeOnComplete": {"maxCount": newer + 2}, "removeOnFail": {"maxAgeSeconds": 86400}}
        assert admin.patch(f"/queues/{queue}", json=policy).status_code == 200
        try:
            gone = [j.job_id for j in completed[:3]] + [old_failure.job_id]
            kept = [j.job_id for j in completed[3:]] + [new_failure.job_id]
            wait_until(lambda: all(admin.get(f"/jobs/{job_id}", params={"userId": "alice"}).status_code == 404 for job_id in gone), timeout=60)
            assert all(admin.get(f"/jobs/{job_id}", params={"userId": "alice"}).status_code == 200 for job_id in kept)
        finally:
            restore = {"retention": before["retention"]}
            assert admin.patch(f"/queues/{queue}", json=restore).status_code == 200


def wait_until(predicate: object, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def test_health_detailed_shows_what_the_health_function_found(local_stack: LocalStackProcess) -> None:
    with local_stack.client("root", admin=True) as admin:

        def both_reports_exist() -> bool:  # the rules run every 2 s: the first runs may still be ahead
            maintenance = admin.get("/health/detailed").json().get("data", {}).get("maintenance") or {}
            return bool((maintenance.get("health") or {}).get("ranAt") and (maintenance.get("cleanup") or {}).get("ranAt"))

        wait_until(both_reports_exist, timeout=30)
        response = admin.get("/health/detailed")
    with local_stack.client("alice") as alice:
        forbidden = alice.get("/health/detailed")

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert {"email-sending", "report-generation", "video-processing"} <= set(data["queues"])
    assert all(c["status"] == "up" for c in data["checks"].values())
    assert data["maintenance"]["health"]["ranAt"] and data["maintenance"]["cleanup"]["ranAt"]
    assert forbidden.status_code == 403
