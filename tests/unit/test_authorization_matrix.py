"""Who may call what: every route of the app x {anonymous, another user, the owner, an admin}.

The routes come from the app's own OpenAPI document, so a new route fails
``test_every_route_is_in_the_matrix`` until it has a row here. "owner" is alice, who owns
the jobs the job routes name; "another user" is bob; the admin names alice's jobs with
``?userId=alice``. On admin routes alice and bob are both plain users.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from api.app import app
from api.main import handler
from infra.local.esm import MappingRegistry
from shared.schedules import ScheduleCreate
from tests.unit.api_events import admin, http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack
from tests.unit.scheduling import ADMIN, Scheduling, scheduling_fixture  # noqa: F401 (the fixture)
from tests.unit.test_queues import mappings  # noqa: F401 (the fixture: pause and resume reach the Lambda API)

ROLES = ("anonymous", "other", "owner", "admin")
EMAIL = {"to": "a@example.com", "subject": "s", "body": "b"}
JOB = {"queue": "email-sending", "type": "send-email", "data": EMAIL}
SCHEDULE = {"queue": "email-sending", "type": "send-email", "data": EMAIL, "cron": "0 2 * * *"}
TARGET = {"kind": "http", "url": "https://worker.example.com/jobs", "timeoutSeconds": 10}


@dataclass(frozen=True)
class Row:
    """One route: the request each role sends, and the status each role gets."""

    path: str  # concrete; "{job}" becomes a job of alice's, one per role
    expected: tuple[int, int, int, int]  # anonymous, other, owner, admin
    body: Any = None
    job_state: str = "waiting"  # the state alice's jobs are in before the call


USER = (401, 201, 201, 201)
ADMIN_ONLY = (401, 403, 403, 200)
OWNER = (401, 404, 200, 200)

MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/health"): Row("/health", (200, 200, 200, 200)),
    ("GET", "/health/detailed"): Row("/health/detailed", ADMIN_ONLY),
    ("POST", "/jobs"): Row("/jobs", USER, JOB),
    ("GET", "/jobs"): Row("/jobs?queue=email-sending", ADMIN_ONLY),
    ("POST", "/jobs/bulk"): Row("/jobs/bulk", (401, 200, 200, 200), {"jobs": [JOB]}),
    ("GET", "/jobs/user/{user_id}"): Row("/jobs/user/alice", (401, 403, 200, 200)),
    ("GET", "/jobs/{job_id}"): Row("/jobs/{job}", OWNER),
    ("DELETE", "/jobs/{job_id}"): Row("/jobs/{job}", OWNER),
    ("POST", "/jobs/{job_id}/retry"): Row("/jobs/{job}/retry", OWNER, job_state="cancelled"),
    ("GET", "/jobs/{job_id}/logs"): Row("/jobs/{job}/logs", OWNER),
    ("GET", "/queues"): Row("/queues", ADMIN_ONLY),
    ("GET", "/queues/{name}"): Row("/queues/email-sending", ADMIN_ONLY),
    ("PATCH", "/queues/{name}"): Row("/queues/email-sending", ADMIN_ONLY, {"defaultAttempts": 4}),
    ("GET", "/queues/{name}/jobs"): Row("/queues/email-sending/jobs", ADMIN_ONLY),
    ("POST", "/queues/{name}/pause"): Row("/queues/email-sending/pause", ADMIN_ONLY),
    ("POST", "/queues/{name}/resume"): Row("/queues/email-sending/resume", ADMIN_ONLY),
    ("POST", "/queues/{name}/clean"): Row("/queues/email-sending/clean", ADMIN_ONLY, {"olderThan": 0, "status": "completed"}),
    ("GET", "/queues/{name}/metrics"): Row("/queues/email-sending/metrics", ADMIN_ONLY),
    ("GET", "/queues/{name}/dead-letters"): Row("/queues/email-sending/dead-letters", ADMIN_ONLY),
    ("DELETE", "/queues/{name}/dead-letters"): Row("/queues/email-sending/dead-letters", ADMIN_ONLY),
    ("POST", "/queues/{name}/dead-letters/redrive"): Row("/queues/email-sending/dead-letters/redrive", ADMIN_ONLY, {}),
    ("PUT", "/queues/{name}/processors/{job_type}"): Row("/queues/email-sending/processors/hook", ADMIN_ONLY, TARGET),
    ("POST", "/schedules"): Row("/schedules", (401, 403, 403, 201), {**SCHEDULE, "name": "made"}),
    ("GET", "/schedules"): Row("/schedules", ADMIN_ONLY),
    ("GET", "/schedules/{name}"): Row("/schedules/nightly", ADMIN_ONLY),
    ("DELETE", "/schedules/{name}"): Row("/schedules/nightly", (401, 403, 403, 204)),
    ("PATCH", "/schedules/{name}"): Row("/schedules/nightly", ADMIN_ONLY, {"limit": 50}),
    ("POST", "/schedules/{name}/pause"): Row("/schedules/nightly/pause", ADMIN_ONLY),
    ("POST", "/schedules/{name}/resume"): Row("/schedules/nightly/resume", ADMIN_ONLY),
    ("POST", "/schedules/{name}/trigger"): Row("/schedules/nightly/trigger", (401, 403, 403, 201)),
    ("POST", "/scheduler/delayed"): Row("/scheduler/delayed", USER, {**JOB, "delay": 60_000}),
    ("POST", "/scheduler/repeating"): Row("/scheduler/repeating", (401, 403, 403, 201), {**SCHEDULE, "name": "seeded"}),
    ("POST", "/scheduler/jobs/{name}/trigger"): Row("/scheduler/jobs/nightly/trigger", (401, 403, 403, 201)),
    ("GET", "/scheduler/stats"): Row("/scheduler/stats", ADMIN_ONLY),
    ("GET", "/scheduler/health"): Row("/scheduler/health", ADMIN_ONLY),
    ("GET", "/scheduler/metrics"): Row("/scheduler/metrics", ADMIN_ONLY),
}


def app_routes() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}


def test_every_route_is_in_the_matrix() -> None:
    routes = app_routes()
    assert routes - set(MATRIX) == set(), "routes without a row in MATRIX: give each its expected statuses"
    assert set(MATRIX) - routes == set(), "rows for routes the app no longer has"


def claims_for(role: str) -> dict[str, str] | None:
    return {"anonymous": None, "other": user("bob"), "owner": user("alice"), "admin": admin()}[role]


@pytest.fixture
def world(scheduling: Scheduling, mappings: MappingRegistry) -> Iterator[Callable[[str], None]]:  # noqa: F811
    """The schedule the schedule routes name; alice's jobs are made per row (``arrange``)."""
    scheduling.schedules.create(ScheduleCreate.model_validate({**SCHEDULE, "name": "nightly"}), ADMIN)

    def arrange(state: str) -> None:
        for role in ROLES:
            send = handler(http_event("POST", "/jobs", body={**JOB, "options": {"jobId": f"job-{role}"}}, claims=user("alice")), FakeLambdaContext())
            assert send["statusCode"] == 201, send
            if state == "cancelled":
                handler(http_event("DELETE", f"/jobs/job-{role}", claims=user("alice")), FakeLambdaContext())

    yield arrange


@pytest.mark.parametrize(("method", "template"), sorted(MATRIX), ids=[f"{m} {p}" for m, p in sorted(MATRIX)])
def test_who_may_call_each_route(world: Callable[[str], None], stack: Stack, method: str, template: str) -> None:
    row = MATRIX[(method, template)]
    world(row.job_state)
    got = []
    for role in ROLES:
        path, _, query = row.path.replace("{job}", f"job-{role}").partition("?")
        if role == "admin" and "{job}" in row.path:
            query = "userId=alice"
        response = handler(http_event(method, path, body=row.body, claims=claims_for(role), query=query), FakeLambdaContext())
        got.append(response["statusCode"])
        if response["statusCode"] >= 400 and response.get("body"):
            assert json.loads(response["body"])["success"] is False
    assert tuple(got) == row.expected, f"{method} {template}: got {got}"
