"""Editing a recurring schedule in place (PATCH /schedules/{name}): cron, interval, time zone, limit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.main import handler as api_handler
from shared.errors import Conflict, Forbidden, Invalid
from shared.schedules import ScheduleCreate, SchedulePatch
from tests.unit.api_events import admin as admin_claims
from tests.unit.api_events import http_event, user
from tests.unit.conftest import FakeLambdaContext
from tests.unit.scheduling import ADMIN, ALICE, Scheduling, scheduling_fixture  # noqa: F401 (the fixture)

EMAIL = {"to": "a@example.com", "subject": "Hi", "body": "Hello"}


def create(scheduling: Scheduling, name: str = "nightly", **fields: Any) -> None:
    body = {"name": name, "queue": "email-sending", "type": "send-email", "data": EMAIL, "cron": "0 2 * * *", **fields}
    scheduling.schedules.create(ScheduleCreate.model_validate(body), ADMIN)


def test_a_new_cron_and_time_zone_change_the_eventbridge_schedule_and_keep_its_job_template(scheduling: Scheduling) -> None:
    create(scheduling, limit=10)

    changed = scheduling.schedules.update("nightly", SchedulePatch(cron="30 4 * * 1-5", timezone="Asia/Tokyo", limit=20), ADMIN)

    remote = scheduling.schedule("repeat-nightly")
    assert remote["ScheduleExpression"] == "cron(30 4 ? * MON,TUE,WED,THU,FRI *)"
    assert remote["ScheduleExpressionTimezone"] == "Asia/Tokyo" and remote["State"] == "ENABLED"
    assert (changed.cron, changed.timezone, changed.limit, changed.state) == ("30 4 * * 1-5", "Asia/Tokyo", 20, "active")
    assert changed.data == EMAIL and changed.queue == "email-sending" and changed.next_run_at


def test_an_interval_replaces_a_cron_and_a_paused_schedule_stays_paused(scheduling: Scheduling) -> None:
    create(scheduling)
    scheduling.schedules.pause("nightly", ADMIN)

    changed = scheduling.schedules.update("nightly", SchedulePatch(every=600_000), ADMIN)

    assert (changed.cron, changed.every, changed.state) == (None, 600_000, "paused")
    remote = scheduling.schedule("repeat-nightly")
    assert remote["ScheduleExpression"] == "rate(10 minutes)" and remote["State"] == "DISABLED"


def test_a_null_limit_removes_it_and_a_limit_at_or_below_the_runs_made_is_refused(scheduling: Scheduling) -> None:
    create(scheduling, limit=3)
    scheduling.schedules.fire("nightly", "2030-01-01T02:00:00Z")

    assert scheduling.schedules.update("nightly", SchedulePatch.model_validate({"limit": None}), ADMIN).limit is None
    with pytest.raises(Invalid, match="not above the 1 runs"):
        scheduling.schedules.update("nightly", SchedulePatch(limit=1), ADMIN)


def test_bad_edits_are_refused_and_change_nothing(scheduling: Scheduling) -> None:
    create(scheduling, limit=1)
    with pytest.raises(Invalid):
        scheduling.schedules.update("nightly", SchedulePatch(cron="0 25 * * *"), ADMIN)
    with pytest.raises(Invalid):
        scheduling.schedules.update("nightly", SchedulePatch(timezone="Mars/Olympus"), ADMIN)
    with pytest.raises(Forbidden):
        scheduling.schedules.update("nightly", SchedulePatch(limit=5), ALICE)
    assert scheduling.schedule("repeat-nightly")["ScheduleExpression"] == "cron(0 2 * * ? *)"

    scheduling.schedules.fire("nightly", "2030-01-01T02:00:00Z")  # its one run: completed
    with pytest.raises(Conflict):
        scheduling.schedules.update("nightly", SchedulePatch(limit=5), ADMIN)


def test_patch_schedules_over_http(scheduling: Scheduling) -> None:
    create(scheduling)

    def patch(body: Any, claims: dict[str, str]) -> tuple[int, dict[str, Any]]:
        response = api_handler(http_event("PATCH", "/schedules/nightly", body=body, claims=claims), FakeLambdaContext())
        return response["statusCode"], json.loads(response["body"])

    status, body = patch({"cron": "0 6 * * *", "timezone": "Europe/Paris"}, admin_claims())
    assert status == 200 and body["data"]["cron"] == "0 6 * * *" and body["data"]["timezone"] == "Europe/Paris"
    assert patch({}, admin_claims())[0] == 400
    assert patch({"cron": "0 6 * * *", "every": 600000}, admin_claims())[0] == 400
    assert patch({"limit": 5}, user("alice"))[0] == 403
