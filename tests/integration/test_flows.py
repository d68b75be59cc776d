"""Flows through the local stack, over HTTP: chains, trees, failure policies, cancel and remove."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.conftest import LocalStackProcess, wait_for_status
from tests.target_server import TargetServer

pytestmark = pytest.mark.integration

A, B = "email-sending", "report-generation"
DONE = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def types(local_stack: LocalStackProcess, target: TargetServer) -> None:
    """The flows' job types as HTTP targets on both queues."""
    with local_stack.client("root", admin=True) as admin:
        for queue in (A, B):
            for job_type, path in {"leaf": "/ok", "sum": "/children-sum", "broken": "/always/400", "flaky-once": "/fail-times/1"}.items():
                response = admin.put(f"/queues/{queue}/processors/{job_type}", json={"kind": "http", "url": f"{target.url}{path}", "timeoutSeconds": 5})
                assert response.status_code == 200, response.text


def node(queue: str, job_type: str, *children: dict[str, Any], n: int = 0, **extra: Any) -> dict[str, Any]:
    return {"queue": queue, "type": job_type, "data": {"n": n}, "children": list(children), **extra}


def create_flow(client: httpx.Client, tree: dict[str, Any]) -> str:
    response = client.post("/flows", json=tree)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["flowId"])


def test_seed_000_five_step_chain_completes_with_each_steps_result_passed_on(local_stack: LocalStackProcess) -> None:
    with local_stack.client("alice") as alice:
        response = alice.post("/jobs", json={"queue": "video-processing", "type": "discover-with-instagram", "data": {"businessName": "Restaurant", "location": "NYC"}})
        assert response.status_code == 201, response.text
        job_id = response.json()["data"]["jobId"]
        steps = []
        while True:
            job = wait_for_status(alice, job_id, DONE, timeout=60)
            assert job["status"] == "completed" and job["progress"] == 100, job
            steps.append(job)
            if "next" not in job["result"]:
                break
            job_id = job["result"]["next"]
    assert [s["type"] for s in steps] == ["discover-with-instagram", "analyze-reels", "scrape-instagram-videos", "analyze-video-content", "generate-competitor-report"]
    report = steps[-1]["result"]
    assert report["steps"] == [s["type"] for s in steps] and report["videosAnalysed"] == len(steps[3]["result"]["analysisData"]) == 4
    assert report["businessId"] == steps[0]["result"]["businessId"]


def test_a_three_level_tree_across_two_queues_completes_bottom_up(local_stack: LocalStackProcess, types: None) -> None:
    tree = node(A, "sum", node(B, "sum", node(A, "leaf", n=1), node(B, "leaf", n=2)), node(B, "leaf", n=3))
    with local_stack.client("alice") as alice:
        root = create_flow(alice, tree)
        assert alice.get(f"/jobs/{root}").json()["data"]["status"] in ("waiting-children", "waiting", "active", "completed")
        done = wait_for_status(alice, root, DONE, timeout=60)
        assert done["status"] == "completed" and done["result"] == {"sum": 6, "children": 2}
        flow = alice.get(f"/flows/{root}").json()["data"]
    mid, leaf = flow["children"]
    assert mid["result"] == {"sum": 3, "children": 2} and leaf["dependency"] == "processed"
    assert max(c["completedAt"] for c in mid["children"]) <= mid["completedAt"] <= flow["completedAt"]


@pytest.mark.parametrize(
    ("policy", "root_status", "dependency"),
    [
        ("failParentOnFailure", "failed", "failed"),
        ("continueParentOnFailure", "completed", "failed"),
        ("ignoreDependencyOnFailure", "completed", "ignored"),
        ("removeDependencyOnFailure", "completed", None),
    ],
)
def test_each_failure_policy(local_stack: LocalStackProcess, types: None, policy: str, root_status: str, dependency: str | None) -> None:
    tree = node(A, "sum", node(B, "leaf", n=1), node(B, "broken", onFailure=policy))
    with local_stack.client("alice") as alice:
        root = create_flow(alice, tree)
        assert wait_for_status(alice, root, DONE, timeout=60)["status"] == root_status
        deps = alice.get(f"/jobs/{root}/dependencies").json()["data"]
    states = {d["jobId"]: d["dependency"] for d in deps["dependencies"]}
    assert states[f"{root}:0"] == "processed" and states.get(f"{root}:1") == dependency


def test_a_retried_child_resumes_its_parent_and_is_counted_once(local_stack: LocalStackProcess, types: None) -> None:
    tree = node(A, "sum", node(B, "leaf", n=1), node(B, "flaky-once", n=5, options={"attempts": 1}))
    with local_stack.client("alice") as alice:
        root = create_flow(alice, tree)
        assert wait_for_status(alice, root, DONE, timeout=60)["status"] == "failed"
        assert alice.post(f"/jobs/{root}:1/retry").status_code == 200  # the target answers 200 this time
        done = wait_for_status(alice, root, {"completed"}, timeout=60)
        assert done["result"]["children"] == 2
        counts = alice.get(f"/jobs/{root}/dependencies").json()["data"]["counts"]
    assert counts == {"pending": 0, "failed": 0, "total": 2}


def test_cancelling_a_parent_cancels_its_unfinished_descendants(local_stack: LocalStackProcess, types: None) -> None:
    later = {"delay": 600_000}
    tree = node(A, "sum", node(B, "sum", node(B, "leaf", options=later)), node(A, "leaf", options=later))
    with local_stack.client("alice") as alice:
        root = create_flow(alice, tree)
        assert alice.delete(f"/jobs/{root}").status_code == 200
        for job_id in (f"{root}:0", f"{root}:0.0", f"{root}:1"):
            assert wait_for_status(alice, job_id, DONE, timeout=30)["status"] == "cancelled"


def test_removing_a_parent_removes_its_tree(local_stack: LocalStackProcess, types: None) -> None:
    later = {"delay": 600_000}
    tree = node(A, "sum", node(B, "sum", node(B, "leaf", options=later)), node(A, "leaf", options=later))
    with local_stack.client("alice") as alice:
        root = create_flow(alice, tree)
        assert alice.delete(f"/jobs/{root}", params={"action": "remove"}).status_code == 200
        assert [alice.get(f"/jobs/{j}").status_code for j in (root, f"{root}:0", f"{root}:0.0", f"{root}:1")] == [404] * 4


def test_queue_views_count_waiting_children(local_stack: LocalStackProcess, types: None) -> None:
    tree = node(A, "sum", node(B, "leaf", options={"delay": 600_000}), options={"jobId": f"waits-{uuid.uuid4().hex[:8]}"})
    with local_stack.client("alice") as alice, local_stack.client("root", admin=True) as admin:
        create_flow(alice, tree)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = admin.get(f"/queues/{A}").json()["data"]["liveStats"]
            if stats["waiting-children"] >= 1:
                break
            time.sleep(0.3)
        assert stats["waiting-children"] >= 1
