"""The job lifecycle through the local stack, over HTTP, as a client sees it."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.integration.conftest import LocalStackProcess, wait_for_status
from tests.target_server import TargetServer

pytestmark = pytest.mark.integration


def register(stack: LocalStackProcess, job_type: str, url: str) -> None:
    with stack.client("root", admin=True) as admin:
        response = admin.put(f"/queues/email-sending/processors/{job_type}", json={"kind": "http", "url": url, "timeoutSeconds": 5})
        assert response.status_code == 200, response.text


def create(client: httpx.Client, job_type: str, **options: object) -> str:
    response = client.post("/jobs", json={"queue": "email-sending", "type": job_type, "data": {"k": "v"}, "options": options})
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["jobId"])


def test_a_job_reaches_completed(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "echo", f"{target.url}/ok")
    with local_stack.client("alice") as alice:
        job_id = create(alice, "echo")
        job = wait_for_status(alice, job_id, {"completed", "failed"})

    assert job["status"] == "completed"
    assert job["result"] == {"echo": {"k": "v"}, "attempt": 1}
    assert job["attempts"] == 1 and job["processingTime"] is not None


def test_a_target_failing_twice_completes_on_attempt_3_after_the_backoff(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "flaky", f"{target.url}/fail-times/2")
    with local_stack.client("alice") as alice:
        job_id = create(alice, "flaky", attempts=3, backoff={"type": "fixed", "delay": 1000})
        job = wait_for_status(alice, job_id, {"completed", "failed"})

    assert job["status"] == "completed" and job["attempts"] == 3
    assert job["result"] == {"succeededOnAttempt": 3}
    assert [h["outcome"] for h in job["history"]] == ["retrying", "retrying", "completed"]
    calls = target.calls_for(job_id)
    assert [c.attempt for c in calls] == [1, 2, 3]
    gaps = [later.at - earlier.at for earlier, later in zip(calls, calls[1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps), f"retried before the 1 s backoff: {gaps}"


def test_a_target_always_failing_ends_failed_with_its_message_in_the_dlq(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "broken", f"{target.url}/always/500")
    with local_stack.client("alice") as alice:
        job_id = create(alice, "broken", attempts=2, backoff={"type": "fixed", "delay": 0})
        job = wait_for_status(alice, job_id, {"completed", "failed"})

    assert job["status"] == "failed" and job["attempts"] == 2
    assert "500" in job["error"]
    assert job_id in [json.loads(body)["jobId"] for body in local_stack.dlq_bodies("email-sending")]


def test_a_user_cannot_read_another_users_job(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "echo", f"{target.url}/ok")
    with local_stack.client("alice") as alice, local_stack.client("bob") as bob, local_stack.client("root", admin=True) as admin:
        job_id = create(alice, "echo")
        response = bob.get(f"/jobs/{job_id}")
        assert response.status_code == 404
        assert response.json() == {"success": False, "error": {"code": "NOT_FOUND", "message": f"job {job_id} not found"}}
        assert admin.get(f"/jobs/{job_id}", params={"userId": "alice"}).json()["data"]["userId"] == "alice"


def test_without_a_valid_token_api_gateway_answers_401(local_stack: LocalStackProcess) -> None:
    assert httpx.get(f"{local_stack.api_url}/jobs/{uuid.uuid4()}").status_code == 401
    bad = httpx.get(f"{local_stack.api_url}/jobs/x", headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 401
    assert httpx.get(f"{local_stack.api_url}/health").json()["status"] == "healthy"


def test_the_example_email_processor_sends_through_ses(local_stack: LocalStackProcess) -> None:
    with local_stack.client("alice") as alice:
        response = alice.post("/jobs", json={"queue": "email-sending", "type": "send-email", "data": {"to": "bob@example.com", "subject": "Hi", "body": "Hello"}})
        assert response.status_code == 201
        job = wait_for_status(alice, response.json()["data"]["jobId"], {"completed", "failed"})
    assert job["status"] == "completed" and job["result"]["messageId"]


def test_the_example_video_processor_reports_progress(local_stack: LocalStackProcess) -> None:
    with local_stack.client("alice") as alice:
        response = alice.post("/jobs", json={"queue": "video-processing", "type": "transcode-video", "data": {"videoUrl": "s3://v/1", "formats": ["480p", "720p"]}})
        job = wait_for_status(alice, response.json()["data"]["jobId"], {"completed", "failed"})
    assert job["status"] == "completed" and job["progress"] == 100 and job["progressMessage"] == "transcoded 720p"
