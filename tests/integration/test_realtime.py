"""Live job events through the local stack: WebSocket clients on its emulated API Gateway WebSocket API."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.integration.conftest import LocalStackProcess, wait_for_status

pytestmark = pytest.mark.integration


class Watcher:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.received: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send an action and return its answer (subscribed, unsubscribed, error)."""
        self.connection.send(json.dumps(message))
        return self.next(lambda m: m["type"] in ("subscribed", "unsubscribed", "error", "pong"))

    def next(self, wanted: Any, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = json.loads(self.connection.recv(timeout=max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                break
            self.received.append(message)
            if wanted(message):
                return message
        raise AssertionError(f"nothing wanted arrived in {timeout}s; received {self.received}")

    def drain(self, seconds: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.received.append(json.loads(self.connection.recv(timeout=max(0.01, deadline - time.monotonic()))))
            except TimeoutError:
                break
        return self.received


@contextmanager
def watcher(stack: LocalStackProcess, user: str, *, admin: bool = False) -> Iterator[Watcher]:
    with connect(f"{stack.websocket_url}?token={stack.token(user, admin=admin)}", open_timeout=10) as connection:
        yield Watcher(connection)


def video_job(job_id: str, formats: int) -> dict[str, Any]:
    data = {"videoUrl": f"s3://v/{job_id}", "formats": [f"f{i}" for i in range(formats)]}
    return {"queue": "video-processing", "type": "transcode-video", "data": data, "options": {"jobId": job_id}}


def test_a_connection_without_a_valid_token_is_refused(local_stack: LocalStackProcess) -> None:
    for url in (local_stack.websocket_url, f"{local_stack.websocket_url}?token=not-a-jwt"):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, open_timeout=10)
        assert refused.value.response.status_code == 401


def test_a_subscriber_sees_active_several_progress_and_completed_for_its_job_in_order(local_stack: LocalStackProcess) -> None:
    job_id = f"watched-{uuid.uuid4().hex[:8]}"
    with watcher(local_stack, "alice") as alice, local_stack.client("alice") as api:
        # Subscribed before the job exists (its own namespace), so nothing is missed.
        assert alice.send({"action": "subscribe", "jobId": job_id}) == {"type": "subscribed", "jobId": job_id, "userId": "alice", "status": None}
        assert api.post("/jobs", json=video_job(job_id, 10)).status_code == 201

        completed = alice.next(lambda m: m["type"] == "job:completed")

    events = [m for m in alice.received if m.get("jobId") == job_id and m["type"].startswith("job:")]
    types = [m["type"] for m in events]
    assert types[0] == "job:waiting" and types[1] == "job:active" and types[-1] == "job:completed"
    progress = [m["progress"] for m in events if m["type"] == "job:progress"]
    assert set(types[2:-1]) == {"job:progress"} and len(progress) >= 2
    assert progress == sorted(progress) and progress[-1] <= 100
    assert all(m["queue"] == "video-processing" and m["userId"] == "alice" for m in events)
    assert [m["status"] for m in events] == ["waiting", "active", *["active"] * len(progress), "completed"]
    assert completed["result"]["outputs"][0]["format"] == "f0"
    assert events[2]["message"].startswith("transcoded ")  # seed 002's {"type", "jobId", "progress", "message"}


def test_a_subscriber_sees_nothing_of_another_users_job(local_stack: LocalStackProcess) -> None:
    job_id = f"private-{uuid.uuid4().hex[:8]}"
    with watcher(local_stack, "alice") as alice, watcher(local_stack, "bob") as bob, local_stack.client("alice") as api:
        alice.send({"action": "subscribe", "jobId": job_id})
        bob.send({"action": "subscribe", "jobId": job_id})  # the same id in bob's namespace: not alice's job
        refused = bob.send({"action": "subscribe", "jobId": job_id, "userId": "alice"})
        assert refused["type"] == "error" and refused["code"] == "NOT_FOUND"  # as GET /jobs/{id}?userId= of someone else
        assert api.post("/jobs", json=video_job(job_id, 2)).status_code == 201

        alice.next(lambda m: m["type"] == "job:completed")
        seen_by_bob = bob.drain(1.0)

    assert [m["type"] for m in seen_by_bob] == ["subscribed", "error"]


def test_an_admins_queue_subscription_sees_every_job_of_the_queue(local_stack: LocalStackProcess) -> None:
    with watcher(local_stack, "root", admin=True) as root, local_stack.client("alice") as alice, local_stack.client("bob") as bob:
        assert root.send({"action": "subscribe", "queue": "email-sending"}) == {"type": "subscribed", "queue": "email-sending"}
        created = []
        for client in (alice, bob, alice):
            body = {"queue": "email-sending", "type": "send-email", "data": {"to": "x@example.com", "subject": "Hi", "body": "Hello"}}
            response = client.post("/jobs", json=body)
            assert response.status_code == 201
            created.append((response.json()["data"]["userId"], response.json()["data"]["jobId"]))
        done: set[tuple[str, str]] = set()
        deadline = time.monotonic() + 30
        while set(created) - done and time.monotonic() < deadline:
            event = root.next(lambda m: m["type"] == "job:completed", timeout=max(0.1, deadline - time.monotonic()))
            done.add((event["userId"], event["jobId"]))

    assert set(created) <= done
    seen = {(m["userId"], m["jobId"]) for m in root.received if m["type"] == "job:waiting"}
    assert set(created) <= seen


def test_subscribing_to_a_finished_job_sends_its_final_event_at_once(local_stack: LocalStackProcess) -> None:
    with local_stack.client("alice") as api:
        response = api.post("/jobs", json=video_job(f"done-{uuid.uuid4().hex[:8]}", 1))
        job_id = response.json()["data"]["jobId"]
        wait_for_status(api, job_id, {"completed"})
    with watcher(local_stack, "alice") as alice:
        assert alice.send({"action": "subscribe", "jobId": job_id})["status"] == "completed"
        final = alice.next(lambda m: m["type"].startswith("job:"), timeout=5)
    assert final["type"] == "job:completed" and final["result"]["outputs"]


def test_a_flow_subscriber_sees_each_job_of_the_flow_then_flow_completed(local_stack: LocalStackProcess) -> None:
    root_id = f"flow-{uuid.uuid4().hex[:8]}"
    tree = {**video_job(root_id, 1), "children": [{k: v for k, v in video_job("x", 2).items() if k != "options"}] * 2}
    with watcher(local_stack, "alice") as alice, watcher(local_stack, "bob") as bob, local_stack.client("alice") as api:
        # Subscribed before the flow exists (its root's id in alice's namespace), so nothing is missed.
        assert alice.send({"action": "subscribe", "flowId": root_id}) == {"type": "subscribed", "flowId": root_id, "userId": "alice", "status": None}
        assert bob.send({"action": "subscribe", "flowId": root_id, "userId": "alice"})["code"] == "NOT_FOUND"
        assert api.post("/flows", json=tree).status_code == 201

        ended = alice.next(lambda m: m["type"] == "flow:completed", timeout=60)
        seen_by_bob = bob.drain(0.5)

    events = [m for m in alice.received if m["type"].startswith(("job:", "flow:"))]
    completed = [m["jobId"] for m in events if m["type"] == "job:completed"]
    assert sorted(completed) == sorted([f"{root_id}:0", f"{root_id}:1", root_id]) and completed[-1] == root_id  # bottom-up
    assert {m["jobId"] for m in events if m["type"] == "job:progress"} >= {f"{root_id}:0"}
    assert all(m["userId"] == "alice" and m["queue"] == "video-processing" and "status" in m for m in events)
    assert {k: ended[k] for k in ("flowId", "jobId", "status")} == {"flowId": root_id, "jobId": root_id, "status": "completed"}
    assert ended["result"]["outputs"] and events[-1] is ended
    assert [m["type"] for m in seen_by_bob] == ["subscribed", "error"] or [m["type"] for m in seen_by_bob] == ["error"]
    with watcher(local_stack, "alice") as late:  # a flow that ended: its final events at once
        assert late.send({"action": "subscribe", "flowId": root_id})["status"] == "completed"
        assert late.next(lambda m: m["type"] == "flow:completed", timeout=5)["result"] == ended["result"]
