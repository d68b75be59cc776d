"""Models of recurring schedules as clients send and see them (``/schedules``).

Free of the AWS SDK and the web stack, so the Python client (jobq_client) types its results with
these very classes; shared/schedules.py holds the use cases and the table.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from shared import cron, strict_json
from shared.camel import CamelView
from shared.client_models import JobOptions
from shared.cron import Recurrence
from shared.models import CamelModel, representable

SCHEDULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$"
ScheduleState = Literal["active", "paused", "completed"]


class ScheduleCreate(CamelModel):
    """``POST /schedules`` (and the seed's ``POST /scheduler/repeating``).

    Either ``cron`` (5-field Unix as in the seed, ``0 2 * * *``, or EventBridge's 6 fields)
    with an optional ``timezone`` (IANA, default UTC), or ``every`` (milliseconds, whole
    minutes). BullMQ's ``repeat: {pattern, tz, every, limit, startDate, endDate}`` is accepted too.
    """

    model_config = ConfigDict(
        defer_build=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "nightly-report",
                    "queue": "report-generation",
                    "type": "generate-report",
                    "data": {"reportType": "daily-sales", "rows": [{"date": "2026-11-23", "total": 42}]},
                    "cron": "0 2 * * *",
                    "timezone": "America/New_York",
                },
                {"name": "heartbeat", "queue": "email-sending", "type": "send-email", "data": {}, "every": 300000, "limit": 10},
            ]
        }
    )

    name: str = Field(
        pattern=SCHEDULE_NAME_PATTERN,
        description="Unique; the schedule is repeat-<name> in the console. Absent (seed 000's body): the job type.",
    )
    queue: str
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    options: JobOptions = Field(default_factory=JobOptions, description="Options of every job it creates (no jobId, runAt or deduplication).")
    cron: str | None = Field(default=None, max_length=256, description="`0 2 * * *` (5 fields) or EventBridge's 6 fields.")
    timezone: str | None = Field(default=None, max_length=64, description="IANA time zone of the cron; default UTC.")
    every: int | None = Field(
        default=None, ge=60_000, le=366 * 86400 * 1000, description="Interval in milliseconds (a whole number of minutes, at most a year)."
    )
    start_date: datetime | None = Field(default=None, description="No firing before this time.")
    end_date: datetime | None = Field(default=None, description="No firing after this time.")
    limit: int | None = Field(default=None, ge=1, le=1_000_000, description="Stop after this many scheduled runs.")
    description: str | None = Field(default=None, max_length=256)

    @field_validator("data")
    @classmethod
    def _strict(cls, data: dict[str, Any]) -> dict[str, Any]:
        return strict_json.check(data, "data")

    @field_validator("start_date", "end_date")
    @classmethod
    def _representable(cls, value: datetime | None) -> datetime | None:
        return representable(value, "startDate/endDate")

    @model_validator(mode="before")
    @classmethod
    def _bullmq_repeat(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        value = dict(value)
        repeat = value.pop("repeat", None)
        if isinstance(repeat, dict):
            for key, item in repeat.items():
                value.setdefault(key, item)
        for alias, name in (("pattern", "cron"), ("tz", "timezone"), ("cronExpression", "cron")):
            if alias in value:
                value.setdefault(name, value.pop(alias))
        if value.get("name") is None and isinstance(value.get("type"), str):
            # Seed 000 names no schedule: it is addressed by its job name (POST /scheduler/jobs/{jobName}/trigger).
            if not re.fullmatch(SCHEDULE_NAME_PATTERN, value["type"]):
                raise ValueError(f"type '{value['type']}' cannot name a schedule (letters, digits, _ . -, up to 48): give a name")
            value["name"] = value["type"]
        return value

    def same_as(self, schedule: Schedule) -> bool:
        """True if ``schedule`` is what this request would create (a client re-registering at start-up)."""
        options = self.options.model_dump(by_alias=True, mode="json", exclude_none=True, exclude_defaults=True)
        mine = (self.queue, self.type, self.data, options, self.cron, self.every, self.limit)
        theirs = (schedule.queue, schedule.type, schedule.data, schedule.options, schedule.cron, schedule.every, schedule.limit)
        return mine == theirs and (self.timezone or "UTC") == schedule.timezone


class SchedulePatch(CamelModel):
    """``PATCH /schedules/{name}``: change when it fires and how often, keeping its runs and its job template.

    Only the fields given change; ``cron`` replaces ``every`` and the reverse; ``limit: null`` removes the limit.
    """

    model_config = ConfigDict(defer_build=True, json_schema_extra={"examples": [{"cron": "30 3 * * 1-5", "timezone": "Europe/Paris", "limit": 100}]})

    cron: str | None = Field(default=None, max_length=256, description="`0 2 * * *` (5 fields) or EventBridge's 6 fields.")
    every: int | None = Field(default=None, ge=60_000, description="Interval in milliseconds (a whole number of minutes).")
    timezone: str | None = Field(default=None, max_length=64, description="IANA time zone of the cron.")
    limit: int | None = Field(default=None, ge=1, le=1_000_000, description="Stop after this many scheduled runs; null: no limit.")
    description: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _something(self) -> SchedulePatch:
        if not self.model_fields_set:
            raise ValueError("give at least one of cron, every, timezone, limit, description")
        if self.cron is not None and self.every is not None:
            raise ValueError("give cron or every, not both")
        return self


class Schedule(CamelView):
    """A recurring schedule as stored and as a client sees it."""

    name: str
    queue: str
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    cron: str | None = None
    timezone: str = "UTC"
    every: int | None = None
    expression: str
    start_date: str | None = None
    end_date: str | None = None
    limit: int | None = None
    description: str | None = None
    state: ScheduleState = "active"
    run_count: int = 0
    manual_runs: int = 0
    created_by: str
    created_at: str
    updated_at: str
    last_run_at: str | None = None
    last_scheduled_time: str | None = None
    last_job_id: str | None = None
    last_error: str | None = None
    next_run_at: str | None = None  # computed when read
    schedule_name: str = ""  # the EventBridge Scheduler schedule
    version: int = 1

    def recurrence(self) -> Recurrence:  # the field ``cron`` shadows the module in the class body
        return cron.recurrence(cron=self.cron, every_ms=self.every, timezone=self.timezone)


class SchedulePage(CamelModel):
    schedules: list[Schedule]
    next_cursor: str | None = None


class FiringResult(CamelModel):
    schedule: str
    outcome: Literal["created", "duplicate", "skipped", "failed"]
    job_id: str | None = None
    reason: str | None = None
