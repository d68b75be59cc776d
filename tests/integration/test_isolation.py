"""Issue 9 through the local stack over HTTP, as a client would: job ids per owner, the
deduplication leak, schedule firings nobody can block, and a hostile sweep over every route."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.hostile_inputs import LISTINGS, cases
from tests.integration.conftest import LocalStackProcess, wait_for_status
from tests.integration.local_control import control
from tests.target_server import TargetServer

pytestmark = pytest.mark.integration


@pytest.fixture
def echo(local_stack: LocalStackProcess, target: TargetServer) -> str:
    with local_stack.client("root", admin=True) as admin:
        response = admin.put("/queues/email-sending/processors/echo", json={"kind": "http", "url": f"{target.url}/ok", "timeoutSeconds": 5})
        assert response.status_code == 200, response.text
    return "echo"


def body(data: dict, **options: object) -> dict:
    return {"queue": "email-sending", "type": "echo", "data": data, "options": options}


def test_two_users_run_their_own_invoice_42_and_neither_sees_the_other(local_stack: LocalStackProcess, echo: str) -> None:
    job_id = f"invoice-{uuid.uuid4().hex[:8]}"
    with local_stack.client("ada") as ada, local_stack.client("ben") as ben, local_stack.client("root", admin=True) as admin:
        mine = ada.post("/jobs", json=body({"owner": "ada"}, jobId=job_id))
        theirs = ben.post("/jobs", json=body({"owner": "ben"}, jobId=job_id))
        assert (mine.status_code, theirs.status_code) == (201, 201), (mine.text, theirs.text)

        assert wait_for_status(ada, job_id, {"completed"})["result"]["echo"] == {"owner": "ada"}
        assert wait_for_status(ben, job_id, {"completed"})["result"]["echo"] == {"owner": "ben"}
        assert admin.get(f"/jobs/{job_id}", params={"userId": "ben"}).json()["data"]["data"] == {"owner": "ben"}
        assert admin.get(f"/jobs/{job_id}").status_code == 404  # the admin's own namespace
        assert ben.get(f"/jobs/{job_id}", params={"userId": "ada"}).status_code == 404


def test_a_deduplication_key_never_answers_with_someone_elses_job(local_stack: LocalStackProcess, echo: str) -> None:
    job_id = f"secret-{uuid.uuid4().hex[:8]}"
    with local_stack.client("ada") as ada, local_stack.client("mallory") as mallory:
        assert ada.post("/jobs", json=body({"card": "4111"}, jobId=job_id)).status_code == 201
        probe = body({}, jobId=job_id, deduplication={"key": "probe"})
        answers = [mallory.post("/jobs", json=probe) for _ in range(2)]
        bulk = mallory.post("/jobs/bulk", json={"jobs": [probe]})

    for answer in answers:
        assert answer.status_code in (200, 201) and answer.json()["data"]["userId"] == "mallory"
        assert "card" not in json.dumps(answer.json())
    assert "card" not in bulk.text and bulk.json()["data"]["results"][0]["job"]["userId"] == "mallory"


def test_a_schedule_firing_runs_its_own_job_whatever_users_created_first(local_stack: LocalStackProcess, echo: str, target: TargetServer) -> None:
    name = f"guard-{uuid.uuid4().hex[:8]}"
    with local_stack.client("mallory") as mallory, local_stack.client("root", admin=True) as admin:
        created = admin.post("/schedules", json={"name": name, "queue": "email-sending", "type": "echo", "data": {"n": 9}, "cron": "0 3 * * *"})
        assert created.status_code == 201, created.text
        try:
            squats = [mallory.post("/jobs", json=body({"evil": True}, jobId=squat)) for squat in (f"repeat:{name}:20300101T030000Z", f"repeat-{name}-20300101T030000Z")]
            assert [s.status_code for s in squats] == [400, 201]  # the firing's id is no client id; the look-alike is mallory's own
            control(local_stack, "scheduler/fire", {"name": f"repeat-{name}", "scheduledTime": "2030-01-01T03:00:00Z", "deliveries": 2})
            record = admin.get(f"/schedules/{name}").json()["data"]
            job_id = f"repeat:{name}:20300101T030000Z"
            for _ in range(50):
                if record["runCount"] == 1 and record["lastJobId"] == job_id:
                    break
                record = admin.get(f"/schedules/{name}").json()["data"]
            assert record["runCount"] == 1 and record["lastJobId"] == job_id
            # the run is reserved (and recorded) first, its job created right after
            deadline = time.monotonic() + 20
            while admin.get(f"/jobs/{job_id}").status_code == 404:
                assert time.monotonic() < deadline, f"the firing's job {job_id} was never created"
                time.sleep(0.2)
            done = wait_for_status(admin, job_id, {"completed", "failed"})
            assert done["status"] == "completed" and done["data"] == {"n": 9} and done["userId"] == "root"
            assert len(target.calls_for(job_id)) == 1
        finally:
            admin.delete(f"/schedules/{name}")


@pytest.mark.timeout(300)  # every route x every hostile case over HTTP: ~110 s alone on 2 cores, more under load
def test_a_sweep_of_hostile_requests_over_every_route_gets_no_5xx(local_stack: LocalStackProcess) -> None:
    spec = httpx.get(f"{local_stack.api_url}/openapi.json", timeout=60).json()  # built at the first ask: seconds under load
    failures: list[str] = []
    sent = 0
    with local_stack.client("root", admin=True) as admin:
        before = admin.get("/queues/email-sending").json()["data"]["configuration"]
        nightly = admin.post("/schedules", json={"name": "nightly", "queue": "email-sending", "type": "send-email", "data": {}, "cron": "0 2 * * *"})
        try:
            for case in cases(spec):
                url = f"{local_stack.api_url}{case.path}" + (f"?{case.query}" if case.query else "")
                response = admin.request(case.method, url, content=case.body, headers={"Content-Type": "application/json"})
                sent += 1
                if response.status_code >= 500:
                    failures.append(f"{case} -> {response.status_code} {response.text[:200]}")
            for path, query in LISTINGS:
                listing = admin.get(path + (f"?{query}" if query else ""))
                assert listing.status_code == 200, (path, listing.text[:300])
        finally:
            restore = {k: before[k] for k in ("defaultAttempts", "defaultBackoff", "removeOnComplete", "removeOnFail")}
            admin.patch("/queues/email-sending", json=restore)
            for name in ("hostile", "hostile2") + (("nightly",) if nightly.status_code == 201 else ()):
                admin.delete(f"/schedules/{name}")
    assert not failures, f"{len(failures)} of {sent} hostile requests got a 5xx:\n" + "\n".join(failures[:40])
    assert sent > 1500
