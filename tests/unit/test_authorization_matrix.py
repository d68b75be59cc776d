"""Who may call what: every route of the app x every role.

The routes come from the app's own OpenAPI document, so a new route fails
``test_every_route_is_in_the_matrix`` until it has a row here. The queue the rows name,
email-sending, has a policy (shared/access.py): ``create`` only for the group ``senders``,
``read`` for ``support``, ``operate`` for ``email-ops``, and the service client
``svc-billing``; report-generation lets only ``reporters`` create.

    anonymous   no token
    other       bob, in ``reporters``: may create on report-generation only, not here
    owner       alice, in ``senders``: owns the jobs the job routes name
    admin       root, in ``admin``; names alice's jobs with ``?userId=alice``
    reader      rita, in ``readonly`` (the read-only operator role); ``?userId=alice``
    operator    olga, in ``email-ops`` (operates email-sending); ``?userId=alice``
    service     the client svc-billing (client-credentials scope), ``X-On-Behalf-Of: alice``
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from api.app import app
from api.main import handler
from shared.access import QueueAccess
from shared.adapters import policies, queues
from shared.schedules import ScheduleCreate
from tests.unit.api_events import admin, http_event, in_group, service_client
from tests.unit.conftest import FakeLambdaContext, in_moto, provision
from tests.unit.scheduling import ADMIN, with_scheduler
from tests.unit.test_queues import emulated_mappings

ROLES = ("anonymous", "other", "owner", "admin", "reader", "operator", "service")
EMAIL = {"to": "a@example.com", "subject": "s", "body": "b"}
JOB = {"queue": "email-sending", "type": "send-email", "data": EMAIL}
SCHEDULE = {"queue": "email-sending", "type": "send-email", "data": EMAIL, "cron": "0 2 * * *"}
TARGET = {"kind": "http", "url": "https://worker.example.com/jobs", "timeoutSeconds": 10}


@dataclass(frozen=True)
class Row:
    """One route: the request each role sends, and the status each role gets."""

    path: str  # concrete; "{job}" becomes a job of alice's, one per role
    expected: tuple[int, int, int, int, int, int, int]  # in the order of ROLES
    body: Any = None
    job_state: str = "waiting"  # the state alice's jobs are in before the call


# anonymous, other, owner, admin, reader, operator, service
CREATE = (401, 403, 201, 201, 403, 403, 201)  # the queue's create groups, admins, its service clients
ADMIN_ONLY = (401, 403, 403, 200, 403, 403, 403)  # stack-wide changes
INSPECT = (401, 403, 403, 200, 200, 403, 403)  # stack-wide reads: admins and readers
VIEW = (401, 403, 403, 200, 200, 200, 403)  # a queue's stats and jobs: its read/operate groups too
OPERATE = (401, 403, 403, 200, 403, 200, 403)  # changing a queue: admins and its operate groups
READ_JOB = (401, 404, 200, 200, 200, 200, 200)
CHANGE_JOB = (401, 404, 200, 200, 403, 200, 403)
ANY_USER = (401, 200, 200, 200, 200, 200, 200)
ADMIN_CREATES = (401, 403, 403, 201, 403, 403, 403)

MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/health"): Row("/health", (200,) * 7),
    ("GET", "/health/detailed"): Row("/health/detailed", INSPECT),
    ("GET", "/audit"): Row("/audit", INSPECT),
    ("GET", "/quotas/{user_id}"): Row("/quotas/alice", INSPECT),
    ("PUT", "/quotas/{user_id}"): Row("/quotas/alice", ADMIN_ONLY, {"jobsPerMinute": 50}),
    ("DELETE", "/quotas/{user_id}"): Row("/quotas/alice", (401, 403, 403, 204, 403, 403, 403)),
    ("POST", "/jobs"): Row("/jobs", CREATE, JOB),
    ("GET", "/jobs"): Row("/jobs?queue=email-sending", VIEW),
    ("POST", "/jobs/bulk"): Row("/jobs/bulk", ANY_USER, {"jobs": [JOB]}),  # 200 with each item's own status
    ("POST", "/jobs/status"): Row("/jobs/status", ANY_USER, {"jobIds": ["job-owner"]}),  # invisible ids: notFound
    ("GET", "/jobs/user/{user_id}"): Row("/jobs/user/alice", (401, 403, 200, 200, 200, 403, 403)),
    ("GET", "/jobs/user"): Row("/jobs/user", (401, 200, 200, 200, 200, 200, 403)),  # as /jobs/user/{own id}
    ("GET", "/jobs/dashboard"): Row("/jobs/dashboard", INSPECT),
    ("POST", "/jobs/user/{job_id}/cancel"): Row("/jobs/user/{job}/cancel", CHANGE_JOB),
    ("GET", "/jobs/{job_id}"): Row("/jobs/{job}", READ_JOB),
    ("DELETE", "/jobs/{job_id}"): Row("/jobs/{job}", CHANGE_JOB),
    ("POST", "/jobs/{job_id}/retry"): Row("/jobs/{job}/retry", CHANGE_JOB, job_state="cancelled"),
    ("GET", "/jobs/{job_id}/logs"): Row("/jobs/{job}/logs", READ_JOB),
    ("GET", "/jobs/{job_id}/result"): Row("/jobs/{job}/result", READ_JOB),
    ("GET", "/jobs/{job_id}/webhooks"): Row("/jobs/{job}/webhooks", READ_JOB),
    ("GET", "/jobs/{job_id}/dependencies"): Row("/jobs/{job}/dependencies", READ_JOB),
    ("POST", "/flows"): Row("/flows", CREATE, {**JOB, "children": [JOB]}),
    ("GET", "/flows/{job_id}"): Row("/flows/{job}", READ_JOB),
    ("GET", "/queues"): Row("/queues", VIEW),
    ("GET", "/queues/{name}"): Row("/queues/email-sending", VIEW),
    ("POST", "/queues/{name}"): Row("/queues/email-sending", OPERATE, {"action": "resume"}),
    ("DELETE", "/queues/{name}"): Row("/queues/email-sending?status=failed", OPERATE),
    ("PATCH", "/queues/{name}"): Row("/queues/email-sending", OPERATE, {"defaultAttempts": 4}),
    ("GET", "/queues/{name}/jobs"): Row("/queues/email-sending/jobs", VIEW),
    ("POST", "/queues/{name}/pause"): Row("/queues/email-sending/pause", OPERATE),
    ("POST", "/queues/{name}/resume"): Row("/queues/email-sending/resume", OPERATE),
    ("POST", "/queues/{name}/clean"): Row("/queues/email-sending/clean", OPERATE, {"olderThan": 0, "status": "completed"}),
    ("GET", "/queues/{name}/metrics"): Row("/queues/email-sending/metrics", VIEW),
    ("GET", "/queues/{name}/groups"): Row("/queues/email-sending/groups", VIEW),
    ("POST", "/queues/{name}/groups/{key}/pause"): Row("/queues/email-sending/groups/acme/pause", OPERATE),
    ("POST", "/queues/{name}/groups/{key}/resume"): Row("/queues/email-sending/groups/acme/resume", OPERATE),
    ("GET", "/queues/{name}/dead-letters"): Row("/queues/email-sending/dead-letters", VIEW),
    ("DELETE", "/queues/{name}/dead-letters"): Row("/queues/email-sending/dead-letters", OPERATE),
    ("POST", "/queues/{name}/dead-letters/redrive"): Row("/queues/email-sending/dead-letters/redrive", OPERATE, {}),
    ("PUT", "/queues/{name}/processors/{job_type}"): Row("/queues/email-sending/processors/hook", OPERATE, TARGET),
    ("GET", "/queues/{name}/breakers"): Row("/queues/email-sending/breakers", VIEW),
    # No target with a breaker in this world: the callers allowed to operate get the 404 that says so.
    ("POST", "/queues/{name}/breakers/{job_type}/open"): Row("/queues/email-sending/breakers/hook/open", (401, 403, 403, 404, 403, 404, 403)),
    ("POST", "/queues/{name}/breakers/{job_type}/close"): Row("/queues/email-sending/breakers/hook/close", (401, 403, 403, 404, 403, 404, 403)),
    ("POST", "/schedules"): Row("/schedules", ADMIN_CREATES, {**SCHEDULE, "name": "made"}),
    ("GET", "/schedules"): Row("/schedules", INSPECT),
    ("GET", "/schedules/{name}"): Row("/schedules/nightly", INSPECT),
    ("DELETE", "/schedules/{name}"): Row("/schedules/nightly", (401, 403, 403, 204, 403, 403, 403)),
    ("PATCH", "/schedules/{name}"): Row("/schedules/nightly", ADMIN_ONLY, {"limit": 50}),
    ("POST", "/schedules/{name}/pause"): Row("/schedules/nightly/pause", ADMIN_ONLY),
    ("POST", "/schedules/{name}/resume"): Row("/schedules/nightly/resume", ADMIN_ONLY),
    ("POST", "/schedules/{name}/trigger"): Row("/schedules/nightly/trigger", ADMIN_CREATES),
    ("POST", "/scheduler/delayed"): Row("/scheduler/delayed", CREATE, {**JOB, "delay": 60_000}),
    ("POST", "/scheduler/repeating"): Row("/scheduler/repeating", ADMIN_CREATES, {**SCHEDULE, "name": "seeded"}),
    ("POST", "/scheduler/jobs/{name}/trigger"): Row("/scheduler/jobs/nightly/trigger", ADMIN_CREATES),
    ("GET", "/scheduler/stats"): Row("/scheduler/stats", INSPECT),
    ("GET", "/scheduler/health"): Row("/scheduler/health", INSPECT),
    ("GET", "/scheduler/metrics"): Row("/scheduler/metrics", INSPECT),
}

EMAIL_ACCESS = QueueAccess(create=["senders"], read=["support"], operate=["email-ops"], service_clients=["svc-billing"])
ADDRESSES_OTHERS = ("admin", "reader", "operator")  # name alice's jobs with ?userId=alice


def app_routes() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}


def test_every_route_is_in_the_matrix() -> None:
    routes = app_routes()
    assert routes - set(MATRIX) == set(), "routes without a row in MATRIX: give each its expected statuses"
    assert set(MATRIX) - routes == set(), "rows for routes the app no longer has"


def claims_for(role: str) -> dict[str, str] | None:
    return {
        "anonymous": None,
        "other": in_group("bob", "reporters"),
        "owner": in_group("alice", "senders"),
        "admin": admin(),
        "reader": in_group("rita", "readonly"),
        "operator": in_group("olga", "email-ops"),
        "service": service_client("svc-billing"),
    }[role]


def headers_for(role: str) -> dict[str, str] | None:
    return {"X-On-Behalf-Of": "alice"} if role == "service" else None


@pytest.fixture(scope="module")
def world() -> Iterator[Callable[[int, str], str]]:
    """One stack for the whole matrix (provisioning it per row cost minutes): each row gets its own
    jobs of alice's (``arrange``), and the state a row changes (the schedule, the queue's pause) is
    put back before the next."""
    with pytest.MonkeyPatch.context() as mp, in_moto(mp):
        stack = provision(mp)
        scheduling = with_scheduler(stack, mp)
        with emulated_mappings(stack, mp):
            directory = queues.directory()
            policies.update_policy(directory.get("email-sending"), lambda p: p.model_copy(update={"access": EMAIL_ACCESS}))
            policies.update_policy(
                directory.get("report-generation"), lambda p: p.model_copy(update={"access": QueueAccess(create=["reporters"])})
            )

            def arrange(row: int, state: str) -> str:
                """alice's jobs for row ``row`` (``<prefix>-<role>``); returns the prefix."""
                if scheduling.schedules.store.get("nightly") is None:
                    scheduling.schedules.create(ScheduleCreate.model_validate({**SCHEDULE, "name": "nightly"}), ADMIN)
                else:
                    scheduling.schedules.resume("nightly", ADMIN)
                policies.update_policy(directory.get("email-sending"), lambda p: p.model_copy(update={"paused": False}))
                prefix = f"r{row}"
                for role in ROLES:
                    job_id = f"{prefix}-{role}"
                    body = {**JOB, "options": {"jobId": job_id}}
                    send = handler(http_event("POST", "/jobs", body=body, claims=claims_for("owner")), FakeLambdaContext())
                    assert send["statusCode"] == 201, send
                    if state == "cancelled":
                        handler(http_event("DELETE", f"/jobs/{job_id}", claims=claims_for("owner")), FakeLambdaContext())
                return prefix

            yield arrange


ROWS = sorted(MATRIX)


@pytest.mark.parametrize(("method", "template"), ROWS, ids=[f"{m} {p}" for m, p in ROWS])
def test_who_may_call_each_route(world: Callable[[int, str], str], method: str, template: str) -> None:
    row = MATRIX[(method, template)]
    prefix = world(ROWS.index((method, template)), row.job_state)
    got = []
    for role in ROLES:
        path, _, query = row.path.replace("{job}", f"{prefix}-{role}").partition("?")
        if role in ADDRESSES_OTHERS and "{job}" in row.path:
            query = "userId=alice"
        response = handler(
            http_event(method, path, body=row.body, claims=claims_for(role), query=query, headers=headers_for(role)), FakeLambdaContext()
        )
        got.append(response["statusCode"])
        if response["statusCode"] >= 400 and response.get("body"):
            assert json.loads(response["body"])["success"] is False
    assert tuple(got) == row.expected, f"{method} {template}: got {got}"
