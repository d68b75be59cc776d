"""Flow control through the local stack, over HTTP: its emulated event source mappings run the consumers at once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from shared.clock import parse_iso
from tests.integration.conftest import LocalStackProcess, wait_for_status
from tests.target_server import TargetServer

QUEUE = "email-sending"


@pytest.fixture
def admin(local_stack: LocalStackProcess) -> Iterator[httpx.Client]:
    with local_stack.client("root", admin=True) as client:
        yield client


@pytest.fixture
def flow(local_stack: LocalStackProcess, admin: httpx.Client) -> Iterator[httpx.Client]:
    """alice's client; the queue's flow settings are taken off again afterwards (the stack is shared)."""
    with local_stack.client("alice") as client:
        yield client
    response = admin.patch(f"/queues/{QUEUE}", json={"rateLimit": None, "groups": None, "defaultTimeout": None})
    assert response.status_code == 200, response.text


def register(admin: httpx.Client, job_type: str, url: str) -> None:
    response = admin.put(f"/queues/{QUEUE}/processors/{job_type}", json={"kind": "http", "url": url, "timeoutSeconds": 10})
    assert response.status_code == 200, response.text


def create(client: httpx.Client, job_type: str, **options: object) -> str:
    response = client.post("/jobs", json={"queue": QUEUE, "type": job_type, "data": {}, "options": options})
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["jobId"])


def test_a_rate_limit_set_at_runtime_is_never_exceeded_by_the_running_consumers(
    local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, flow: httpx.Client
) -> None:
    register(admin, "limited", f"{target.url}/ok")
    assert admin.patch(f"/queues/{QUEUE}", json={"rateLimit": {"max": 2, "duration": 2000}}).status_code == 200
    time.sleep(5.5)  # the consumers' policy cache (JOBQ_POLICY_CACHE_SECONDS, 5)

    job_ids = [create(flow, "limited") for _ in range(8)]
    jobs = [wait_for_status(flow, job_id, {"completed"}, timeout=60) for job_id in job_ids]

    starts = [parse_iso(j["startedAt"]) for j in jobs]
    assert max(Counter(s // 2000 for s in starts).values()) <= 2
    assert all(j["attempts"] == 1 for j in jobs)  # waiting for the limit spent no attempt


def test_a_job_past_its_timeout_ends_its_attempt_timed_out_and_retries(
    local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, flow: httpx.Client
) -> None:
    register(admin, "sluggish", f"{target.url}/slow/3")

    job_id = create(flow, "sluggish", timeout=400, attempts=2, backoff={"type": "fixed", "delay": 500})

    job = wait_for_status(flow, job_id, {"failed"}, timeout=30)
    assert [h["outcome"] for h in job["history"]] == ["timed_out", "timed_out"]
    assert job["attempts"] == 2 and "timed out after 400 ms" in job["error"]
