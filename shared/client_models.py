"""What a client sends and gets back about jobs: the API's request, view and page models.

Apart from shared/models.py (what is stored, and the targets and queues the consumer reads) so a
consumer's cold start neither imports nor creates them: it never answers a client.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import ConfigDict, Field, field_validator, model_validator

from shared import strict_json
from shared.camel import CamelModel, CamelView
from shared.flow_control import GROUP_KEY_PATTERN
from shared.models import (
    CLIENT_JOB_ID_PATTERN,
    GENERIC_TASK_FIELDS,
    GENERIC_TASK_TYPE,
    JOB_ID_PATTERN,
    NAME_PATTERN,
    RESERVED_JOB_IDS,
    TYPE_PATTERN,
    AttemptRecord,
    Backoff,
    Deduplication,
    Job,
    ParentLink,
    WebhookOptions,
    representable,
)
from shared.priority import Priority, parse_priority, priority_name
from shared.status import JobStatus


class JobOptions(CamelModel):
    priority: Priority = Field(
        default=0, description="A number, higher is more important (negative allowed), or critical|high|normal|low|bulk; 0 (normal) is the default."
    )
    attempts: int | None = Field(default=None, ge=1, le=20, description="Attempts before the job fails; the queue's default if absent.")
    backoff: Backoff | None = Field(default=None, description="Delay between attempts; the queue's default if absent.")
    delay: int = Field(default=0, ge=0, description="Milliseconds to wait before the first attempt (at most JOBQ_MAX_RUN_AT_DAYS, 366).")
    run_at: datetime | None = Field(
        default=None,
        description="When the first attempt may start (ISO 8601 with a time zone offset); instead of delay. A past time runs now.",
    )
    job_id: str | None = Field(
        default=None,
        pattern=CLIENT_JOB_ID_PATTERN,
        description="Your own id (letters, digits, `_.-`, up to 128, starting with a letter or digit), in your own namespace: "
        "creating it twice returns the first job; other users' ids are never seen.",
    )
    deduplication: Deduplication | None = None
    webhook: WebhookOptions | None = Field(default=None, description="Where to POST the job's ending (signed); the queue's default if absent.")
    timeout: int | None = Field(
        default=None, ge=100, le=15 * 60 * 1000,
        description="Milliseconds an attempt may run (below the consumer's timeout); past it the attempt ends timed out and is retried with backoff.",
    )
    group: str | None = Field(
        default=None, pattern=GROUP_KEY_PATTERN,
        description="The job's group key (a customer, a domain): the queue's per-key rate limits and maxActive apply to it.",
    )

    @field_validator("job_id")
    @classmethod
    def _not_a_route(cls, value: str | None) -> str | None:
        if value is not None and value.lower() in RESERVED_JOB_IDS:
            raise ValueError(f"jobId '{value}' is taken by a route (GET /jobs/{value.lower()}); choose another")
        return value

    @field_validator("run_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("runAt needs a time zone offset, e.g. 2030-01-01T09:00:00Z")
        return representable(value, "runAt")


class JobCreate(CamelModel):
    """``POST /jobs``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "queue": "email-sending",
                    "type": "send-email",
                    "data": {"to": "user@example.com", "subject": "Welcome", "body": "Hello"},
                    "options": {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}},
                }
            ]
        }
    )

    queue: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="Absent: the one queue that has a processor for the type (400 if none or several)."
    )
    type: str = Field(pattern=TYPE_PATTERN)
    data: dict[str, Any] = Field(default_factory=dict)
    options: JobOptions = Field(default_factory=JobOptions)
    on_behalf_of: str | None = Field(
        default=None, min_length=1, max_length=256, description="Service clients: the user the job is for (or the X-On-Behalf-Of header)."
    )

    @field_validator("data")
    @classmethod
    def _strict(cls, data: dict[str, Any]) -> dict[str, Any]:
        return strict_json.check(data, "data")

    @model_validator(mode="before")
    @classmethod
    def _generic_task(cls, value: Any) -> Any:
        """Seed 003's generic task at the top level: ``{"service", "method", "args"}`` is a ``generic-task`` job."""
        if isinstance(value, dict) and "service" in value and "type" not in value:
            value = dict(value)
            task = {key: value.pop(key) for key in GENERIC_TASK_FIELDS if key in value}
            data = value.get("data")
            value.update(type=GENERIC_TASK_TYPE, data={**(data if isinstance(data, dict) else {}), **task})
        return value

    @model_validator(mode="after")
    def _priority_in_data(self) -> JobCreate:
        """Seed 004 writes the priority into the data (``"data": {..., "priority": "high"}``): honoured
        when ``options.priority`` is absent and the value is a valid priority; the data keeps it."""
        if "priority" not in self.options.model_fields_set and "priority" in self.data:
            with contextlib.suppress(ValueError):  # not a priority: the data's own business
                self.options.priority = parse_priority(self.data["priority"])
        return self


class JobPublic(CamelView):
    """A job as a client sees it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "jobId": "3f6c2a9e-7b1d-4c8a-9e2f-5d4b3a2c1e01",
                    "queue": "email-sending",
                    "type": "send-email",
                    "userId": "user-123",
                    "status": "completed",
                    "data": {"to": "user@example.com", "subject": "Welcome", "body": "Hello"},
                    "priority": 0,
                    "priorityName": "normal",
                    "progress": 100,
                    "progressMessage": None,
                    "result": {"messageId": "0100018c-example"},
                    "error": None,
                    "attempts": 1,
                    "maxAttempts": 3,
                    "backoff": {"type": "exponential", "delay": 1000},
                    "delay": 0,
                    "processingTime": 182,
                    "createdAt": "2026-11-24T01:00:00.000Z",
                    "updatedAt": "2026-11-24T01:00:01.200Z",
                    "runAt": None,
                    "startedAt": "2026-11-24T01:00:01.000Z",
                    "completedAt": "2026-11-24T01:00:01.200Z",
                    "failedAt": None,
                    "cancelledAt": None,
                    "cancelRequested": False,
                    "retries": 0,
                    "history": [{"attempt": 1, "startedAt": "2026-11-24T01:00:01.000Z", "endedAt": "2026-11-24T01:00:01.200Z", "outcome": "completed", "error": None}],
                }
            ]
        },
    )

    job_id: str
    queue: str
    type: str
    user_id: str
    status: JobStatus
    data: dict[str, Any]
    priority: int
    priority_name: str | None = Field(default=None, description="The named level of `priority`, if it is one (high = 5).")
    progress: Any
    progress_message: str | None
    result: Any
    error: str | None
    attempts: int
    max_attempts: int
    backoff: Backoff
    delay: int
    processing_time: int | None
    created_at: str
    updated_at: str
    run_at: str | None
    started_at: str | None
    completed_at: str | None
    failed_at: str | None
    cancelled_at: str | None
    cancel_requested: bool
    retries: int
    history: list[AttemptRecord]
    acting_client: str | None = Field(default=None, description="The service client that created the job for userId, if one did.")
    webhook: WebhookOptions | None = None
    timeout: int | None = Field(default=None, description="Milliseconds an attempt may run.")
    group: str | None = Field(default=None, description="The job's group key.")
    parent: ParentLink | None = Field(default=None, description="A flow child's parent: its jobId, queue, and what this job's failure does to it.")
    omitted: list[Literal["data", "result"]] = Field(
        default_factory=list,
        description="Left out of this answer: data or a result stored apart (past a few KB) is not in listings, and a result "
        "is not in GET /jobs/{id} when data and result together pass 5 MB; GET /jobs/{id} returns the data, "
        "GET /jobs/{id}/result the result.",
    )

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        omitted = [name for name, ref, value in (("data", job.data_ref, job.data), ("result", job.result_ref, job.result)) if ref and not value]
        return cls.model_validate({**job.model_dump(), "priority_name": priority_name(job.priority), "omitted": omitted})


class JobPage(CamelModel):
    jobs: list[JobPublic]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page; null on the last page.")
    page: int | None = Field(default=None, description="The page number asked for with `page` (seed 000's paging).")
    limit: int | None = None
    has_more: bool = Field(default=False, description="More jobs may follow (nextCursor is set).")


class StatusRef(CamelModel):
    job_id: str = Field(pattern=JOB_ID_PATTERN)
    user_id: str | None = Field(default=None, min_length=1, max_length=256, description="The owner (admins, readers); yours if absent.")


class StatusRequest(CamelModel):
    """``POST /jobs/status``: up to 100 of your job ids, or (admins, readers) ``jobs`` with owners."""

    model_config = ConfigDict(defer_build=True, json_schema_extra={"examples": [{"jobIds": ["invoice-42", "invoice-43"]}, {"jobs": [{"jobId": "invoice-42", "userId": "alice"}]}]})

    job_ids: list[str] = Field(default_factory=list, max_length=100)
    jobs: list[StatusRef] = Field(default_factory=list, max_length=100)

    @field_validator("job_ids")
    @classmethod
    def _ids(cls, ids: list[str]) -> list[str]:
        for job_id in ids:
            if not isinstance(job_id, str) or re.fullmatch(JOB_ID_PATTERN, job_id) is None:
                raise ValueError(f"'{str(job_id)[:130]}' is not a job id")
        return ids

    @model_validator(mode="after")
    def _some(self) -> StatusRequest:
        count = len(self.job_ids) + len(self.jobs)
        if not count:
            raise ValueError("give jobIds (or jobs) to look up")
        if count > 100:
            raise ValueError(f"at most 100 jobs per request; this one names {count}")
        return self

    def refs(self) -> list[tuple[str, str | None]]:
        return [(job_id, None) for job_id in self.job_ids] + [(r.job_id, r.user_id) for r in self.jobs]


class JobStatusView(CamelModel):
    """What bulk status tells of one job: where it is, not its payload."""

    job_id: str
    user_id: str
    queue: str
    status: JobStatus
    progress: Any
    progress_message: str | None = None
    result_url: str | None = Field(description="Where the result is: `GET` this path (the job) when the job has one; null otherwise.")
    error: str | None = None
    attempts: int
    updated_at: str

    @classmethod
    def of(cls, job: Job) -> JobStatusView:
        return cls(
            job_id=job.job_id,
            user_id=job.user_id,
            queue=job.queue,
            status=job.status,
            progress=job.progress,
            progress_message=job.progress_message,
            result_url=f"/jobs/{job.job_id}?userId={quote(job.user_id, safe='')}" if job.result is not None else None,
            error=job.error,
            attempts=job.attempts,
            updated_at=job.updated_at,
        )


class StatusResult(CamelModel):
    jobs: list[JobStatusView]
    not_found: list[str] = Field(description="Ids with no job you may see (unknown and not yours alike).")


class BulkCreate(CamelModel):
    """``POST /jobs/bulk``: up to 100 jobs; each item succeeds or fails on its own."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "jobs": [
                        {"queue": "email-sending", "type": "send-email", "data": {"to": "a@example.com", "subject": "Hi", "body": "1"}},
                        {"queue": "email-sending", "type": "send-email", "data": {"to": "b@example.com", "subject": "Hi", "body": "2"}},
                    ]
                }
            ]
        },
    )

    jobs: list[dict[str, Any]] = Field(min_length=1, description="Each item is a `POST /jobs` body.")


class BulkItemResult(CamelModel):
    index: int
    success: bool
    status: int
    job: JobPublic | None = None
    error: dict[str, Any] | None = None


class BulkResult(CamelModel):
    created: int
    failed: int
    results: list[BulkItemResult]


class LogLine(CamelModel):
    at: str
    message: str
    attempt: int | None = None


class LogPage(CamelModel):
    lines: list[LogLine]
    next_cursor: str | None = None
