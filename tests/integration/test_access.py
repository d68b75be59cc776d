"""Issue 19 through the local stack over HTTP, with tokens of several groups: per-queue
permissions, the read-only operator, service clients acting for users, bulk status, the
audit trail and back-pressure.

The tests share the stack with others, so a queue's access policy is set for one test and put
back to the defaults after it (``policy``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from infra.local.token import mint_client_token, mint_token
from tests.integration.conftest import STACK_NAME, LocalStackProcess, wait_for_status
from tests.integration.local_control import aws
from tests.target_server import TargetServer

pytestmark = pytest.mark.integration

QUEUE = "email-sending"
DEFAULT_POLICY = {"access": {"create": None, "read": [], "operate": [], "serviceClients": []}, "maxUnfinishedJobs": None, "maxUnfinishedJobsPerUser": None}


def client_for(stack: LocalStackProcess, token: str, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {token}", **headers}, timeout=10)


@pytest.fixture
def as_group(local_stack: LocalStackProcess) -> Iterator[Callable[..., httpx.Client]]:
    """A client for a user in exactly these groups (a one-group claim, as API Gateway passes it)."""
    opened: list[httpx.Client] = []

    def make(user: str, *groups: str) -> httpx.Client:
        client = client_for(local_stack, mint_token(user, groups=groups, state_dir=local_stack.state_dir))
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def admin(local_stack: LocalStackProcess) -> Iterator[httpx.Client]:
    with local_stack.client("root", admin=True) as client:
        yield client


@pytest.fixture
def echo(admin: httpx.Client, target: TargetServer) -> str:
    for queue in (QUEUE, "report-generation"):
        response = admin.put(f"/queues/{queue}/processors/echo", json={"kind": "http", "url": f"{target.url}/ok", "timeoutSeconds": 5})
        assert response.status_code == 200, response.text
    return "echo"


@pytest.fixture
def policy(admin: httpx.Client) -> Iterator[Callable[..., dict[str, Any]]]:
    """Set a queue's access and limits for this test; the defaults come back afterwards."""
    touched: set[str] = set()

    def set_policy(queue: str = QUEUE, **fields: Any) -> dict[str, Any]:
        touched.add(queue)
        response = admin.patch(f"/queues/{queue}", json=fields)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    yield set_policy
    for queue in touched:
        assert admin.patch(f"/queues/{queue}", json=DEFAULT_POLICY).status_code == 200


def job(job_type: str = "echo", queue: str = QUEUE, **options: Any) -> dict[str, Any]:
    return {"queue": queue, "type": job_type, "data": {"n": 1}, "options": options}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---- per-queue permissions ---------------------------------------------------------------------------


def test_a_group_without_create_permission_gets_403_and_nothing_is_stored(
    as_group: Callable[..., httpx.Client], admin: httpx.Client, policy: Callable[..., Any], echo: str
) -> None:
    policy(access={"create": ["senders"]})
    job_id = unique("refused")
    outsider = as_group("ivan", "reporters")
    refused = outsider.post("/jobs", json=job(jobId=job_id))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "FORBIDDEN"
    assert outsider.get(f"/jobs/{job_id}").status_code == 404
    assert admin.get(f"/jobs/{job_id}", params={"userId": "ivan"}).status_code == 404
    bulk = outsider.post("/jobs/bulk", json={"jobs": [job()]}).json()["data"]
    assert (bulk["created"], bulk["results"][0]["status"]) == (0, 403)
    assert outsider.get("/jobs/user/ivan").json()["data"]["jobs"] == []

    sender = as_group("sam", "senders")
    created = sender.post("/jobs", json=job(jobId=job_id))
    assert created.status_code == 201, created.text
    # the other queue still lets every user create
    assert outsider.post("/jobs", json=job(queue="report-generation")).status_code == 201


def test_a_read_only_operator_reads_every_job_and_changes_nothing(
    as_group: Callable[..., httpx.Client], admin: httpx.Client, echo: str
) -> None:
    owner = as_group("oona")
    job_id = unique("watched")
    assert owner.post("/jobs", json=job(jobId=job_id)).status_code == 201
    wait_for_status(owner, job_id, {"completed"})
    reader = as_group("rita", "readonly")

    assert reader.get(f"/jobs/{job_id}", params={"userId": "oona"}).json()["data"]["userId"] == "oona"
    assert any(j["jobId"] == job_id for j in reader.get("/jobs/user/oona").json()["data"]["jobs"])
    assert any(j["jobId"] == job_id for j in reader.get(f"/queues/{QUEUE}/jobs", params={"limit": 100}).json()["data"]["jobs"])
    assert reader.get("/jobs", params={"queue": QUEUE}).status_code == 200
    assert {q["name"] for q in reader.get("/queues").json()["data"]} >= {QUEUE, "report-generation", "video-processing"}
    for path in (f"/queues/{QUEUE}", f"/queues/{QUEUE}/metrics", f"/queues/{QUEUE}/dead-letters", "/schedules", "/scheduler/stats", "/health/detailed", "/audit"):
        assert reader.get(path).status_code == 200, path

    changes = [
        ("POST", "/jobs", job()),
        ("POST", f"/jobs/{job_id}/retry?userId=oona", None),
        ("DELETE", f"/jobs/{job_id}?userId=oona", None),
        ("PATCH", f"/queues/{QUEUE}", {"defaultAttempts": 2}),
        ("POST", f"/queues/{QUEUE}/pause", None),
        ("POST", f"/queues/{QUEUE}/resume", None),
        ("POST", f"/queues/{QUEUE}/clean", {"olderThan": 0, "status": "completed"}),
        ("POST", f"/queues/{QUEUE}/dead-letters/redrive", {}),
        ("DELETE", f"/queues/{QUEUE}/dead-letters", None),
        ("PUT", f"/queues/{QUEUE}/processors/hook", {"kind": "http", "url": "http://127.0.0.1:9/x", "timeoutSeconds": 5}),
        ("POST", "/schedules", {"name": unique("r"), "queue": QUEUE, "type": "echo", "data": {}, "cron": "0 2 * * *"}),
        ("POST", "/scheduler/delayed", {**job(), "delay": 60_000}),
    ]
    for method, path, body in changes:
        response = reader.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
    assert admin.get(f"/jobs/{job_id}", params={"userId": "oona"}).json()["data"]["status"] == "completed"
    assert admin.get(f"/queues/{QUEUE}").json()["data"]["paused"] is False


def test_a_queue_operator_group_operates_its_queue_only(
    as_group: Callable[..., httpx.Client], admin: httpx.Client, policy: Callable[..., Any], echo: str
) -> None:
    policy(access={"operate": ["mail-ops"]})
    ops = as_group("olga", "mail-ops")
    assert ops.post(f"/queues/{QUEUE}/clean", json={"olderThan": 3_600_000, "status": "cancelled", "limit": 1}).status_code == 200
    assert [q["name"] for q in ops.get("/queues").json()["data"]] == [QUEUE]
    assert ops.post("/queues/report-generation/clean", json={"olderThan": 0, "status": "cancelled"}).status_code == 403
    assert ops.get("/queues/report-generation").status_code == 403
    assert ops.post("/schedules", json={"name": unique("o"), "queue": QUEUE, "type": "echo", "data": {}, "cron": "0 2 * * *"}).status_code == 403


# ---- service clients -------------------------------------------------------------------------------------


def test_a_service_client_creates_a_job_for_a_user_who_then_sees_it(
    local_stack: LocalStackProcess, as_group: Callable[..., httpx.Client], policy: Callable[..., Any], echo: str
) -> None:
    policy(access={"serviceClients": ["svc-billing"]})
    token = mint_client_token("svc-billing", state_dir=local_stack.state_dir)
    with client_for(local_stack, token) as service:
        by_body = service.post("/jobs", json={**job(), "onBehalfOf": "ursula"})
        assert by_body.status_code == 201, by_body.text
        made = by_body.json()["data"]
        assert (made["userId"], made["actingClient"]) == ("ursula", "svc-billing")
        by_header = service.post("/jobs", json=job(), headers={"X-On-Behalf-Of": "ursula"})
        assert by_header.status_code == 201, by_header.text
        # it reads what it made for her, and may not act where the policy does not list it
        assert service.get(f"/jobs/{made['jobId']}", headers={"X-On-Behalf-Of": "ursula"}).status_code == 200
        denied = service.post("/jobs", json={**job(queue="report-generation"), "onBehalfOf": "ursula"})
        assert denied.status_code == 403, denied.text
        assert service.post("/jobs", json=job()).status_code == 403  # it names nobody
        assert service.get("/queues").status_code == 403
        assert service.post(f"/queues/{QUEUE}/pause").status_code == 403

    ursula = as_group("ursula")
    wait_for_status(ursula, made["jobId"], {"completed"})
    listed = {j["jobId"]: j for j in ursula.get("/jobs/user/ursula").json()["data"]["jobs"]}
    assert made["jobId"] in listed and by_header.json()["data"]["jobId"] in listed
    assert listed[made["jobId"]]["actingClient"] == "svc-billing"
    # a user cannot pose as a service client
    assert ursula.post("/jobs", json={**job(), "onBehalfOf": "victor"}).status_code == 403


# ---- bulk status ---------------------------------------------------------------------------------------------


def test_bulk_status_returns_each_visible_job_and_hides_the_others(
    as_group: Callable[..., httpx.Client], admin: httpx.Client, echo: str
) -> None:
    mine, theirs = as_group("bella"), as_group("basil")
    own_ids = [mine.post("/jobs", json=job()).json()["data"]["jobId"] for _ in range(3)]
    other_id = unique("basils")
    assert theirs.post("/jobs", json=job(jobId=other_id)).status_code == 201
    wait_for_status(mine, own_ids[0], {"completed"})

    answer = mine.post("/jobs/status", json={"jobIds": [*own_ids, other_id, "never-made"]})
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert [j["jobId"] for j in data["jobs"]] == own_ids
    assert data["notFound"] == [other_id, "never-made"]
    first = data["jobs"][0]
    assert first["status"] == "completed" and first["progress"] is not None
    assert first["resultUrl"] == f"/jobs/{own_ids[0]}?userId=bella"
    assert mine.get(first["resultUrl"]).json()["data"]["result"] is not None

    seen = admin.post("/jobs/status", json={"jobs": [{"jobId": other_id, "userId": "basil"}, {"jobId": own_ids[1], "userId": "bella"}]})
    assert [j["jobId"] for j in seen.json()["data"]["jobs"]] == [other_id, own_ids[1]]
    assert mine.post("/jobs/status", json={"jobIds": [f"x{i}" for i in range(101)]}).status_code == 400
    # a user naming another owner learns nothing: the id is simply not found
    named = mine.post("/jobs/status", json={"jobs": [{"jobId": other_id, "userId": "basil"}]}).json()["data"]
    assert (named["jobs"], named["notFound"]) == ([], [other_id])


# ---- the audit trail -----------------------------------------------------------------------------------------


def test_every_administrative_action_appears_in_the_audit_listing(
    as_group: Callable[..., httpx.Client], admin: httpx.Client, target: TargetServer, echo: str
) -> None:
    name = unique("audited")
    schedule = {"name": name, "queue": QUEUE, "type": "echo", "data": {}, "cron": "0 2 * * *"}
    actions = [
        ("POST", f"/queues/{QUEUE}/pause", None, "pause_queue"),
        ("POST", f"/queues/{QUEUE}/resume", None, "resume_queue"),
        ("POST", f"/queues/{QUEUE}/clean", {"olderThan": 3_600_000, "status": "cancelled", "limit": 1}, "clean_queue"),
        ("PATCH", f"/queues/{QUEUE}", {"defaultAttempts": 5}, "patch_queue"),
        ("PUT", f"/queues/{QUEUE}/processors/audited", {"kind": "http", "url": f"{target.url}/ok", "timeoutSeconds": 5}, "put_processor"),
        ("POST", f"/queues/{QUEUE}/dead-letters/redrive", {"jobIds": ["nothing-here"]}, "redrive_dead_letters"),
        ("DELETE", "/queues/video-processing/dead-letters", None, "purge_dead_letters"),
        ("POST", "/schedules", schedule, "create_schedule"),
        ("PATCH", f"/schedules/{name}", {"limit": 50}, "update_schedule"),
        ("POST", f"/schedules/{name}/pause", None, "pause_schedule"),
        ("POST", f"/schedules/{name}/resume", None, "resume_schedule"),
        ("POST", f"/schedules/{name}/trigger", None, "trigger_schedule"),
        ("DELETE", f"/schedules/{name}", None, "delete_schedule"),
    ]
    request_ids = []
    for method, path, body, _ in actions:
        response = admin.request(method, path, json=body)
        assert response.status_code < 300, (method, path, response.text)
        request_ids.append(response.headers["apigw-requestid"])
    assert as_group("rita", "readonly").post(f"/queues/{QUEUE}/pause").status_code == 403  # refused: no entry

    entries = admin.get("/audit", params={"limit": 30}).json()["data"]["entries"]
    by_request = {e["requestId"]: e for e in entries}
    for (method, path, body, action), request_id in zip(actions, request_ids, strict=True):
        entry = by_request.get(request_id)
        assert entry is not None, f"{method} {path} is not in the audit listing"
        assert (entry["action"], entry["actor"], entry["groups"]) == (action, "root", ["admin"])
        assert entry["route"].startswith(method + " ")
        assert entry["body"] == body
    newest = [e["requestId"] for e in entries if e["requestId"] in request_ids]
    assert newest == list(reversed(request_ids))  # newest first
    assert not any(e["actor"] == "rita" for e in entries[: len(actions) + 1])

    page = admin.get("/audit", params={"limit": 2})
    cursor = page.json()["data"]["nextCursor"]
    assert cursor and admin.get("/audit", params={"limit": 2, "cursor": cursor}).status_code == 200
    assert admin.get("/audit", params={"cursor": cursor[:-2] + "xx"}).status_code == 400
    assert as_group("plain").get("/audit").status_code == 403


# ---- back-pressure -------------------------------------------------------------------------------------------


def _places_taken(stack: LocalStackProcess) -> int:
    item = aws(stack, "dynamodb").get_item(
        TableName=f"{STACK_NAME}-JobsTable", Key={"pk": {"S": f"QUEUE#{QUEUE}"}, "sk": {"S": "ADMISSION"}}, ConsistentRead=True
    ).get("Item") or {}
    return int(item.get("unfinished", {}).get("N", 0))


def _wait_until_no_place_is_taken(stack: LocalStackProcess, timeout: float = 30) -> None:
    """Jobs of an earlier test that still hold a place finish first (the stream gives it back)."""
    deadline = time.monotonic() + timeout
    while _places_taken(stack) > 0:
        assert time.monotonic() < deadline, f"{_places_taken(stack)} places still taken on {QUEUE}"
        time.sleep(0.3)


def _create_when_accepted(client: httpx.Client, body: dict[str, Any], timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = client.post("/jobs", json=body)
        if response.status_code not in (429, 503) or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


def test_a_full_queue_answers_429_and_accepts_again_once_jobs_finish(
    local_stack: LocalStackProcess, as_group: Callable[..., httpx.Client], admin: httpx.Client, policy: Callable[..., Any], target: TargetServer
) -> None:
    _wait_until_no_place_is_taken(local_stack)
    assert admin.put(f"/queues/{QUEUE}/processors/slow", json={"kind": "http", "url": f"{target.url}/slow/1", "timeoutSeconds": 5}).status_code == 200
    policy(maxUnfinishedJobs=2)
    user = as_group("fiona")
    running = [user.post("/jobs", json=job("slow")) for _ in range(2)]
    assert [r.status_code for r in running] == [201, 201]
    extra = unique("extra")
    refused = user.post("/jobs", json=job("slow", jobId=extra))
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert user.get(f"/jobs/{extra}").status_code == 404  # nothing stored

    for response in running:
        wait_for_status(user, response.json()["data"]["jobId"], {"completed"})
    accepted = _create_when_accepted(user, job("slow", jobId=extra))
    assert accepted.status_code == 201, accepted.text
    wait_for_status(user, extra, {"completed"})
    _wait_until_no_place_is_taken(local_stack)  # given back by the stream, a batch later


def test_a_paused_full_queue_answers_503_until_resumed_and_drained(
    local_stack: LocalStackProcess, as_group: Callable[..., httpx.Client], admin: httpx.Client, policy: Callable[..., Any], echo: str
) -> None:
    _wait_until_no_place_is_taken(local_stack)
    policy(maxUnfinishedJobs=1)
    user = as_group("petra")
    assert admin.post(f"/queues/{QUEUE}/pause").status_code == 200
    try:
        held = user.post("/jobs", json=job())
        assert held.status_code == 201
        refused = user.post("/jobs", json=job())
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "QUEUE_PAUSED_AND_FULL" and "Retry-After" in refused.headers
    finally:
        assert admin.post(f"/queues/{QUEUE}/resume").status_code == 200
    wait_for_status(user, held.json()["data"]["jobId"], {"completed"})
    again = _create_when_accepted(user, job())
    assert again.status_code == 201, again.text
    wait_for_status(user, again.json()["data"]["jobId"], {"completed"})
    _wait_until_no_place_is_taken(local_stack)
