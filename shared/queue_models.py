"""Models of the queue admin API (issue 4): what an operator sends and sees."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from shared.access import QueueAccess
from shared.models import (
    JOB_ID_PATTERN,
    TYPE_PATTERN,
    Backoff,
    CamelModel,
    HttpTarget,
    JobPublic,
    QueueDepth,
    Retention,
    WebhookOptions,
)

MAX_AGE_MS = 10 * 366 * 86400 * 1000  # ten years: older than anything a queue keeps
HealthStatus = Literal["healthy", "warning", "error"]
_OUT = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class LiveStats(CamelModel):
    """Jobs in the queue now, by status, from the counters the EventsFunction keeps (one read)."""

    waiting: int = 0
    active: int = 0
    delayed: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    stalled: int = 0
    total: int = 0


class Processors(CamelModel):
    code: list[str] = Field(description="Types run by Python processors (shared/catalog.py).")
    http: dict[str, HttpTarget] = Field(description="Types POSTed to an HTTP target.")


class QueueConfiguration(CamelModel):
    """The runtime policy (PATCH /queues/{name}) and what the template fixed for the queue."""

    default_attempts: int
    default_backoff: Backoff
    remove_on_complete: Retention
    remove_on_fail: Retention
    paused: bool
    access: QueueAccess
    max_unfinished_jobs: int | None
    max_unfinished_jobs_per_user: int | None
    batch_size: int
    max_concurrency: int
    visibility_timeout: int
    max_receive_count: int
    processors: Processors
    webhook: WebhookOptions | None = None


class QueueSummary(CamelModel):
    model_config = _OUT

    name: str
    is_active: bool = Field(description="False while the queue is paused: it accepts jobs but starts none.")
    paused: bool
    consumer_state: str | None = Field(
        default=None, description="The consumer's event source mapping (Enabled, Disabling, Disabled ...); GET /queues/{name} only."
    )
    health_status: HealthStatus
    health_reasons: list[str]
    live_stats: LiveStats
    dlq_depth: int = Field(description="Messages in the dead-letter queue (approximate).")
    queue_depth: QueueDepth
    processing_rate: float = Field(description="Jobs finished per minute over the last hour.")
    failure_rate: float = Field(description="Failed / finished over the last hour.")
    average_processing_time: float | None = Field(description="Milliseconds, completed jobs of the last hour.")
    p95_processing_time: int | None = Field(description="Milliseconds, completed jobs of the last hour.")
    oldest_waiting_age: int | None = Field(description="Milliseconds since the oldest waiting job was created.")
    last_processed_at: str | None
    configuration: QueueConfiguration


class QueueList(CamelModel):
    model_config = _OUT

    queues: list[QueueSummary]


class QueuePatch(CamelModel):
    """``PATCH /queues/{name}``: the fields given replace the stored ones; ``null`` in ``processors`` removes a target."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "defaultAttempts": 5,
                    "defaultBackoff": {"type": "exponential", "delay": 2000},
                    "removeOnComplete": {"maxAgeSeconds": 86400, "maxCount": 1000},
                    "removeOnFail": {"maxAgeSeconds": 604800},
                    "processors": {"webhook": {"kind": "http", "url": "https://worker.example.com/jobs", "timeoutSeconds": 30}},
                }
            ]
        },
    )

    default_attempts: int | None = Field(default=None, ge=1, le=20)
    default_backoff: Backoff | None = None
    remove_on_complete: Retention | None = None
    remove_on_fail: Retention | None = None
    processors: dict[str, HttpTarget | None] | None = Field(default=None, max_length=50)
    access: QueueAccess | None = Field(default=None, description="Who may create, read and operate (shared/access.py); replaces the stored one.")
    max_unfinished_jobs: int | None = Field(
        default=None, ge=1, le=100_000_000, description="Creates past this many waiting, delayed and active jobs answer 429; null removes the limit."
    )
    max_unfinished_jobs_per_user: int | None = Field(default=None, ge=1, le=100_000_000, description="The same, per user; null removes it.")
    webhook: WebhookOptions | None = Field(default=None, description="The default webhook of the queue's jobs; null removes it.")

    @model_validator(mode="after")
    def _something(self) -> QueuePatch:
        if not self.model_fields_set:
            raise ValueError(
                "give at least one of defaultAttempts, defaultBackoff, removeOnComplete, removeOnFail, processors, "
                "access, maxUnfinishedJobs, maxUnfinishedJobsPerUser, webhook"
            )
        for job_type in self.processors or {}:
            if not _matches(TYPE_PATTERN, job_type):
                raise ValueError(f"processors: '{job_type}' is not a valid job type")
        return self


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


class PauseState(CamelModel):
    model_config = _OUT

    name: str
    paused: bool
    is_active: bool
    consumer_state: str | None = Field(description="As Lambda reports it; Disabling/Enabling settle within seconds.")


class CleanRequest(CamelModel):
    """``POST /queues/{name}/clean``: remove finished jobs of one status, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"olderThan": 3600000, "status": "completed", "limit": 1000}]},
    )

    older_than: int = Field(ge=0, le=MAX_AGE_MS, description="Milliseconds: jobs that finished longer ago than this (at most 10 years).")
    status: Literal["completed", "failed", "cancelled"]
    limit: int = Field(default=1000, ge=1, le=10_000, description="At most this many jobs.")


class CleanResult(CamelModel):
    model_config = _OUT

    removed: int
    job_ids: list[str]
    has_more: bool = Field(description="True if more jobs may match: call again.")


class MetricPoint(CamelModel):
    model_config = _OUT

    timestamp: str = Field(description="Start of the minute or hour (UTC).")
    created: int
    completed: int
    failed: int
    retried: int
    throughput: float = Field(description="Jobs finished per minute in this interval.")
    average_processing_time: float | None
    p95_processing_time: int | None


class MetricTotals(CamelModel):
    model_config = _OUT

    created: int
    completed: int
    failed: int
    throughput: float
    failure_rate: float
    average_processing_time: float | None
    p95_processing_time: int | None


class QueueMetrics(CamelModel):
    model_config = _OUT

    queue: str
    hours: int
    resolution: Literal["minute", "hour"]
    points: list[MetricPoint]
    totals: MetricTotals


class DeadLetter(CamelModel):
    model_config = _OUT

    message_id: str
    job_id: str | None
    user_id: str | None = Field(default=None, description="The job's owner: pass it as `?userId=` to GET /jobs/{jobId}.")
    reason: str | None = Field(description="Why the job ended here (the consumer's last error, or SQS's receive limit).")
    sent_at: str | None = Field(description="When the message entered the dead-letter queue.")
    receive_count: int
    job: JobPublic | None = Field(description="The job as stored now; null if it was removed.")


class DeadLetterList(CamelModel):
    model_config = _OUT

    dead_letters: list[DeadLetter]
    approximate_total: int


class RedriveRequest(CamelModel):
    """``POST /queues/{name}/dead-letters/redrive``: all of them, or only these jobs."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", json_schema_extra={"examples": [{}, {"jobIds": ["job-1"]}]}
    )

    job_ids: list[str] | None = Field(default=None, min_length=1, max_length=100)
    user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Whose jobs `jobIds` are; without it, they match dead letters of any owner (and ids whose message is gone are yours).",
    )

    @model_validator(mode="after")
    def _ids(self) -> RedriveRequest:
        for job_id in self.job_ids or []:
            if not _matches(JOB_ID_PATTERN, job_id):
                raise ValueError(f"jobIds: '{job_id}' is not a valid job id")
        return self


class Skipped(CamelModel):
    job_id: str | None
    reason: str


class RedriveResult(CamelModel):
    model_config = _OUT

    redriven: list[str] = Field(description="Failed jobs now waiting again with a fresh set of attempts.")
    requeued: list[str] = Field(description="Jobs still active or stalled: woken again as they are.")
    skipped: list[Skipped] = Field(description="Messages dropped: their job finished otherwise, or no longer exists.")
    not_found: list[str] = Field(description="Requested ids neither in the dead-letter queue nor failed.")
    remaining: int = Field(description="Messages left in the dead-letter queue (approximate).")


class PurgeResult(CamelModel):
    model_config = _OUT

    purged: int
    marked_failed: list[str] = Field(description="Jobs that were not failed yet and are now.")
    remaining: int
