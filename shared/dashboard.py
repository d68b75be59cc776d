"""``GET /jobs/dashboard`` (seed 001): what an operator's dashboard shows, in one call.

Every queue's summary (as ``GET /queues``), totals over the queues, the newest failures and
the active jobs of each queue (one Query of the byQueueStatus index per queue and status, a
few items each), and the schedules due next. Its cost is that of ``GET /queues`` plus two
small Queries per queue and one read of the schedules; nothing grows with the table.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from shared.access import Action, Identity, authorize
from shared.clock import iso
from shared.models import Job
from shared.queue_models import ACTIVE_JOBS_PER_QUEUE, RECENT_FAILURES_PER_QUEUE, Dashboard, JobBrief, LiveStats, UpcomingRun
from shared.report_models import worst
from shared.status import JobStatus

if TYPE_CHECKING:
    from shared.queue_admin import QueueService
    from shared.schedules import ScheduleService



def build_dashboard(queues: QueueService, schedules: ScheduleService, caller: Identity) -> Dashboard:
    authorize(caller, Action.INSPECT)  # stack-wide reads: admins and readers
    summaries = queues.overview(caller)
    jobs = queues.jobs

    def newest(name: str, status: JobStatus, limit: int) -> list[Job]:
        return jobs.list_for_queue(caller, queue=name, status=status, limit=limit, cursor=None)[0]

    with ThreadPoolExecutor(max_workers=max(1, min(8, 2 * len(summaries)))) as pool:
        failed = list(pool.map(lambda q: newest(q.name, JobStatus.FAILED, RECENT_FAILURES_PER_QUEUE), summaries))
        active = list(pool.map(lambda q: newest(q.name, JobStatus.ACTIVE, ACTIVE_JOBS_PER_QUEUE), summaries))
    totals: dict[str, int] = {}
    for summary in summaries:
        for key, value in summary.live_stats.model_dump().items():
            totals[key] = totals.get(key, 0) + value
    upcoming = schedules.stats(caller, delayed_jobs=None)["nextRuns"]
    return Dashboard(
        generated_at=iso(queues.clock()),
        health_status=worst([q.health_status for q in summaries]),
        totals=LiveStats(**totals),
        queues=summaries,
        recent_failures=sorted((JobBrief.of(j) for batch in failed for j in batch), key=lambda j: j.failed_at or j.updated_at, reverse=True),
        active_jobs=sorted((JobBrief.of(j) for batch in active for j in batch), key=lambda j: j.started_at or j.updated_at),
        upcoming_schedules=[UpcomingRun.model_validate(run) for run in upcoming],
    )


__all__ = ["build_dashboard"]
