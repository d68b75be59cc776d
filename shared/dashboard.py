"""``GET /jobs/dashboard`` (seed 001): what an operator's dashboard shows, in one call.

Every queue's summary (as ``GET /queues``), totals over the queues, the newest failures and
the active jobs of each queue (one Query of the byQueueStatus index per queue and status, a
few items each), and the schedules due next. Its cost is that of ``GET /queues`` plus two
small Queries per queue and one read of the schedules; nothing grows with the table.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.access import Action, Identity, authorize
from shared.clock import iso, now_ms
from shared.models import CamelModel, Job
from shared.queue_models import LiveStats, QueueSummary
from shared.status import JobStatus

if TYPE_CHECKING:
    from shared.queue_admin import QueueService
    from shared.schedules import ScheduleService

RECENT_PER_QUEUE = 5
ACTIVE_PER_QUEUE = 10
_WORST = {"healthy": 0, "warning": 1, "error": 2}


class JobBrief(CamelModel):
    """A job as a dashboard lists it: no data, result or history (GET /jobs/{jobId} has them)."""

    model_config = ConfigDict(defer_build=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")

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
    health_status: str = Field(description="The worst of the queues' healthStatus.")
    totals: LiveStats = Field(description="liveStats summed over the queues.")
    queues: list[QueueSummary]
    recent_failures: list[JobBrief] = Field(description=f"The newest failed jobs, up to {RECENT_PER_QUEUE} per queue, newest first.")
    active_jobs: list[JobBrief] = Field(description=f"Jobs running now, up to {ACTIVE_PER_QUEUE} per queue.")
    upcoming_schedules: list[UpcomingRun] = Field(description="The recurring schedules due next, soonest first.")


def build_dashboard(queues: QueueService, schedules: ScheduleService, caller: Identity) -> Dashboard:
    authorize(caller, Action.INSPECT)  # stack-wide reads: admins and readers
    summaries = queues.overview(caller)
    jobs = queues.jobs

    def newest(name: str, status: JobStatus, limit: int) -> list[Job]:
        return jobs.list_for_queue(caller, queue=name, status=status, limit=limit, cursor=None)[0]

    with ThreadPoolExecutor(max_workers=max(1, min(8, 2 * len(summaries)))) as pool:
        failed = list(pool.map(lambda q: newest(q.name, JobStatus.FAILED, RECENT_PER_QUEUE), summaries))
        active = list(pool.map(lambda q: newest(q.name, JobStatus.ACTIVE, ACTIVE_PER_QUEUE), summaries))
    totals: dict[str, int] = {}
    for summary in summaries:
        for key, value in summary.live_stats.model_dump().items():
            totals[key] = totals.get(key, 0) + value
    upcoming = schedules.stats(caller, delayed_jobs=None)["nextRuns"]
    worst = max((q.health_status for q in summaries), key=lambda s: _WORST.get(s, 0), default="healthy")
    return Dashboard(
        generated_at=iso(now_ms()),
        health_status=worst,
        totals=LiveStats(**totals),
        queues=summaries,
        recent_failures=sorted((JobBrief.of(j) for batch in failed for j in batch), key=lambda j: j.failed_at or j.updated_at, reverse=True),
        active_jobs=sorted((JobBrief.of(j) for batch in active for j in batch), key=lambda j: j.started_at or j.updated_at),
        upcoming_schedules=[UpcomingRun.model_validate(run) for run in upcoming],
    )


__all__ = ["Dashboard", "JobBrief", "build_dashboard"]
