"""Recurring schedules: expressions, the EventBridge schedule, exactly one job per firing, limits, pause, trigger."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from api.main import handler as api_handler
from functions.scheduler.handler import handler as scheduler_handler
from shared import cron
from shared.adapters import scheduler
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.models import JobRef
from shared.schedules import ScheduleCreate, firing_job_id
from shared.status import JobStatus
from tests.unit.api_events import admin as admin_claims
from tests.unit.api_events import http_event, user
from tests.unit.conftest import FakeLambdaContext
from tests.unit.scheduling import ADMIN, ALICE, GROUP, TARGET_ARN, Scheduling, scheduling_fixture  # noqa: F401 (the fixture)

EMAIL = {"to": "a@example.com", "subject": "Hi", "body": "Hello"}


def new(name: str = "nightly", **fields: Any) -> ScheduleCreate:
    body = {"name": name, "queue": "email-sending", "type": "send-email", "data": EMAIL, **fields}
    if "cron" not in fields and "every" not in fields and "repeat" not in fields:
        body["cron"] = "0 2 * * *"
    return ScheduleCreate.model_validate(body)


# ---- expressions --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "eventbridge"),
    [
        ("0 2 * * *", "cron(0 2 * * ? *)"),  # the seed's
        ("*/15 * * * *", "cron(*/15 * * * ? *)"),
        ("0 9 * * 1-5", "cron(0 9 ? * MON,TUE,WED,THU,FRI *)"),
        ("0 0 * * 0", "cron(0 0 ? * SUN *)"),
        ("0 0 * * 7", "cron(0 0 ? * SUN *)"),
        ("30 6 1 * *", "cron(30 6 1 * ? *)"),
        ("0 2 * * ? *", "cron(0 2 * * ? *)"),  # EventBridge's own 6 fields pass as they are
        ("0 9 ? * MON-FRI *", "cron(0 9 ? * MON-FRI *)"),
    ],
)
def test_cron_expressions_become_eventbridges(given: str, eventbridge: str) -> None:
    assert cron.recurrence(cron=given, every_ms=None, timezone="America/New_York").expression == eventbridge


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("0 2 * *", "has 4 fields"),
        ("0 25 * * *", "not valid"),
        ("61 * * * *", "not valid"),
        ("0 2 1 * 1", "cannot combine a day-of-month and a day-of-week"),
        ("0 2 * * 8", "out of range"),
        ("0 2 * * * *", "exactly one of day-of-month and day-of-week must be ?"),
        ("0 2 * * ? 2031", "year field must be *"),
    ],
)
def test_invalid_cron_says_what_is_wrong(given: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        cron.recurrence(cron=given, every_ms=None, timezone=None)


@pytest.mark.parametrize(("every", "rate"), [(60_000, "rate(1 minute)"), (300_000, "rate(5 minutes)"), (3_600_000, "rate(1 hour)"),
                                             (7_200_000, "rate(2 hours)"), (86_400_000, "rate(1 day)"), (5_400_000, "rate(90 minutes)")])
def test_intervals_become_rates(every: int, rate: str) -> None:
    assert cron.rate_expression(every) == rate


def test_intervals_are_whole_minutes() -> None:
    with pytest.raises(Invalid, match="whole minutes"):
        cron.rate_expression(90_000)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(Invalid, match="unknown time zone 'America/Gotham'"):
        cron.recurrence(cron="0 2 * * *", every_ms=None, timezone="America/Gotham")


def test_next_runs_follow_the_time_zone_across_daylight_saving() -> None:
    nightly = cron.recurrence(cron="0 2 * * *", every_ms=None, timezone="America/New_York")
    assert nightly.next_after(datetime(2024, 3, 9, 12, tzinfo=UTC)) == datetime(2024, 3, 10, 7, tzinfo=UTC)  # EST
    assert nightly.next_after(datetime(2024, 3, 10, 12, tzinfo=UTC)) == datetime(2024, 3, 11, 6, tzinfo=UTC)  # EDT


def test_bullmq_repeat_options_are_accepted() -> None:
    request = ScheduleCreate.model_validate(
        {"name": "r", "queue": "email-sending", "type": "send-email", "repeat": {"pattern": "0 2 * * *", "tz": "America/New_York", "limit": 3}}
    )
    assert (request.cron, request.timezone, request.limit) == ("0 2 * * *", "America/New_York", 3)


# ---- the EventBridge schedule ---------------------------------------------------------------------
def test_a_schedule_is_an_eventbridge_schedule_in_the_stacks_group(scheduling: Scheduling) -> None:
    created = scheduling.schedules.create(new(timezone="America/New_York"), ADMIN)

    eventbridge = scheduling.schedule("repeat-nightly")
    assert eventbridge["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert eventbridge["ScheduleExpressionTimezone"] == "America/New_York"
    assert eventbridge["State"] == "ENABLED" and eventbridge["GroupName"] == GROUP
    assert eventbridge["Target"]["Arn"] == TARGET_ARN
    assert json.loads(eventbridge["Target"]["Input"])["scheduledTime"] == "<aws.scheduler.scheduled-time>"
    assert created.state == "active" and created.next_run_at and created.next_run_at.endswith(("06:00:00.000Z", "07:00:00.000Z"))


def test_only_admins_manage_schedules(scheduling: Scheduling) -> None:
    with pytest.raises(Forbidden):
        scheduling.schedules.create(new(), ALICE)
    with pytest.raises(Forbidden):
        scheduling.schedules.list(ALICE, limit=10, cursor=None)


def test_a_name_is_taken_once(scheduling: Scheduling) -> None:
    scheduling.schedules.create(new(), ADMIN)
    with pytest.raises(Conflict, match="already exists"):
        scheduling.schedules.create(new(every=60_000, cron=None), ADMIN)


def test_a_schedule_must_name_a_queue_and_a_type_that_exist(scheduling: Scheduling) -> None:
    with pytest.raises(Invalid, match="unknown queue"):
        scheduling.schedules.create(new(queue="nope"), ADMIN)
    with pytest.raises(Invalid, match="no processor for type"):
        scheduling.schedules.create(new(type="nope"), ADMIN)
    with pytest.raises(Invalid, match="cannot have jobId"):
        scheduling.schedules.create(new(options={"jobId": "x"}), ADMIN)
    assert scheduling.schedule_names() == []


# ---- firings ---------------------------------------------------------------------------------------
def test_a_firing_delivered_twice_creates_one_job(scheduling: Scheduling) -> None:
    scheduling.schedules.create(new(), ADMIN)

    first = scheduling.schedules.fire("nightly", "2030-01-01T07:00:00Z")
    again = scheduling.schedules.fire("nightly", "2030-01-01T07:00:00Z")

    assert first.outcome == "created" and again.outcome == "duplicate" and first.job_id == again.job_id
    job = scheduling.stack.store.require("root", firing_job_id("nightly", "2030-01-01T07:00:00Z"))
    assert job.status is JobStatus.WAITING and job.user_id == "root" and job.data == EMAIL
    assert len(scheduling.stack.receive("email-sending")) == 1
    assert scheduling.schedules.get("nightly", ADMIN).run_count == 1


def test_each_firing_creates_its_own_job(scheduling: Scheduling) -> None:
    scheduling.schedules.create(new(options={"attempts": 7}), ADMIN)

    a = scheduling.schedules.fire("nightly", "2030-01-01T07:00:00Z")
    b = scheduling.schedules.fire("nightly", "2030-01-02T07:00:00Z")

    assert a.job_id != b.job_id
    assert scheduling.stack.store.require("root", b.job_id or "").max_attempts == 7
    record = scheduling.schedules.get("nightly", ADMIN)
    assert record.run_count == 2 and record.last_job_id == b.job_id


def test_a_schedule_stops_at_its_limit(scheduling: Scheduling) -> None:
    scheduling.schedules.create(new(limit=2), ADMIN)

    outcomes = [scheduling.schedules.fire("nightly", f"2030-01-0{day}T07:00:00Z").outcome for day in (1, 2, 3)]

    assert outcomes == ["created", "created", "skipped"]
    record = scheduling.schedules.get("nightly", ADMIN)
    assert record.state == "completed" and record.run_count == 2 and record.next_run_at is None
    assert scheduling.schedule("repeat-nightly")["State"] == "DISABLED"


def test_a_paused_schedule_creates_nothing_until_resumed(scheduling: Scheduling) -> None:
    scheduling.schedules.create(new(), ADMIN)

    paused = scheduling.schedules.pause("nightly", ADMIN)
    skipped = scheduling.schedules.fire("nightly", "2030-01-01T07:00:00Z")
    assert paused.state == "paused" and skipped.outcome == "skipped"
    assert scheduling.schedule("repeat-nightly")["State"] == "DISABLED"

    resumed = scheduling.schedules.resume("nightly", ADMIN)
    assert resumed.state == "active" and scheduling.schedule("repeat-nightly")["State"] == "ENABLED"
    assert scheduling.schedules.fire("nightly", "2030-01-02T07:00:00Z").outcome == "created"


def test_deleting_removes_the_eventbridge_schedule_and_later_firings_do_nothing(scheduling: Scheduling) -> None:
    scheduling.schedules.create(new(), ADMIN)

    scheduling.schedules.delete("nightly", ADMIN)

    assert scheduling.schedule_names() == []
    with pytest.raises(NotFound):
        scheduling.schedules.get("nightly", ADMIN)
    assert scheduling.schedules.fire("nightly", "2030-01-01T07:00:00Z").outcome == "skipped"
    assert scheduling.stack.store.get("root", firing_job_id("nightly", "2030-01-01T07:00:00Z")) is None


def test_trigger_runs_one_now_without_counting_toward_the_limit(scheduling: Scheduling) -> None:
    scheduling.schedules.create(new(limit=1), ADMIN)

    job = scheduling.schedules.trigger("nightly", ADMIN)

    assert job.job_id.startswith("repeat:nightly:manual:") and job.status is JobStatus.WAITING
    record = scheduling.schedules.get("nightly", ADMIN)
    assert record.run_count == 0 and record.manual_runs == 1 and record.state == "active"


def test_the_scheduler_function_turns_schedulers_event_into_the_firings_job(scheduling: Scheduling) -> None:
    scheduling.schedules.create(new(), ADMIN)
    event = {"jobq": "schedule-firing", "schedule": "nightly", "scheduledTime": "2030-01-01T07:00:00Z", "executionId": "e-1", "attempt": "1"}

    first = scheduler_handler(event, FakeLambdaContext())
    retried = scheduler_handler({**event, "attempt": "2"}, FakeLambdaContext())

    assert first["outcome"] == "created" and retried["outcome"] == "duplicate"
    assert first["jobId"] == "repeat:nightly:20300101T070000Z"
    assert scheduler_handler({"something": "else"}, FakeLambdaContext())["outcome"] == "failed"


# ---- over HTTP -------------------------------------------------------------------------------------
def call(method: str, path: str, body: Any = None, *, admin: bool = True) -> tuple[int, Any]:
    route, _, query = path.partition("?")
    claims = admin_claims() if admin else user("alice")
    response = api_handler(http_event(method, route, body=body, claims=claims, query=query), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def test_the_schedule_routes(scheduling: Scheduling) -> None:
    status, created = call("POST", "/schedules", {"name": "tick", "queue": "email-sending", "type": "send-email", "data": EMAIL, "every": 300000})
    assert status == 201 and created["data"]["expression"] == "rate(5 minutes)"
    assert call("POST", "/schedules", {"name": "x", "queue": "email-sending", "type": "send-email", "cron": "0 2 * * *", "timezone": "Nowhere/City"})[1][
        "error"
    ]["message"].startswith("unknown time zone 'Nowhere/City'")
    assert call("GET", "/schedules", admin=False)[0] == 403
    assert [s["name"] for s in call("GET", "/schedules")[1]["data"]["schedules"]] == ["tick"]
    assert call("POST", "/schedules/tick/pause")[1]["data"]["state"] == "paused"
    assert call("POST", "/schedules/tick/resume")[1]["data"]["state"] == "active"
    status, job = call("POST", "/scheduler/jobs/tick/trigger")
    assert status == 201 and job["data"]["jobId"].startswith("repeat:tick:manual:")
    status, seed = call("POST", "/scheduler/repeating", {"name": "seed", "queue": "email-sending", "type": "send-email", "data": EMAIL,
                                                          "cron": "0 2 * * *", "timezone": "America/New_York"})
    assert status == 201 and seed["data"]["timezone"] == "America/New_York"
    stats = call("GET", "/scheduler/stats")[1]["data"]
    assert stats["repeating"] == {"total": 2, "active": 2, "paused": 0, "completed": 0} and stats["manualRuns"] == 1
    assert {"runsLast24h", "nextRuns", "delayed"} <= set(stats)
    metrics = call("GET", "/scheduler/metrics?hours=3")[1]["data"]
    assert metrics["totals"]["manual"] == 1 and len(metrics["series"]) == 4
    assert call("GET", "/scheduler/health")[1]["data"]["checks"]["scheduler"]["status"] == "up"
    assert call("DELETE", "/schedules/tick")[0] == 204
    assert call("GET", "/schedules/tick")[0] == 404


def test_delayed_jobs_through_the_seed_route(scheduling: Scheduling) -> None:
    base = {"queue": "email-sending", "type": "send-email", "data": EMAIL}
    status, body = call("POST", "/scheduler/delayed", {**base, "delay": 3_600_000}, admin=False)
    assert status == 201 and body["data"]["status"] == "delayed"
    assert scheduling.schedule_names() == [scheduler.delay_schedule_name(JobRef("alice", body["data"]["jobId"]))]
    status, body = call("POST", "/scheduler/delayed", base, admin=False)
    assert status == 400 and "delay (ms) or runAt" in body["error"]["message"]
