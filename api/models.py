"""Request and response models of the API routes that have no domain model of their own (health, scheduler, flows, quotas, a job's webhooks).

Each is camelCase on the wire through ``CamelModel`` (shared/camel.py). ``GET /health``'s ``Health``
keeps seed 000's one-word top-level fields, which load balancers and monitors parse.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from shared.camel import CamelModel
from shared.client_models import JobCreate, JobPublic
from shared.models import WebhookOptions
from shared.report_models import QueueHealth


class Check(CamelModel):
    """One dependency probe: in GET /health's details.probes and GET /health/detailed's checks."""

    status: Literal["up", "down"]
    latency_ms: int
    message: str | None = None


class Memory(CamelModel):
    heap_used: int = Field(description="MB resident now.")
    heap_total: int = Field(description="MB this container may use.")
    usage: str = Field(description="heapUsed / heapTotal, as the seed writes it: `35.16%`.")


class Health(CamelModel):
    """GET /health (public, no envelope), in seed 000's shape."""

    status: Literal["healthy", "unhealthy"]
    timestamp: str
    uptime: int = Field(description="Seconds this container has been running.")
    version: str
    checks: dict[str, bool] = Field(description="database (DynamoDB), redis (SQS), queues, memory; dynamodb and sqs too.")
    details: dict[str, Any] = Field(description="queues: how many; memory; probes: each probe's status and latency.")


class MaintenanceRuns(CamelModel):
    health: dict[str, Any] | None
    cleanup: dict[str, Any] | None


class DetailedHealth(CamelModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: str
    version: str
    reasons: list[str]
    checks: dict[str, Check]
    queues: dict[str, QueueHealth]
    maintenance: MaintenanceRuns


class QueueHealthLine(CamelModel):
    name: str
    health_status: str
    processing_rate: float = Field(description="Jobs finished per minute over the last hour.")
    total_jobs: int


class SchedulerStats(CamelModel):
    scheduled_jobs_count: int = Field(description="Recurring schedules (every state).")
    scheduled_jobs: list[str] = Field(description="Their names (the job type unless a name was given).")
    queue_health: list[QueueHealthLine]
    uptime: int = Field(description="Seconds this API container has been running.")
    last_health_check: str | None = Field(description="When the HealthFunction last assessed the queues.")
    repeating: dict[str, int] = Field(description="Schedules by state: total, active, paused, completed.")
    delayed: int | None = Field(description="Jobs delayed now, over every queue (counters).")
    total_runs: int
    manual_runs: int
    runs_last24h: int = Field(alias="runsLast24h")
    schedules_with_errors: list[str]
    next_runs: list[dict[str, Any]]


class SchedulerHealth(CamelModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: str
    schedule_group: str
    checks: dict[str, Check]
    schedules: dict[str, Any]
    overdue_delayed_jobs_woken: int | None = Field(description="Delayed jobs the last health run found overdue and woke.")
    last_health_run: str | None
    queue_health: list[QueueHealthLine] = Field(
        default_factory=list, description="Seed 000's queue health summary: each queue's health, rate and total (as in /scheduler/stats)."
    )


class SchedulerMetrics(CamelModel):
    hours: int
    totals: dict[str, int]
    series: list[dict[str, Any]]


class DelayedJobCreate(JobCreate):
    """``POST /scheduler/delayed``: a job with ``delay`` (ms) or ``runAt``, here or in ``options``."""

    model_config = ConfigDict(
        defer_build=True,
        json_schema_extra={
            "examples": [
                {"queue": "email-sending", "type": "send-email", "data": {"to": "a@example.com", "subject": "Later", "body": "Hi"}, "delayMs": 300000},
                {"queue": "report-generation", "type": "generate-report", "data": {}, "runAt": "2030-01-01T09:00:00Z"},
            ]
        },
    )

    delay: int | None = Field(default=None, ge=0, description="Milliseconds; same as options.delay.")
    delay_ms: int | None = Field(default=None, ge=0, description="Milliseconds, as seed 000 writes it; same as delay.")
    run_at: datetime | None = Field(default=None, description="ISO 8601 with an offset; same as options.runAt.")

    @model_validator(mode="after")
    def _when(self) -> DelayedJobCreate:
        if self.delay_ms is not None:
            if self.delay is not None:
                raise ValueError("give delayMs or delay, not both")
            self.delay = self.delay_ms
        if self.delay is not None or self.run_at is not None:
            if self.options.delay or self.options.run_at:
                raise ValueError("give the delay either at the top level or in options, not both")
            update: dict[str, Any] = {}
            if self.delay is not None:
                update["delay"] = self.delay
            if self.run_at is not None:
                update["run_at"] = self.run_at
            self.options = self.options.model_validate({**self.options.model_dump(), **update})
        if not self.options.delay and self.options.run_at is None:
            raise ValueError("a delayed job needs delay (ms) or runAt")
        return self

    def as_job(self) -> JobCreate:
        return JobCreate(queue=self.queue, type=self.type, data=self.data, options=self.options)


# ---- flows, quotas, a job's webhooks (api/routes/flows.py, quotas.py, webhooks.py) ----------------------------
MAX_QUOTA = 1_000_000


class FlowCreated(CamelModel):
    flow_id: str
    jobs: int
    root: JobPublic


class DependencyPage(CamelModel):
    dependencies: list[dict[str, Any]]
    counts: dict[str, int] | None = None
    next_cursor: str | None = None


class QuotaChange(CamelModel):
    """One user's own limits. A field left out or null keeps the stack's default; 0 means no limit."""

    jobs_per_minute: int | None = Field(default=None, ge=0, le=MAX_QUOTA, description="Jobs this user may create per minute")
    max_unfinished_jobs: int | None = Field(default=None, ge=0, le=MAX_QUOTA, description="Jobs of this user unfinished at once, over every queue")


class UserQuota(CamelModel):
    user_id: str
    jobs_per_minute: int | None = Field(description="In force now; null: no limit")
    max_unfinished_jobs: int | None = Field(description="In force now; null: no limit")
    overridden: bool = Field(description="Whether this user has limits of their own (PUT); false: the stack's defaults")
    created_this_minute: int
    unfinished_jobs: int = Field(description="Counted since quotas were on: jobs created earlier hold no place")


class WebhookDelivery(CamelModel):
    delivery_id: str
    event: str
    url: str
    status: str = Field(description="pending, delivered, retrying (nextAttemptAt says when), failed (in the DLQ)")
    attempts: int
    created_at: str | None = None
    last_attempt_at: str | None = None
    next_attempt_at: str | None = None
    delivered_at: str | None = None
    http_status: int | None = None
    error: str | None = None


class JobWebhooks(CamelModel):
    job_id: str
    webhook: WebhookOptions | None = Field(description="The job's own options.webhook; null: its queue's default applies, if any")
    deliveries: list[WebhookDelivery]
