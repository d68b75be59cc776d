"""The whole job API through the local stack: two users and an admin."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import LocalStackProcess, wait_for_status
from tests.integration.test_job_lifecycle import create, register
from tests.target_server import TargetServer

pytestmark = pytest.mark.integration


def video(client, formats: int, **options: object) -> str:  # type: ignore[no-untyped-def]
    body = {"queue": "video-processing", "type": "transcode-video", "data": {"videoUrl": "s3://v/1", "formats": [f"f{i}" for i in range(formats)]}, "options": options}
    response = client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["jobId"])


def test_listing_pages_filters_and_authorization(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "echo", f"{target.url}/ok")
    with local_stack.client("carol") as carol, local_stack.client("dave") as dave, local_stack.client("root", admin=True) as admin:
        ids = [create(carol, "echo") for _ in range(5)]
        for job_id in ids:
            wait_for_status(carol, job_id, {"completed"})
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = carol.get("/jobs/user/carol", params=params).json()["data"]
            seen += [j["jobId"] for j in page["jobs"]]
            cursor = page["nextCursor"]
            if not cursor:
                break
        assert seen == ids[::-1]
        assert len(carol.get("/jobs/user/carol", params={"status": "completed", "queue": "email-sending"}).json()["data"]["jobs"]) == 5
        assert carol.get("/jobs/user/carol", params={"status": "failed"}).json()["data"]["jobs"] == []
        assert dave.get("/jobs/user/carol").status_code == 403
        assert len(admin.get("/jobs/user/carol").json()["data"]["jobs"]) == 5
        assert dave.get("/jobs", params={"queue": "email-sending"}).status_code == 403
        queue_page = admin.get("/jobs", params={"queue": "email-sending", "status": "completed", "limit": 100}).json()["data"]
        assert set(ids) <= {j["jobId"] for j in queue_page["jobs"]}


def test_a_cancelled_delayed_job_is_never_processed(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "echo", f"{target.url}/ok")
    with local_stack.client("carol") as carol, local_stack.client("dave") as dave:
        job_id = create(carol, "echo", delay=1500)
        assert dave.delete(f"/jobs/{job_id}").status_code == 404
        response = carol.delete(f"/jobs/{job_id}")
        assert response.status_code == 200 and response.json()["data"]["status"] == "cancelled"
        time.sleep(2.5)  # past the delay: the message was delivered and acknowledged
        assert carol.get(f"/jobs/{job_id}").json()["data"]["status"] == "cancelled"
        assert target.calls_for(job_id) == []
        assert carol.delete(f"/jobs/{job_id}").status_code == 409


def test_an_active_job_is_cancelled_at_its_next_progress_report(local_stack: LocalStackProcess) -> None:
    with local_stack.client("carol") as carol:
        job_id = video(carol, 200)
        wait_for_status(carol, job_id, {"active"})
        response = carol.delete(f"/jobs/{job_id}")
        assert response.status_code == 202 and response.json()["data"]["cancelRequested"] is True
        job = wait_for_status(carol, job_id, {"cancelled", "completed"})
    assert job["status"] == "cancelled" and job["progress"] < 100
    assert job["history"][-1]["outcome"] == "cancelled"


def test_a_failed_job_is_retried_and_completes_keeping_its_history(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "once-broken", f"{target.url}/fail-times/1")
    with local_stack.client("carol") as carol, local_stack.client("dave") as dave:
        job_id = create(carol, "once-broken", attempts=1)
        assert wait_for_status(carol, job_id, {"failed", "completed"})["status"] == "failed"
        assert dave.post(f"/jobs/{job_id}/retry").status_code == 404
        response = carol.post(f"/jobs/{job_id}/retry")
        assert response.status_code == 200 and response.json()["data"]["status"] == "waiting"
        job = wait_for_status(carol, job_id, {"completed", "failed"})
        assert carol.post(f"/jobs/{job_id}/retry").status_code == 409
    assert job["status"] == "completed" and job["retries"] == 1
    assert [h["outcome"] for h in job["history"]] == ["failed", "completed"]


def test_progress_and_logs(local_stack: LocalStackProcess) -> None:
    with local_stack.client("carol") as carol:
        job_id = video(carol, 3)
        job = wait_for_status(carol, job_id, {"completed", "failed"})
        logs = carol.get(f"/jobs/{job_id}/logs", params={"limit": 2}).json()["data"]
        rest = carol.get(f"/jobs/{job_id}/logs", params={"cursor": logs["nextCursor"]}).json()["data"]
    assert job["progress"] == 100
    assert [line["message"] for line in logs["lines"] + rest["lines"]] == ["transcoded f0", "transcoded f1", "transcoded f2"]


def test_idempotency_key_job_id_and_deduplication(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "echo", f"{target.url}/ok")
    body = {"queue": "email-sending", "type": "echo", "data": {"order": 7}}
    with local_stack.client("carol") as carol, local_stack.client("dave") as dave:
        first = carol.post("/jobs", json=body, headers={"Idempotency-Key": "order-7"})
        again = carol.post("/jobs", json=body, headers={"Idempotency-Key": "order-7"})
        clash = carol.post("/jobs", json={**body, "data": {"order": 8}}, headers={"Idempotency-Key": "order-7"})
        assert (first.status_code, again.status_code, clash.status_code) == (201, 200, 409)
        assert again.json()["data"]["jobId"] == first.json()["data"]["jobId"]

        mine = carol.post("/jobs", json={**body, "options": {"jobId": "carol-order-9"}})
        same = carol.post("/jobs", json={**body, "options": {"jobId": "carol-order-9"}})
        theirs = dave.post("/jobs", json={**body, "options": {"jobId": "carol-order-9"}})
        assert (mine.status_code, same.status_code, theirs.status_code) == (201, 200, 201)  # dave's own carol-order-9
        assert theirs.json()["data"]["userId"] == "dave" and same.json()["data"]["createdAt"] == mine.json()["data"]["createdAt"]

        dedup = {**body, "options": {"deduplication": {"key": "digest", "ttlSeconds": 30}}}
        one, two = carol.post("/jobs", json=dedup), carol.post("/jobs", json=dedup)
        assert two.status_code == 200 and two.json()["data"]["jobId"] == one.json()["data"]["jobId"]


def test_bulk_and_limits(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "echo", f"{target.url}/ok")
    item = {"queue": "email-sending", "type": "echo", "data": {}}
    with local_stack.client("carol") as carol:
        response = carol.post("/jobs/bulk", json={"jobs": [item] * 20 + [{**item, "options": {"attempts": 99}}]})
        data = response.json()["data"]
        assert response.status_code == 200 and (data["created"], data["failed"]) == (20, 1)
        assert data["results"][20]["status"] == 400 and "attempts" in data["results"][20]["error"]["message"]
        for result in data["results"][:20]:
            wait_for_status(carol, result["job"]["jobId"], {"completed"})
        assert carol.post("/jobs/bulk", json={"jobs": [item] * 101}).status_code == 400
        too_big = carol.post("/jobs", json={**item, "data": {"x": "y" * 5_300_000}})  # past the 5 MB data limit
        assert too_big.status_code == 413
        for options, word in (({"delay": -1}, "delay"), ({"attempts": 0}, "attempts"), ({"backoff": {"type": "linear"}}, "backoff")):
            bad = carol.post("/jobs", json={**item, "options": options})
            assert bad.status_code == 400 and word in bad.json()["error"]["message"]


def test_openapi_and_docs_are_public(local_stack: LocalStackProcess) -> None:
    import httpx

    spec = httpx.get(f"{local_stack.api_url}/openapi.json", timeout=60).json()  # built at the first ask: seconds under load
    assert {"/jobs", "/jobs/bulk", "/jobs/{job_id}/retry", "/jobs/{job_id}/logs", "/jobs/user/{user_id}"} <= set(spec["paths"])
    assert httpx.get(f"{local_stack.api_url}/docs").status_code == 200
