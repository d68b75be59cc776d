"""The seed's scheduler routes: ``/scheduler/...``. Delayed jobs for every user; the rest for admins.

``POST /scheduler/delayed`` is ``POST /jobs`` with a delay or a run time required;
``POST /scheduler/repeating`` and ``POST /scheduler/jobs/{name}/trigger`` are
``POST /schedules`` and ``POST /schedules/{name}/trigger``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from api.access import StackGuard
from api.deps import CurrentUser, Jobs, Reports, Schedules
from api.envelope import Envelope, error_responses
from api.models import Check, DelayedJobCreate, QueueHealthLine, SchedulerHealth, SchedulerMetrics, SchedulerStats
from api.routes.health import uptime_seconds
from api.routes.schedules import ScheduleName
from shared.adapters import counters, scheduler
from shared.client_models import JobPublic
from shared.clock import iso
from shared.errors import JobqError
from shared.jobs import Identity, JobService
from shared.queue_admin import QueueService
from shared.reports import read_last_health_run
from shared.schedules import Schedule, ScheduleCreate

router = APIRouter(prefix="/scheduler", tags=["scheduler"])
Admin = [StackGuard]


@router.post(
    "/delayed",
    status_code=201,
    response_model=Envelope[JobPublic],
    summary="Create a delayed job: delay up to 15 minutes on SQS, longer on EventBridge Scheduler",
    responses=error_responses(400, 401, 403, 409, 413, 429, 503)
    | {200: {"model": Envelope[JobPublic], "description": "The job already exists (same jobId): it is returned"}},
)
def create_delayed(body: DelayedJobCreate, caller: CurrentUser, jobs: Jobs, response: Response) -> Envelope[JobPublic]:
    job, created = jobs.create(body.as_job(), caller)
    if not created:
        response.status_code = 200
    return Envelope(data=JobPublic.of(job))


@router.post(
    "/repeating",
    status_code=201,
    response_model=Envelope[Schedule],
    summary="Create a recurring schedule (admin); same as POST /schedules",
    description=(
        "Seed 000's body works as written: `{queue, type, data, cronExpression, description}`. Without `name` the "
        "schedule is named after its job type, which `POST /scheduler/jobs/{jobName}/trigger` takes. Sending the "
        "same definition again returns the schedule (200); another definition under a taken name is a 409."
    ),
    dependencies=Admin,
    responses=error_responses(400, 401, 403, 409, 413, 503)
    | {200: {"model": Envelope[Schedule], "description": "The same schedule exists already: it is returned"}},
)
def create_repeating(body: ScheduleCreate, caller: CurrentUser, schedules: Schedules, response: Response) -> Envelope[Schedule]:
    schedule, created = schedules.create_or_match(body, caller)
    if not created:
        response.status_code = 200
    return Envelope(data=schedule)


@router.post(
    "/jobs/{name}/trigger",
    status_code=201,
    response_model=Envelope[JobPublic],
    summary="Run a schedule once now (admin); same as POST /schedules/{name}/trigger",
    dependencies=Admin,
    responses=error_responses(400, 401, 403, 404, 503),
)
def trigger(name: ScheduleName, caller: CurrentUser, schedules: Schedules) -> Envelope[JobPublic]:
    return Envelope(data=JobPublic.of(schedules.trigger(name, caller)))


def _delayed_jobs(jobs: JobService) -> int | None:
    try:
        return sum(counters.read_counts(name).get("delayed", 0) for name in jobs.directory.all())
    except JobqError:
        return None


@router.get("/stats", response_model=Envelope[SchedulerStats], summary="Schedules, runs and delayed jobs (admin)", dependencies=Admin,
            responses=error_responses(401, 403, 503))
def scheduler_stats(caller: CurrentUser, schedules: Schedules, jobs: Jobs, reports: Reports) -> Envelope[SchedulerStats]:
    found = schedules.stats(caller, delayed_jobs=_delayed_jobs(jobs))
    names = found.pop("names")
    last = read_last_health_run(reports)
    return Envelope(
        data=SchedulerStats.model_validate(
            {
                **found,
                "scheduledJobsCount": found["repeating"]["total"],
                "scheduledJobs": names,
                "queueHealth": _queue_health(jobs, caller),
                "uptime": uptime_seconds(),
                "lastHealthCheck": last.ran_at if last else None,
            }
        )
    )


def _queue_health(jobs: JobService, caller: Identity) -> list[QueueHealthLine]:
    return [
        QueueHealthLine(name=q.name, health_status=q.health_status, processing_rate=q.processing_rate, total_jobs=q.live_stats.total)
        for q in QueueService(jobs).overview(caller)
    ]


def _queue_health_if_readable(jobs: JobService, caller: Identity) -> list[QueueHealthLine]:
    try:
        return _queue_health(jobs, caller)
    except JobqError:  # the health answer still comes, with the checks saying what is down
        return []


def check(probe: Any) -> Check:
    started = time.monotonic()
    try:
        probe()
    except JobqError as err:
        return Check(status="down", latency_ms=int((time.monotonic() - started) * 1000), message=err.message)
    return Check(status="up", latency_ms=int((time.monotonic() - started) * 1000))


@router.get(
    "/health",
    response_model=Envelope[SchedulerHealth],
    summary="Is EventBridge Scheduler reachable, and are the schedules firing (admin)",
    dependencies=Admin,
    responses=error_responses(401, 403) | {503: {"model": Envelope[SchedulerHealth]}},
)
def scheduler_health(caller: CurrentUser, schedules: Schedules, jobs: Jobs, reports: Reports) -> JSONResponse:
    checks = {"scheduler": check(lambda: scheduler.ping(schedules.settings)), "dynamodb": check(schedules.jobs.store.ping)}
    found = schedules.stats(caller, delayed_jobs=None) if checks["dynamodb"].status == "up" else None
    last = read_last_health_run(reports) if checks["dynamodb"].status == "up" else None
    overdue = sum(q.recovery.overdue_enqueued for q in last.queues.values()) if last else None
    status: Literal["healthy", "degraded", "unhealthy"] = "healthy"
    if any(c.status == "down" for c in checks.values()):
        status = "unhealthy"
    elif (found and found["schedulesWithErrors"]) or overdue:
        status = "degraded"
    body = SchedulerHealth(
        status=status,
        timestamp=iso(jobs.clock()),
        schedule_group=schedules.settings.schedule_group,
        checks=checks,
        schedules={"active": found["repeating"]["active"], "paused": found["repeating"]["paused"], "withErrors": found["schedulesWithErrors"]}
        if found
        else {},
        overdue_delayed_jobs_woken=overdue,
        last_health_run=last.ran_at if last else None,
        queue_health=_queue_health_if_readable(jobs, caller) if checks["dynamodb"].status == "up" else [],
    )
    code = 503 if status == "unhealthy" else 200
    return JSONResponse(status_code=code, content={"success": code == 200, "data": body.model_dump(mode="json", by_alias=True)})


@router.get(
    "/metrics",
    response_model=Envelope[SchedulerMetrics],
    summary="Schedule firings per hour: jobs created, duplicate deliveries, skipped, failed, manual (admin)",
    dependencies=Admin,
    responses=error_responses(400, 401, 403, 503),
)
def scheduler_metrics(
    caller: CurrentUser, schedules: Schedules, hours: Annotated[int, Query(ge=1, le=720)] = 24
) -> Envelope[SchedulerMetrics]:
    return Envelope(data=SchedulerMetrics.model_validate(schedules.metrics(caller, hours=hours)))
