"""Queue routes (operators): HTTP in, a call of shared.queue_admin, the envelope out.

Who may call each is the queue's policy (api/access.py, shared/access.py); an unknown queue is a 404.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from api.access import QueueGuard
from api.deps import CurrentUser, Cursors, Jobs, job_service
from api.envelope import Envelope, error_responses
from shared.models import NAME_PATTERN, TYPE_PATTERN, HttpTarget, JobPage, JobPublic
from shared.queue_admin import QueueService
from shared.queue_models import (
    CleanRequest,
    CleanResult,
    DeadLetterList,
    PauseState,
    PurgeResult,
    QueueConfiguration,
    QueueList,
    QueueMetrics,
    QueuePatch,
    QueueSummary,
    RedriveRequest,
    RedriveResult,
)
from shared.status import JobStatus

# Before the body is read, the queue's policy decides (shared/access.py); changes are audited.
router = APIRouter(prefix="/queues", tags=["queues"], dependencies=[QueueGuard])


def queue_service() -> QueueService:
    return QueueService(job_service())  # a thin wrapper of the cached JobService


Queues = Annotated[QueueService, Depends(queue_service)]
QueueName = Annotated[str, Path(pattern=NAME_PATTERN, description="The queue's name")]
ADMIN_ERRORS = (401, 403, 404, 503)


@router.get("", response_model=Envelope[QueueList], summary="Every queue with its live stats (admin)", responses=error_responses(401, 403, 503))
def list_queues(caller: CurrentUser, queues: Queues) -> Envelope[QueueList]:
    return Envelope(data=QueueList(queues=queues.overview(caller)))


@router.get("/{name}", response_model=Envelope[QueueSummary], summary="One queue with its live stats (admin)", responses=error_responses(*ADMIN_ERRORS))
def get_queue(name: QueueName, caller: CurrentUser, queues: Queues) -> Envelope[QueueSummary]:
    return Envelope(data=queues.describe(name, caller))


@router.patch(
    "/{name}",
    response_model=Envelope[QueueConfiguration],
    summary="Change the queue's runtime policy: default attempts and backoff, retention, HTTP targets (admin)",
    description="Effective within seconds, without a deploy. Pausing is `POST /queues/{name}/pause`.",
    responses=error_responses(400, *ADMIN_ERRORS, 409),
)
def patch_queue(name: QueueName, body: QueuePatch, caller: CurrentUser, queues: Queues) -> Envelope[QueueConfiguration]:
    return Envelope(data=queues.update(name, body, caller))


@router.get(
    "/{name}/jobs", response_model=Envelope[JobPage], summary="The queue's jobs, newest first (admin)", responses=error_responses(400, *ADMIN_ERRORS)
)
def queue_jobs(
    name: QueueName,
    caller: CurrentUser,
    queues: Queues,
    cursors: Cursors,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Jobs per page")] = 20,
    cursor: Annotated[str | None, Query(max_length=2048, description="`nextCursor` of the previous page")] = None,
) -> Envelope[JobPage]:
    listing = json.dumps(["queue-jobs", name, status])
    jobs, after = queues.list_jobs(name, caller, status=status, limit=limit, cursor=cursors.open(cursor, listing))
    return Envelope(data=JobPage(jobs=[JobPublic.of(j) for j in jobs], next_cursor=cursors.seal(after, listing)))


@router.post(
    "/{name}/pause",
    response_model=Envelope[PauseState],
    summary="Pause: jobs are accepted but none starts (admin)",
    description="Disables the consumer's event source mapping; running jobs finish. Idempotent.",
    responses=error_responses(*ADMIN_ERRORS, 409),
)
def pause_queue(name: QueueName, caller: CurrentUser, queues: Queues) -> Envelope[PauseState]:
    return Envelope(data=queues.pause(name, caller))


@router.post(
    "/{name}/resume",
    response_model=Envelope[PauseState],
    summary="Resume: the waiting jobs drain (admin)",
    responses=error_responses(*ADMIN_ERRORS, 409),
)
def resume_queue(name: QueueName, caller: CurrentUser, queues: Queues) -> Envelope[PauseState]:
    return Envelope(data=queues.resume(name, caller))


@router.post(
    "/{name}/clean",
    response_model=Envelope[CleanResult],
    summary="Remove finished jobs older than olderThan ms (admin)",
    responses=error_responses(400, *ADMIN_ERRORS),
)
def clean_queue(name: QueueName, body: CleanRequest, caller: CurrentUser, queues: Queues) -> Envelope[CleanResult]:
    return Envelope(data=queues.clean(name, body, caller))


@router.get(
    "/{name}/metrics",
    response_model=Envelope[QueueMetrics],
    summary="Completed, failed, throughput and processing times over time (admin)",
    description="Per minute up to 6 hours, per hour beyond (or as `resolution` says).",
    responses=error_responses(400, *ADMIN_ERRORS),
)
def queue_metrics(
    name: QueueName,
    caller: CurrentUser,
    queues: Queues,
    hours: Annotated[int, Query(ge=1, le=24 * 35, description="How far back")] = 24,
    resolution: Annotated[Literal["minute", "hour"] | None, Query(description="Default: minute up to 6 hours")] = None,
) -> Envelope[QueueMetrics]:
    return Envelope(data=queues.metrics(name, caller, hours=hours, resolution=resolution))


@router.get(
    "/{name}/dead-letters",
    response_model=Envelope[DeadLetterList],
    summary="What is in the dead-letter queue, with each message's job (admin)",
    responses=error_responses(400, *ADMIN_ERRORS),
)
def list_dead_letters(
    name: QueueName,
    caller: CurrentUser,
    queues: Queues,
    limit: Annotated[int, Query(ge=1, le=100, description="At most this many messages")] = 50,
) -> Envelope[DeadLetterList]:
    return Envelope(data=queues.dead_letters(name, caller, limit=limit))


@router.post(
    "/{name}/dead-letters/redrive",
    response_model=Envelope[RedriveResult],
    summary="Move dead letters back to the queue with a fresh set of attempts: all, or the listed jobIds (admin)",
    responses=error_responses(400, *ADMIN_ERRORS),
)
def redrive_dead_letters(
    name: QueueName, caller: CurrentUser, queues: Queues, body: RedriveRequest | None = None
) -> Envelope[RedriveResult]:
    return Envelope(data=queues.redrive(name, caller, job_ids=body.job_ids if body else None, user_id=body.user_id if body else None))


@router.delete(
    "/{name}/dead-letters",
    response_model=Envelope[PurgeResult],
    summary="Purge the dead-letter queue; jobs that still claim to run are marked failed (admin)",
    responses=error_responses(*ADMIN_ERRORS),
)
def purge_dead_letters(name: QueueName, caller: CurrentUser, queues: Queues) -> Envelope[PurgeResult]:
    return Envelope(data=queues.purge_dead_letters(name, caller))


@router.put(
    "/{name}/processors/{job_type}",
    response_model=Envelope[HttpTarget],
    summary="Register an HTTP target for a job type (admin)",
    responses=error_responses(400, 401, 403, 409),
)
def put_processor(
    name: Annotated[str, Path(pattern=NAME_PATTERN)],
    job_type: Annotated[str, Path(pattern=TYPE_PATTERN)],
    target: HttpTarget,
    caller: CurrentUser,
    jobs: Jobs,
) -> Envelope[HttpTarget]:
    return Envelope(data=jobs.put_http_target(name, job_type, target, caller))
