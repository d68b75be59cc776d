"""Models at each boundary: what a client sends, what is stored, what a client sees."""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from shared.status import JobStatus

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class BackoffType(StrEnum):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"


class Backoff(CamelModel):
    type: BackoffType = BackoffType.EXPONENTIAL
    delay: int = Field(default=1000, ge=0, le=12 * 3600 * 1000, description="Base delay in milliseconds.")


class Deduplication(CamelModel):
    """While a job created with this key is alive, creating another returns it (per user and queue)."""

    key: str = Field(min_length=1, max_length=256)
    ttl_seconds: int | None = Field(
        default=None, ge=1, le=7 * 86400, description="How long the key holds; if absent, until the job finishes."
    )


class JobOptions(CamelModel):
    priority: int = Field(default=0, ge=0, le=1000, description="Recorded with the job; 0 is the default.")
    attempts: int | None = Field(default=None, ge=1, le=20, description="Attempts before the job fails; the queue's default if absent.")
    backoff: Backoff | None = Field(default=None, description="Delay between attempts; the queue's default if absent.")
    delay: int = Field(default=0, ge=0, description="Milliseconds to wait before the first attempt.")
    run_at: datetime | None = Field(
        default=None,
        description="When the first attempt may start (ISO 8601 with a time zone offset); instead of delay. A past time runs now.",
    )
    job_id: str | None = Field(default=None, pattern=JOB_ID_PATTERN, description="Your own id: creating it twice returns the first job.")
    deduplication: Deduplication | None = None

    @field_validator("run_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("runAt needs a time zone offset, e.g. 2030-01-01T09:00:00Z")
        return value


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

    queue: str = Field(pattern=NAME_PATTERN)
    type: str = Field(pattern=TYPE_PATTERN)
    data: dict[str, Any] = Field(default_factory=dict)
    options: JobOptions = Field(default_factory=JobOptions)


class AttemptRecord(CamelModel):
    attempt: int
    started_at: str
    ended_at: str | None = None
    outcome: Literal["completed", "failed", "retrying", "stalled", "cancelled", "interrupted"] | None = None
    error: str | None = None


class Job(CamelModel):
    """A job as stored: the source of truth (the SQS message only carries its id)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    job_id: str
    queue: str
    type: str
    user_id: str
    status: JobStatus
    data: dict[str, Any] = Field(default_factory=dict)
    priority: int = 0
    attempts: int = 0  # attempts started so far
    max_attempts: int = 3
    backoff: Backoff = Field(default_factory=Backoff)
    delay: int = 0
    progress: Any = 0
    progress_message: str | None = None
    result: Any = None
    error: str | None = None
    processing_time: int | None = None  # ms of the last attempt that ran to an end
    created_at: str
    updated_at: str
    run_at: str | None = None  # when a delayed job is due
    started_at: str | None = None
    completed_at: str | None = None
    failed_at: str | None = None
    cancelled_at: str | None = None
    lease_until: int | None = None  # epoch ms; an active job past it has stalled
    lease_token: str | None = None
    cancel_requested: bool = False
    retries: int = 0  # manual retries (POST /jobs/{id}/retry)
    version: int = 1
    history: list[AttemptRecord] = Field(default_factory=list)


class JobPublic(CamelModel):
    """A job as a client sees it."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
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

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        return cls.model_validate(job.model_dump())


class JobPage(CamelModel):
    jobs: list[JobPublic]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page; null on the last page.")


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


class HttpTarget(CamelModel):
    """``PUT /queues/{name}/processors/{type}``: jobs of this type are POSTed to ``url``."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"kind": "http", "url": "https://worker.example.com/jobs", "timeoutSeconds": 30}]},
    )

    kind: Literal["http"] = "http"
    url: str = Field(max_length=2048)
    timeout_seconds: float = Field(default=30, gt=0, le=900)

    def check_url(self, *, allow_loopback_http: bool) -> None:
        """Raise ValueError unless the URL is https (or http to loopback where allowed)."""
        parts = urlsplit(self.url)
        if not parts.hostname:
            raise ValueError("url must be an absolute URL with a host")
        if parts.scheme == "https":
            return
        if parts.scheme == "http" and allow_loopback_http and _is_loopback(parts.hostname):
            return
        if parts.scheme == "http" and allow_loopback_http:
            raise ValueError("url must be https, or http to 127.0.0.1/localhost in the local stack")
        raise ValueError("url must be https")

    @field_validator("url")
    @classmethod
    def _absolute(cls, url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("url must start with https://")
        return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class QueueInfo(CamelModel):
    """What the stack publishes about one queue (one SSM parameter per queue, infra/queue.yaml)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    name: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    consumer_function: str = ""
    event_source_mapping_id: str = ""
    batch_size: int = 10
    max_concurrency: int = 2
    visibility_timeout: int = 900
    max_receive_count: int = 25
    default_attempts: int = 3
    default_backoff_type: BackoffType = BackoffType.EXPONENTIAL
    default_backoff_delay: int = 1000


DLQ_RETENTION_SECONDS = 14 * 86400  # a DLQ's MessageRetentionPeriod (infra/queue.yaml): SQS's maximum


class Retention(CamelModel):
    """How long finished jobs are kept (BullMQ's removeOnComplete / removeOnFail)."""

    max_age_seconds: int | None = Field(default=None, ge=60, description="Remove finished jobs older than this.")
    max_count: int | None = Field(default=None, ge=0, description="Keep at most the newest N finished jobs.")


class QueuePolicy(CamelModel):
    """A queue's runtime policy: stored in DynamoDB (QUEUE#<name> / POLICY), seeded from the template's defaults."""

    default_attempts: int = Field(default=3, ge=1, le=20)
    default_backoff: Backoff = Field(default_factory=Backoff)
    remove_on_complete: Retention = Field(default_factory=lambda: Retention(max_age_seconds=7 * 86400, max_count=10_000))
    # As long as SQS keeps the job's DLQ copy (14 days, its maximum; infra/queue.yaml), so a
    # redrive of all dead letters finds every failed job.
    remove_on_fail: Retention = Field(default_factory=lambda: Retention(max_age_seconds=DLQ_RETENTION_SECONDS, max_count=10_000))
    paused: bool = False

    def expires_at(self, status: JobStatus, finished_ms: int) -> int | None:
        """The TTL (epoch seconds) of a job that just finished in ``status``: its retention by age.

        DynamoDB's TTL removes it for free; the CleanupFunction applies counts and catches
        what TTL has not reached yet. None: kept until a count limit or a clean removes it.
        """
        retention = self.remove_on_complete if status is JobStatus.COMPLETED else self.remove_on_fail
        if retention.max_age_seconds is None:
            return None
        return finished_ms // 1000 + retention.max_age_seconds

    @classmethod
    def defaults_for(cls, queue: QueueInfo) -> QueuePolicy:
        return cls(
            default_attempts=queue.default_attempts,
            default_backoff=Backoff(type=queue.default_backoff_type, delay=queue.default_backoff_delay),
        )


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())
