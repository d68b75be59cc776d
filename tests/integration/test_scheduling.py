"""Delayed and recurring jobs through the local stack, over HTTP, as a client sees them."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.adapters.scheduler import delay_schedule_name
from shared.clock import parse_iso
from shared.models import JobRef
from tests.integration.conftest import STACK_NAME, LocalStackProcess, wait_for_status
from tests.integration.local_control import aws, clock_moved, control, schedule_names
from tests.target_server import TargetServer

pytestmark = pytest.mark.integration


@pytest.fixture
def echo(local_stack: LocalStackProcess, target: TargetServer) -> str:
    with local_stack.client("root", admin=True) as admin:
        response = admin.put("/queues/email-sending/processors/echo", json={"kind": "http", "url": f"{target.url}/ok", "timeoutSeconds": 5})
        assert response.status_code == 200, response.text
    return "echo"


def create(client: httpx.Client, **options: object) -> dict:
    response = client.post("/jobs", json={"queue": "email-sending", "type": "echo", "data": {"n": 1}, "options": options})
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])


def test_a_delayed_job_does_not_start_before_it_is_due_and_starts_soon_after(
    local_stack: LocalStackProcess, target: TargetServer, echo: str
) -> None:
    with local_stack.client("alice") as alice:
        job = create(alice, delay=2000)
        assert job["status"] == "delayed"
        time.sleep(1.2)
        assert alice.get(f"/jobs/{job['jobId']}").json()["data"]["status"] == "delayed"
        assert target.calls_for(job["jobId"]) == []
        done = wait_for_status(alice, job["jobId"], {"completed", "failed"}, timeout=15)

    assert done["status"] == "completed"
    waited = parse_iso(done["startedAt"]) - parse_iso(done["createdAt"])
    assert 2000 <= waited < 6000, f"started {waited} ms after it was created (delay 2000 ms)"


def test_a_job_delayed_past_15_minutes_waits_on_a_schedule_until_it_is_due(
    local_stack: LocalStackProcess, target: TargetServer, echo: str
) -> None:
    run_at = (datetime.now(UTC) + timedelta(minutes=20)).isoformat()
    with local_stack.client("alice") as alice:
        job = create(alice, runAt=run_at)
        name = delay_schedule_name(JobRef("alice", job["jobId"]))
        schedule = aws(local_stack, "scheduler").get_schedule(Name=name, GroupName=STACK_NAME)
        assert schedule["ScheduleExpression"].startswith("at(") and schedule["ActionAfterCompletion"] == "DELETE"
        assert schedule["Target"]["Arn"].endswith(f":{STACK_NAME}-email-sending")
        time.sleep(1)
        assert alice.get(f"/jobs/{job['jobId']}").json()["data"]["status"] == "delayed"

        with clock_moved(local_stack, 20 * 60 + 1):  # the local stack's clock, not the test's
            done = wait_for_status(alice, job["jobId"], {"completed", "failed"}, timeout=15)

    assert done["status"] == "completed" and len(target.calls_for(job["jobId"])) == 1
    assert name not in schedule_names(local_stack)  # deleted after it fired


def test_cancelling_a_job_delayed_past_15_minutes_removes_its_schedule(local_stack: LocalStackProcess, echo: str) -> None:
    with local_stack.client("alice") as alice:
        job = create(alice, delay=3_600_000)
        assert delay_schedule_name(JobRef("alice", job["jobId"])) in schedule_names(local_stack)

        response = alice.delete(f"/jobs/{job['jobId']}")

    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "cancelled"
    assert delay_schedule_name(JobRef("alice", job["jobId"])) not in schedule_names(local_stack)


def test_a_recurring_schedule_creates_one_job_per_firing_and_none_twice(
    local_stack: LocalStackProcess, target: TargetServer, echo: str
) -> None:
    name = f"tick-{uuid.uuid4().hex[:8]}"
    with local_stack.client("root", admin=True) as admin:
        response = admin.post("/schedules", json={"name": name, "queue": "email-sending", "type": "echo", "data": {"n": 2}, "every": 60_000})
        assert response.status_code == 201, response.text
        assert response.json()["data"]["expression"] == "rate(1 minute)"
        try:
            # A minute passes: Scheduler fires it once.
            with clock_moved(local_stack, 61):
                first = wait_for_run(admin, name, runs=1)
            job_id = first["lastJobId"]
            assert wait_for_status(admin, job_id, {"completed", "failed"})["status"] == "completed"

            # The same firing delivered twice more (Scheduler retried it): nothing new.
            control(local_stack, "scheduler/fire", {"name": f"repeat-{name}", "scheduledTime": first["lastScheduledTime"], "deliveries": 2})
            time.sleep(1.5)
            again = admin.get(f"/schedules/{name}").json()["data"]
            assert again["runCount"] == 1 and again["lastJobId"] == job_id
            assert len(target.calls_for(job_id)) == 1

            # The next firing: its own job.
            control(local_stack, "scheduler/fire", {"name": f"repeat-{name}", "scheduledTime": "2030-01-01T00:00:00Z"})
            second = wait_for_run(admin, name, runs=2)
            assert second["lastJobId"] == f"repeat:{name}:20300101T000000Z" != job_id
            assert wait_for_status(admin, second["lastJobId"], {"completed", "failed"})["status"] == "completed"
        finally:
            assert admin.delete(f"/schedules/{name}").status_code == 204
    assert f"repeat-{name}" not in schedule_names(local_stack)


def wait_for_run(admin: httpx.Client, name: str, *, runs: int, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    record: dict = {}
    while time.monotonic() < deadline:
        record = admin.get(f"/schedules/{name}").json()["data"]
        # The run is reserved (and lastJobId named) before its job is written: wait for the job too.
        if record["runCount"] >= runs and admin.get(f"/jobs/{record['lastJobId']}").status_code == 200:
            return record
        time.sleep(0.2)
    raise AssertionError(f"schedule {name} ran {record.get('runCount')} times, not {runs}: {record}")


def test_a_schedule_with_an_invalid_cron_or_time_zone_is_a_400_that_says_why(local_stack: LocalStackProcess) -> None:
    body = {"name": "bad", "queue": "email-sending", "type": "echo"}
    with local_stack.client("root", admin=True) as admin:
        cron = admin.post("/schedules", json={**body, "cron": "0 25 * * *"})
        zone = admin.post("/scheduler/repeating", json={**body, "cron": "0 2 * * *", "timezone": "America/Nowhere"})
    with local_stack.client("alice") as alice:
        forbidden = alice.post("/schedules", json={**body, "cron": "0 2 * * *"})

    assert cron.status_code == 400 and "out of range" in cron.json()["error"]["message"]
    assert zone.status_code == 400 and "unknown time zone 'America/Nowhere'" in zone.json()["error"]["message"]
    assert forbidden.status_code == 403
