"""Models of the queue admin API (issue 4): what an operator sends and sees."""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, model_validator
from pydantic.alias_generators import to_camel

from shared.access import QueueAccess
from shared.camel import CamelModel, CamelView
from shared.client_models import JobPublic
from shared.flow_control import GroupPolicy, RateLimit
from shared.models import (
    JOB_ID_PATTERN,
    TYPE_PATTERN,
    AnyTarget,
    Backoff,
    BreakerSettings,
    HttpTarget,
    Job,
    LambdaTarget,
    ProcessorTarget,
    QueueDepth,
    Retention,
    StateMachineTarget,
    WebhookOptions,
)
from shared.priority import Priority
from shared.report_models import HealthStatus
from shared.status import JobStatus

MAX_AGE_MS = 10 * 366 * 86400 * 1000  # ten years: older than anything a queue keeps


class LiveStats(CamelModel):
    """Jobs in the queue now, by status, from the counters the EventsFunction keeps (one read)."""

    waiting: int = 0
    active: int = 0
    delayed: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    stalled: int = 0
    waiting_children: int = Field(default=0, alias="waiting-children", description="Flow parents waiting for their children.")
    total: int = 0


class PriorityCounts(CamelModel):
    """Jobs of one priority band not yet finished (counted by the EventsFunction in the same write as liveStats)."""

    waiting: int = 0
    delayed: int = 0
    active: int = 0


class Processors(CamelModel):
    code: list[str] = Field(description="Types run by Python processors (shared/catalog.py).")
    http: dict[str, HttpTarget] = Field(description="Types POSTed to an HTTP target.")
    functions: dict[str, LambdaTarget] = Field(
        default_factory=dict, description="Types that invoke a Lambda function (PUT /queues/{name}/processors/{type} with kind lambda)."
    )
    state_machines: dict[str, StateMachineTarget] = Field(
        default_factory=dict, description="Types that start a Step Functions execution (kind stepfunctions)."
    )


class BreakerView(CamelModel):
    """A target's circuit breaker as GET /queues/{name}/breakers shows it."""

    type: str
    state: Literal["closed", "open", "half_open"]
    open_until: str | None = Field(default=None, description="When an automatic open ends and one probe job tests the target.")
    probe: str | None = Field(default=None, description="`<userId>/<jobId>` of the job testing the target (half_open).")
    manual: bool = Field(default=False, description="Opened by an admin: stays open until closed by hand.")
    reason: str | None = None
    updated_at: str | None = None
    settings: BreakerSettings


class RetentionPolicy(CamelModel):
    remove_on_complete: Retention
    remove_on_fail: Retention


class QueueConfiguration(CamelModel):
    """The runtime policy (PATCH /queues/{name}) and what the template fixed for the queue.

    Seed 000's fields come first (``concurrency``, ``retryAttempts``, ``retryDelay``,
    ``removeOnComplete`` and ``removeOnFail`` as numbers: keep the newest N); ``retention`` has
    the full retention (by age and by count)."""

    concurrency: int = Field(description="The consumer's maximum concurrency (= maxConcurrency).")
    retry_attempts: int = Field(description="= defaultAttempts.")
    retry_delay: int = Field(description="= defaultBackoff.delay (ms).")
    remove_on_complete: int | None = Field(description="Keep the newest N completed jobs (retention.removeOnComplete.maxCount).")
    remove_on_fail: int | None = Field(description="Keep the newest N failed jobs (retention.removeOnFail.maxCount).")
    default_attempts: int
    default_backoff: Backoff
    retention: RetentionPolicy
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
    rate_limit: RateLimit | None = Field(default=None, description="At most max jobs start per duration ms (flow control).")
    default_timeout: int | None = Field(default=None, description="Milliseconds an attempt may run, for jobs without options.timeout.")
    groups: GroupPolicy | None = Field(default=None, description="Group keys: how they are found, limits per key, overrides, paused keys.")


class QueueSummary(CamelView):
    name: str
    description: str = ""
    is_active: bool = Field(description="False while the queue is paused: it accepts jobs but starts none.")
    paused: bool
    consumer_state: str | None = Field(
        default=None, description="The consumer's event source mapping (Enabled, Disabling, Disabled ...); GET /queues/{name} only."
    )
    health_status: HealthStatus
    health_reasons: list[str]
    live_stats: LiveStats
    by_priority: dict[str, PriorityCounts] = Field(
        default_factory=dict,
        description="Per priority band (critical >= 10, high >= 5, normal >= 0, low >= -5, bulk below): waiting, delayed and active jobs.",
    )
    dlq_depth: int = Field(description="Messages in the dead-letter queue (approximate).")
    queue_depth: QueueDepth
    processing_rate: float = Field(description="Jobs finished per minute over the last hour.")
    failure_rate: float = Field(description="Failed / finished over the last hour.")
    average_processing_time: float | None = Field(description="Milliseconds, completed jobs of the last hour.")
    p95_processing_time: int | None = Field(description="Milliseconds, completed jobs of the last hour.")
    oldest_waiting_age: int | None = Field(description="Milliseconds the longest-waiting job has waited, since it was created or last retried (shared/health.py oldest_waiting_age); null when none waits.")
    last_processed_at: str | None
    last_health_check: str | None = Field(default=None, description="When the HealthFunction last assessed this queue.")
    total_jobs: int = Field(default=0, description="Seed 000's counts, the same as liveStats.")
    completed_jobs: int = 0
    failed_jobs: int = 0
    active_jobs: int = 0
    waiting_jobs: int = 0
    delayed_jobs: int = 0
    configuration: QueueConfiguration


class QueueDetails(QueueSummary):
    """``GET /queues/{name}``; with ``includeJobs=true`` (seed 004) also a page of its jobs."""

    jobs: list[JobPublic] | None = Field(default=None, description="With includeJobs=true: newest first, `status` and `limit` apply.")
    next_cursor: str | None = Field(default=None, description="With includeJobs=true: the rest, from GET /queues/{name}/jobs?cursor=.")


class CleanOptions(CamelModel):
    """BullMQ's ``clean(grace, limit, type)``: jobs of ``type`` finished more than ``grace`` ms ago."""

    grace: int = Field(default=0, ge=0, description="Milliseconds; as olderThan.")
    limit: int = Field(default=1000, ge=1, le=10_000)
    type: Literal["completed", "failed", "cancelled"] = "completed"


class QueueAction(CamelModel):
    """``POST /queues/{name}`` (seed 004): ``{"action": "pause" | "resume" | "clean", "options": {...}}``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"action": "pause"},
                {"action": "resume"},
                {"action": "clean", "options": {"grace": 86400000, "limit": 100, "type": "completed"}},
            ]
        },
    )

    action: Literal["pause", "resume", "clean"]
    options: CleanOptions | None = None

    @model_validator(mode="after")
    def _options_for_clean(self) -> QueueAction:
        if self.options is not None and self.action != "clean":
            raise ValueError(f"options apply to clean only, not to {self.action}")
        return self


class RemovedJob(CamelView):
    job_id: str
    user_id: str
    status: str


class NotRemoved(CamelView):
    job_id: str
    reason: str


class BulkRemoval(CamelView):
    """``DELETE /queues/{name}?jobIds=`` or ``?status=``: what was removed, and what was not and why."""

    removed: list[RemovedJob]
    not_removed: list[NotRemoved] = Field(description="Running, changed meanwhile, not in this queue, or not found.")
    has_more: bool = Field(default=False, description="By status: more jobs may match; call again.")


class RetentionPatch(CamelModel):
    remove_on_complete: Retention | None = None
    remove_on_fail: Retention | None = None


# Fields of QueueConfiguration a PATCH cannot change: accepted when they equal the current value
# (a read-modify-write sends them back), refused with a 400 naming them otherwise.
READ_ONLY = {
    "batch_size": "set in template.yaml",
    "visibility_timeout": "set in template.yaml",
    "max_receive_count": "set in template.yaml",
    "paused": "use POST /queues/{name}/pause or /resume",
}


class QueuePatch(CamelModel):
    """``PATCH /queues/{name}``: the fields given replace the stored ones; ``null`` in ``processors`` removes a target.

    Takes what ``GET /queues/{name}`` returns as ``configuration``, changed or not: seed 000's
    ``retryAttempts`` / ``retryDelay`` / ``removeOnComplete: N`` mean ``defaultAttempts`` /
    ``defaultBackoff.delay`` / ``maxCount``; read-only fields must keep their value.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "defaultAttempts": 5,
                    "defaultBackoff": {"type": "exponential", "delay": 2000},
                    "removeOnComplete": {"maxAgeSeconds": 86400, "maxCount": 1000},
                    "removeOnFail": {"maxAgeSeconds": 604800},
                    "processors": {"webhook": {"kind": "http", "url": "https://worker.example.com/jobs", "timeoutSeconds": 30}},
                },
                {"retryAttempts": 5, "retryDelay": 2000, "removeOnComplete": 100, "removeOnFail": 50},
            ]
        },
    )

    default_attempts: int | None = Field(default=None, ge=1, le=20)
    default_backoff: Backoff | None = None
    remove_on_complete: Retention | int | None = Field(default=None, description="An object, or a number: keep the newest N.")
    remove_on_fail: Retention | int | None = Field(default=None, description="An object, or a number: keep the newest N.")
    retention: RetentionPatch | None = None
    retry_attempts: int | None = Field(default=None, ge=1, le=20, description="Seed 000's name of defaultAttempts.")
    retry_delay: int | None = Field(default=None, ge=0, le=12 * 3600 * 1000, description="Seed 000's name of defaultBackoff.delay.")
    description: str | None = Field(default=None, max_length=256)
    processors: dict[str, Any] | None = Field(
        default=None, description="{type: <http target> | null}, or GET's {code: [...], http: {type: <http target>}}."
    )
    concurrency: int | None = Field(default=None, ge=2, le=1000, description="= maxConcurrency (seed 000's name).")
    batch_size: int | None = None
    max_concurrency: int | None = Field(
        default=None, ge=2, le=1000, description="The consumer's event source mapping MaximumConcurrency, changed at once (no deploy)."
    )
    visibility_timeout: int | None = None
    max_receive_count: int | None = None
    paused: bool | None = None
    access: QueueAccess | None = Field(default=None, description="Who may create, read and operate (shared/access.py); replaces the stored one.")
    max_unfinished_jobs: int | None = Field(
        default=None, ge=1, le=100_000_000, description="Creates past this many waiting, delayed and active jobs answer 429; null removes the limit."
    )
    max_unfinished_jobs_per_user: int | None = Field(default=None, ge=1, le=100_000_000, description="The same, per user; null removes it.")
    webhook: WebhookOptions | None = Field(default=None, description="The default webhook of the queue's jobs; null removes it.")
    rate_limit: RateLimit | None = Field(default=None, description="{max, duration}: jobs started per window of duration ms; null removes it.")
    default_timeout: int | None = Field(default=None, ge=100, le=15 * 60 * 1000, description="ms; below the consumer's timeout; null removes it.")
    groups: GroupPolicy | None = Field(default=None, description="Per-key limits (replaces the stored block); null removes it.")

    @model_validator(mode="after")
    def _something(self) -> QueuePatch:
        if not self.model_fields_set:
            raise ValueError(
                "give at least one of defaultAttempts, defaultBackoff, removeOnComplete, removeOnFail, processors, "
                "access, maxUnfinishedJobs, maxUnfinishedJobsPerUser, webhook"
            )
        for name in ("remove_on_complete", "remove_on_fail"):
            value = getattr(self, name)
            if isinstance(value, int) and value < 0:
                raise ValueError(f"{to_camel(name)}: keep at least 0 jobs")
        return self

    def targets(self, code_types: set[str]) -> dict[str, AnyTarget | None]:
        """The HTTP, Lambda and state-machine targets to put (or remove: None); ValueError for a bad entry or a changed code list."""
        given = self.processors or {}
        listing = (
            isinstance(given.get("code"), list)
            or (isinstance(given.get("http"), dict) and "url" not in given["http"])
            or (isinstance(given.get("functions"), dict) and "functionArn" not in given["functions"])
            or (isinstance(given.get("stateMachines"), dict) and "stateMachineArn" not in given["stateMachines"])
        )
        if listing:
            unknown = set(given) - {"code", "http", "functions", "stateMachines"}
            if unknown:
                raise ValueError(f"processors: unknown keys {', '.join(sorted(unknown))} beside code, http, functions and stateMachines")
            if "code" in given and set(given["code"] or []) != code_types:
                raise ValueError("processors.code is read-only: code processors are listed in shared/catalog.py")
            entries: dict[str, Any] = {**(given.get("http") or {}), **(given.get("functions") or {}), **(given.get("stateMachines") or {})}
        else:
            entries = given
        out: dict[str, AnyTarget | None] = {}
        for job_type, target in entries.items():
            if not _matches(TYPE_PATTERN, job_type):
                raise ValueError(f"processors: '{job_type}' is not a valid job type")
            out[job_type] = None if target is None else _targets().validate_python(target)
        return out


@functools.cache
def _targets() -> TypeAdapter[AnyTarget]:
    """Built at the first policy patch naming targets, not at import (it builds every target model)."""
    return TypeAdapter(ProcessorTarget)


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


class PauseState(CamelView):
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


class CleanResult(CamelView):
    removed: int
    job_ids: list[str]
    has_more: bool = Field(description="True if more jobs may match: call again.")


class MetricPoint(CamelView):
    timestamp: str = Field(description="Start of the minute or hour (UTC).")
    created: int
    completed: int
    failed: int
    retried: int
    throughput: float = Field(description="Jobs finished per minute in this interval.")
    average_processing_time: float | None
    p95_processing_time: int | None


class MetricTotals(CamelView):
    created: int
    completed: int
    failed: int
    throughput: float
    failure_rate: float
    average_processing_time: float | None
    p95_processing_time: int | None


class TypeCost(CamelView):
    """One job type's attempts over the window: what they cost (Lambda list price, the consumer's share) and took."""

    attempts: int
    cost_nano_usd: int = Field(description="Billionths of a dollar.")
    cost_usd: float
    average_duration_ms: float | None
    slow_attempts: int = Field(description="Attempts over twice the type's average duration in the window.")


class UserCost(CamelView):
    """One user's attempts on the queue over the window's hours."""

    attempts: int
    cost_nano_usd: int
    cost_usd: float


class QueueMetrics(CamelView):
    queue: str
    hours: int
    resolution: Literal["minute", "hour"]
    points: list[MetricPoint]
    totals: MetricTotals
    cost_by_type: dict[str, TypeCost] = Field(default_factory=dict, description="Per job type, from the attempts' recorded usage.")
    cost_by_user: dict[str, UserCost] = Field(
        default_factory=dict, description="Per user (kept per hour: the hours the window touches); the most costly first."
    )


class DeadLetter(CamelView):
    message_id: str
    job_id: str | None
    user_id: str | None = Field(default=None, description="The job's owner: pass it as `?userId=` to GET /jobs/{jobId}.")
    reason: str | None = Field(description="Why the job ended here (the consumer's last error, or SQS's receive limit).")
    sent_at: str | None = Field(description="When the message entered the dead-letter queue.")
    receive_count: int
    job: JobPublic | None = Field(description="The job as stored now; null if it was removed.")


class DeadLetterList(CamelView):
    dead_letters: list[DeadLetter]
    approximate_total: int


class RedriveRequest(CamelModel):
    """``POST /queues/{name}/dead-letters/redrive``: all of them, or only these jobs."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{}, {"jobIds": ["job-1"]}, {"jobIds": ["job-1"], "priority": "low", "attempts": 1}]},
    )

    job_ids: list[str] | None = Field(default=None, min_length=1, max_length=100)
    user_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Whose jobs `jobIds` are; without it, they match dead letters of any owner (and ids whose message is gone are yours).",
    )
    priority: Priority | None = Field(default=None, description="The revived jobs' priority (seed 002: low); their own if absent.")
    attempts: int | None = Field(default=None, ge=1, le=20, description="The revived jobs' attempts (seed 002: 1); their own if absent.")

    @model_validator(mode="after")
    def _ids(self) -> RedriveRequest:
        for job_id in self.job_ids or []:
            if not _matches(JOB_ID_PATTERN, job_id):
                raise ValueError(f"jobIds: '{job_id}' is not a valid job id")
        return self


class Skipped(CamelModel):
    job_id: str | None
    reason: str


class RedriveResult(CamelView):
    redriven: list[str] = Field(description="Failed jobs now waiting again with a fresh set of attempts.")
    requeued: list[str] = Field(description="Jobs still active or stalled: woken again as they are.")
    skipped: list[Skipped] = Field(description="Messages dropped: their job finished otherwise, or no longer exists.")
    not_found: list[str] = Field(description="Requested ids neither in the dead-letter queue nor failed.")
    remaining: int = Field(description="Messages left in the dead-letter queue (approximate).")


class PurgeResult(CamelView):
    purged: int
    marked_failed: list[str] = Field(description="Jobs that were not failed yet and are now.")
    remaining: int


class GroupCounts(CamelView):
    """One group key of a queue, as ``GET /queues/{name}/groups`` shows it."""

    key: str
    active: int = Field(description="Jobs of the key running now.")
    started: int = Field(description="Jobs of the key started since its counters were last idle (they expire a day after).")
    last_started_at: str | None = None
    started_this_window: int | None = Field(default=None, description="Starts in the key's current rate-limit window.")
    max_active: int | None = None
    rate_limit: RateLimit | None = None
    paused: bool = False


class GroupList(CamelView):
    groups: list[GroupCounts] = Field(description="The busiest keys first (active, then started).")


class GroupPauseState(CamelView):
    key: str
    paused: bool


# ---- GET /jobs/dashboard (shared/dashboard.py) -------------------------------------------------------------
RECENT_FAILURES_PER_QUEUE = 5
ACTIVE_JOBS_PER_QUEUE = 10


class JobBrief(CamelView):
    """A job as a dashboard lists it: no data, result or history (GET /jobs/{jobId} has them)."""

    job_id: str
    queue: str
    type: str
    user_id: str
    status: JobStatus
    priority: int
    progress: Any
    progress_message: str | None = None
    attempts: int
    max_attempts: int
    error: str | None = None
    created_at: str
    started_at: str | None = None
    failed_at: str | None = None
    updated_at: str

    @classmethod
    def of(cls, job: Job) -> JobBrief:
        return cls.model_validate(job.model_dump())


class UpcomingRun(CamelModel):
    name: str
    queue: str
    type: str
    next_run_at: str | None


class Dashboard(CamelModel):
    generated_at: str
    health_status: HealthStatus = Field(description="The worst of the queues' healthStatus.")
    totals: LiveStats = Field(description="liveStats summed over the queues.")
    queues: list[QueueSummary]
    recent_failures: list[JobBrief] = Field(description=f"The newest failed jobs, up to {RECENT_FAILURES_PER_QUEUE} per queue, newest first.")
    active_jobs: list[JobBrief] = Field(description=f"Jobs running now, up to {ACTIVE_JOBS_PER_QUEUE} per queue.")
    upcoming_schedules: list[UpcomingRun] = Field(description="The recurring schedules due next, soonest first.")
