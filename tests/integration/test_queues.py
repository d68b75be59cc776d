"""Queues through the local stack, over HTTP, as an operator sees them: live stats kept from the
table's stream, pause and resume (the consumer's event source mapping), clean, metrics,
runtime settings and dead letters.

Other tests share the stack and its queues, so the checks compare counters with what the
jobs themselves say (the byQueueStatus listing) rather than with absolute numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.integration.conftest import LocalStackProcess, wait_for_status
from tests.target_server import TargetServer

pytestmark = pytest.mark.integration

STATUSES = ("waiting", "active", "delayed", "completed", "failed", "cancelled", "stalled", "waiting-children")


@pytest.fixture
def admin(local_stack: LocalStackProcess) -> Iterator[httpx.Client]:
    with local_stack.client("root", admin=True) as client:
        yield client


@pytest.fixture
def alice(local_stack: LocalStackProcess) -> Iterator[httpx.Client]:
    with local_stack.client("alice") as client:
        yield client


def register(admin: httpx.Client, queue: str, job_type: str, url: str) -> None:
    response = admin.put(f"/queues/{queue}/processors/{job_type}", json={"kind": "http", "url": url, "timeoutSeconds": 5})
    assert response.status_code == 200, response.text


def create(client: httpx.Client, queue: str, job_type: str, **options: Any) -> str:
    response = client.post("/jobs", json={"queue": queue, "type": job_type, "data": {"k": "v"}, "options": options})
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["jobId"])


def data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def eventually(check: Callable[[], Any], timeout: float = 20, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{message or 'condition'} not met within {timeout}s; last: {last}")


def listed_counts(admin: httpx.Client, queue: str) -> dict[str, int]:
    """The queue's jobs counted the slow way: pages of GET /queues/{name}/jobs per status."""
    counts: dict[str, int] = {}
    for status in STATUSES:
        counts[status], cursor = 0, None
        while True:
            page = data(admin.get(f"/queues/{queue}/jobs", params={"status": status, "limit": 100, **({"cursor": cursor} if cursor else {})}))
            counts[status] += len(page["jobs"])
            cursor = page["nextCursor"]
            if not cursor:
                break
    counts["total"] = sum(counts.values())
    return counts


def counters_match_the_jobs(admin: httpx.Client, queue: str) -> dict[str, int] | None:
    live = data(admin.get(f"/queues/{queue}"))["liveStats"]
    return live if live == listed_counts(admin, queue) else None


def test_counts_match_the_jobs_after_a_mixed_run(local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, alice: httpx.Client) -> None:
    queue = "report-generation"
    register(admin, queue, "it-ok", f"{target.url}/ok")
    register(admin, queue, "it-broken", f"{target.url}/always/500")
    completed = [create(alice, queue, "it-ok") for _ in range(3)]
    failed = [create(alice, queue, "it-broken", attempts=1) for _ in range(2)]
    cancelled = create(alice, queue, "it-ok", delay=60_000)
    assert alice.delete(f"/jobs/{cancelled}").status_code == 200
    delayed = create(alice, queue, "it-ok", delay=600_000)
    for job_id in completed + failed:
        wait_for_status(alice, job_id, {"completed", "failed"})

    live = eventually(lambda: counters_match_the_jobs(admin, queue), message="counters equal to the listed jobs")

    assert live["completed"] >= 3 and live["failed"] >= 2 and live["cancelled"] >= 1 and live["delayed"] >= 1
    assert data(alice.get(f"/jobs/{delayed}"))["status"] == "delayed"
    listed = {s: {j["jobId"] for j in data(admin.get(f"/queues/{queue}/jobs", params={"status": s, "limit": 100}))["jobs"]} for s in STATUSES}
    assert set(completed) <= listed["completed"] and set(failed) <= listed["failed"]
    assert cancelled in listed["cancelled"] and delayed in listed["delayed"]
    summary = data(admin.get(f"/queues/{queue}"))
    assert summary["lastProcessedAt"] and summary["processingRate"] > 0 and summary["averageProcessingTime"] is not None
    alice.delete(f"/jobs/{delayed}")  # leave nothing due later


def test_pause_holds_jobs_and_resume_drains_them(local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, alice: httpx.Client) -> None:
    queue = "video-processing"
    register(admin, queue, "it-ok", f"{target.url}/ok")
    paused = data(admin.post(f"/queues/{queue}/pause"))
    assert paused == {"name": queue, "paused": True, "isActive": False, "consumerState": "Disabled"}
    try:
        held = [create(alice, queue, "it-ok") for _ in range(3)]
        time.sleep(2.5)  # a consumer would have taken them well within this
        assert all(data(alice.get(f"/jobs/{job_id}"))["status"] == "waiting" for job_id in held)
        assert not [c for c in target.calls if c.job_id in held]
        summary = eventually(lambda: (s := data(admin.get(f"/queues/{queue}")))["liveStats"]["waiting"] >= 3 and s)
        assert summary["isActive"] is False and summary["consumerState"] == "Disabled"
    finally:
        resumed = data(admin.post(f"/queues/{queue}/resume"))
    assert resumed["consumerState"] == "Enabled" and resumed["isActive"] is True

    for job_id in held:
        assert wait_for_status(alice, job_id, {"completed", "failed"}, timeout=30)["status"] == "completed"


def test_clean_removes_exactly_what_it_says(local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, alice: httpx.Client) -> None:
    queue = "video-processing"
    register(admin, queue, "it-ok", f"{target.url}/ok")
    old = [create(alice, queue, "it-ok") for _ in range(2)]
    for job_id in old:
        wait_for_status(alice, job_id, {"completed"})
    time.sleep(2.0)
    before = listed_counts(admin, queue)  # before the fresh job: listing every status takes time on a loaded machine
    before["completed"] += 1  # the fresh job
    fresh = create(alice, queue, "it-ok")
    wait_for_status(alice, fresh, {"completed"})

    result = data(admin.post(f"/queues/{queue}/clean", json={"olderThan": 1500, "status": "completed", "limit": 1000}))

    assert result["removed"] == len(result["jobIds"]) and set(old) <= set(result["jobIds"]) and fresh not in result["jobIds"]
    assert all(alice.get(f"/jobs/{job_id}").status_code == 404 for job_id in result["jobIds"])
    assert data(admin.get(f"/jobs/{fresh}", params={"userId": "alice"}))["status"] == "completed"
    after = listed_counts(admin, queue)
    assert after["completed"] == before["completed"] - result["removed"]
    eventually(lambda: counters_match_the_jobs(admin, queue), message="counters after the clean")
    assert admin.post(f"/queues/{queue}/clean", json={"olderThan": 1500, "status": "waiting"}).status_code == 400


def test_metrics_show_the_processed_jobs_in_their_minute(local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, alice: httpx.Client) -> None:
    queue = "video-processing"
    register(admin, queue, "it-slow", f"{target.url}/slow/0.3")
    register(admin, queue, "it-broken", f"{target.url}/always/500")
    before = data(admin.get(f"/queues/{queue}/metrics", params={"hours": 1}))["totals"]
    done = [create(alice, queue, "it-slow") for _ in range(2)]
    broken = create(alice, queue, "it-broken", attempts=1)
    jobs = {job_id: wait_for_status(alice, job_id, {"completed", "failed"}) for job_id in [*done, broken]}

    metrics = eventually(
        lambda: (m := data(admin.get(f"/queues/{queue}/metrics", params={"hours": 1})))["totals"]["completed"] >= before["completed"] + 2
        and m["totals"]["failed"] >= before["failed"] + 1
        and m,
        message="metrics with the new jobs",
    )

    assert metrics["resolution"] == "minute" and len(metrics["points"]) == 60
    by_minute = {p["timestamp"]: p for p in metrics["points"]}
    for job in jobs.values():
        stamp = job["completedAt"] or job["failedAt"]
        point = by_minute[stamp[:16] + ":00.000Z"]
        assert point["completed" if job["status"] == "completed" else "failed"] >= 1, (job["jobId"], point)
    assert all(j["processingTime"] >= 300 for j in jobs.values() if j["status"] == "completed")
    assert (metrics["totals"]["p95ProcessingTime"] or 0) >= 250
    hourly = data(admin.get(f"/queues/{queue}/metrics", params={"hours": 24}))
    assert hourly["resolution"] == "hour" and hourly["totals"]["completed"] >= metrics["totals"]["completed"]


def test_a_dead_lettered_job_is_redriven_and_completes(local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, alice: httpx.Client) -> None:
    queue = "video-processing"
    # Fails its only attempt, then succeeds: the target is "fixed" by the time it is redriven.
    register(admin, queue, "it-once", f"{target.url}/fail-times/1")
    job_id = create(alice, queue, "it-once", attempts=1)
    assert wait_for_status(alice, job_id, {"completed", "failed"})["status"] == "failed"

    letters = data(admin.get(f"/queues/{queue}/dead-letters"))["deadLetters"]
    (letter,) = [d for d in letters if d["jobId"] == job_id]
    assert "500" in letter["reason"] and letter["job"]["status"] == "failed"

    result = data(admin.post(f"/queues/{queue}/dead-letters/redrive", json={"jobIds": [job_id]}))
    assert result["redriven"] == [job_id]

    job = wait_for_status(alice, job_id, {"completed", "failed"})
    assert job["status"] == "completed" and job["attempts"] == 1
    assert [h["outcome"] for h in job["history"]] == ["failed", "completed"]
    assert job_id not in [d["jobId"] for d in data(admin.get(f"/queues/{queue}/dead-letters"))["deadLetters"]]


def test_purging_dead_letters_leaves_their_jobs_failed(local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, alice: httpx.Client) -> None:
    queue = "video-processing"
    register(admin, queue, "it-broken", f"{target.url}/always/500")
    job_id = create(alice, queue, "it-broken", attempts=1)
    wait_for_status(alice, job_id, {"failed"})
    eventually(lambda: job_id in [d["jobId"] for d in data(admin.get(f"/queues/{queue}/dead-letters"))["deadLetters"]])

    result = data(admin.delete(f"/queues/{queue}/dead-letters"))

    assert result["purged"] >= 1 and result["remaining"] == 0
    assert data(admin.get(f"/queues/{queue}/dead-letters"))["deadLetters"] == []
    assert data(alice.get(f"/jobs/{job_id}"))["status"] == "failed"
    assert eventually(lambda: data(admin.get(f"/queues/{queue}"))["dlqDepth"] == 0)


def test_runtime_settings_take_effect_without_a_deploy_and_only_admins_see_queues(
    local_stack: LocalStackProcess, admin: httpx.Client, alice: httpx.Client
) -> None:
    queue = "report-generation"
    assert alice.get("/queues").status_code == 403 and alice.patch(f"/queues/{queue}", json={"defaultAttempts": 1}).status_code == 403
    changed = data(admin.patch(f"/queues/{queue}", json={"defaultAttempts": 4, "defaultBackoff": {"type": "fixed", "delay": 250}}))
    try:
        assert changed["defaultAttempts"] == 4
        response = alice.post("/jobs", json={"queue": queue, "type": "generate-report", "data": {"rows": 1}, "options": {"delay": 600_000}})
        job = response.json()["data"]
        assert job["maxAttempts"] == 4 and job["backoff"] == {"type": "fixed", "delay": 250}
        alice.delete(f"/jobs/{job['jobId']}")
    finally:
        data(admin.patch(f"/queues/{queue}", json={"defaultAttempts": 3, "defaultBackoff": {"type": "exponential", "delay": 1000}}))
    queues = {q["name"]: q for q in data(admin.get("/queues"))}
    assert sorted(queues) == ["email-sending", "report-generation", "video-processing"]
    assert queues[queue]["configuration"]["defaultAttempts"] == 3 and queues[queue]["healthStatus"] in ("healthy", "warning", "error")
