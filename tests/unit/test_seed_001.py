"""Seed 001 (BullMQ in an Express app): its priorities, the caller's own jobs, and the admin dashboard.

Its ``GET /api/jobs/user/:jobId`` collides with seed 000's ``GET /jobs/user/{userId}``: seed 000
wins (a user's jobs), and a single job is ``GET /jobs/{jobId}``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.main import handler
from functions.consumer.handler import handler as consumer
from tests.unit.api_events import admin, http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event
from tests.unit.scheduling import Scheduling, scheduling_fixture  # noqa: F401 (the fixture)
from tests.unit.stream_feed import StreamFeed

EMAIL = {"to": "user@example.com", "subject": "Welcome!", "template": "welcome", "body": "Hello John"}


def call(method: str, path: str, *, body: Any = None, claims: dict[str, str] | None = None) -> tuple[int, Any]:
    route, _, query = path.partition("?")
    response = handler(http_event(method, route, body=body, claims=claims, query=query), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def email_job(owner: str = "alice", **options: Any) -> dict[str, Any]:
    status, body = call("POST", "/jobs", body={"queue": "email-sending", "type": "send-email", "data": EMAIL, "options": options}, claims=user(owner))
    assert status == 201, body
    return dict(body["data"])


# ---- JOB_PRIORITY ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("given", "stored", "name"), [(10, 10, "critical"), (5, 5, "high"), (0, 0, "normal"), (-5, -5, "low"), (3, 3, None)])
def test_numeric_priorities_higher_is_more_important_negative_allowed(stack: Stack, given: int, stored: int, name: str | None) -> None:
    job = email_job(priority=given)
    assert job["priority"] == stored and job["priorityName"] == name
    assert call("GET", f"/jobs/{job['jobId']}", claims=user("alice"))[1]["data"]["priority"] == stored


@pytest.mark.parametrize(("given", "stored"), [("critical", 10), ("high", 5), ("normal", 0), ("low", -5), ("bulk", -10), ("HIGH", 5)])
def test_named_priorities_map_to_the_numbers(stack: Stack, given: str, stored: int) -> None:
    assert email_job(priority=given)["priority"] == stored


def test_an_unknown_priority_is_a_400_listing_the_valid_ones(stack: Stack) -> None:
    status, body = call(
        "POST", "/jobs", body={"queue": "email-sending", "type": "send-email", "data": EMAIL, "options": {"priority": "urgent"}}, claims=user("alice")
    )
    assert status == 400
    message = body["error"]["message"]
    assert "urgent" in message and all(name in message for name in ("critical", "high", "normal", "low", "bulk"))
    assert call("POST", "/jobs", body={"queue": "email-sending", "type": "send-email", "data": EMAIL, "options": {"priority": True}}, claims=user("alice"))[0] == 400
    assert call("POST", "/jobs", body={"queue": "email-sending", "type": "send-email", "data": EMAIL, "options": {"priority": 10**6}}, claims=user("alice"))[0] == 400


# ---- user endpoints ------------------------------------------------------------------------------------
def test_get_jobs_user_lists_the_callers_own_jobs(stack: Stack) -> None:
    mine = [email_job("alice")["jobId"] for _ in range(2)]
    email_job("bob")

    status, body = call("GET", "/jobs/user", claims=user("alice"))

    assert status == 200 and [j["jobId"] for j in body["data"]["jobs"]] == mine[::-1]
    assert call("GET", "/jobs/user?page=2&limit=1", claims=user("alice"))[1]["data"]["jobs"][0]["jobId"] == mine[0]


def test_seed_000_wins_jobs_user_with_a_path_segment_is_a_users_jobs(stack: Stack) -> None:
    job = email_job("alice")
    # seed 001 would read this as one job; seed 000 (canonical) as the jobs of user "<jobId>": none, and not alice's to see
    assert call("GET", f"/jobs/user/{job['jobId']}", claims=user("alice"))[0] == 403
    assert call("GET", f"/jobs/{job['jobId']}", claims=user("alice"))[1]["data"]["jobId"] == job["jobId"]


def test_post_jobs_user_job_cancel_cancels_your_own_job_only(stack: Stack) -> None:
    job = email_job("alice")
    assert call("POST", f"/jobs/user/{job['jobId']}/cancel", claims=user("bob"))[0] == 404
    status, body = call("POST", f"/jobs/user/{job['jobId']}/cancel", claims=user("alice"))
    assert status == 200 and body["data"]["status"] == "cancelled"


# ---- the admin dashboard -----------------------------------------------------------------------------------
def test_the_dashboard_shows_queues_failures_active_jobs_and_the_next_schedules(scheduling: Scheduling) -> None:
    stack = scheduling.stack
    cancelled = email_job("alice")
    call("DELETE", f"/jobs/{cancelled['jobId']}", claims=user("alice"))
    bad = call(  # the processor fails it for good: no recipient
        "POST", "/jobs", body={"queue": "email-sending", "type": "send-email", "data": {"subject": "no recipient"}}, claims=user("alice")
    )[1]["data"]
    email_job("bob")
    while messages := stack.receive("email-sending"):
        consumer(sqs_event(stack, "email-sending", messages), FakeLambdaContext())
    StreamFeed(stack.table_name).deliver()
    created = call(
        "POST",
        "/schedules",
        body={"name": "nightly", "queue": "email-sending", "type": "send-email", "data": EMAIL, "cron": "0 2 * * *"},
        claims=admin(),
    )
    assert created[0] == 201, created

    assert call("GET", "/jobs/dashboard", claims=user("alice"))[0] == 403
    status, body = call("GET", "/jobs/dashboard", claims=admin())

    board = body["data"]
    assert status == 200
    assert [q["name"] for q in board["queues"]] == ["email-sending", "report-generation", "video-processing"]
    assert board["totals"]["completed"] == 1 and board["totals"]["failed"] == 1 and board["totals"]["cancelled"] == 1
    assert [j["jobId"] for j in board["recentFailures"]] == [bad["jobId"]] and "missing to" in board["recentFailures"][0]["error"]
    assert board["activeJobs"] == []
    assert [s["name"] for s in board["upcomingSchedules"]] == ["nightly"] and board["upcomingSchedules"][0]["nextRunAt"]
    assert board["healthStatus"] in ("healthy", "warning", "error")


def test_a_job_id_that_a_route_takes_is_refused(stack: Stack) -> None:
    status, body = call(
        "POST", "/jobs", body={"queue": "email-sending", "type": "send-email", "data": EMAIL, "options": {"jobId": "dashboard"}}, claims=user("alice")
    )
    assert status == 400 and "taken by a route" in body["error"]["message"]


def test_the_seeds_api_prefix_reaches_the_same_routes(stack: Stack) -> None:
    job = email_job("alice")
    status, body = call("GET", "/api/jobs/user", claims=user("alice"))
    assert status == 200 and [j["jobId"] for j in body["data"]["jobs"]] == [job["jobId"]]
    assert call("GET", f"/api/v1/jobs/{job['jobId']}", claims=user("alice"))[1]["data"]["jobId"] == job["jobId"]
    assert call("GET", "/api/jobs/dashboard", claims=admin())[0] == 200
    assert call("GET", "/apiary", claims=user("alice"))[0] == 404
