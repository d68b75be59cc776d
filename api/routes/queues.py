"""Queue routes (operators): HTTP in, a call of shared.queue_admin, the envelope out.

Who may call each is the queue's policy (api/access.py, shared/access.py); an unknown queue is a 404.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from api.access import QueueGuard
from api.deps import CurrentUser, Cursors, Jobs, job_service
from api.envelope import Envelope, error_responses
from api.routes.jobs import PageNumber, paged
from shared.client_models import JobPage, JobPublic
from shared.errors import Invalid
from shared.flow_control import GROUP_KEY_PATTERN
from shared.models import JOB_ID_PATTERN, NAME_PATTERN, TYPE_PATTERN, AnyTarget, ProcessorTarget
from shared.queue_admin import QueueService
from shared.queue_models import (
    BreakerView,
    BulkRemoval,
    CleanRequest,
    CleanResult,
    DeadLetterList,
    GroupList,
    GroupPauseState,
    PauseState,
    PurgeResult,
    QueueAction,
    QueueConfiguration,
    QueueDetails,
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
MAX_BULK_REMOVAL = 100
StatusQuery = Annotated[JobStatus | None, Query(description="Only jobs in this status")]
LimitQuery = Annotated[int, Query(ge=1, le=100, description="Jobs per page")]


@router.get(
    "",
    response_model=Envelope[list[QueueSummary]],
    summary="Every queue with its live stats (admin)",
    description="`data` is the list itself, as seed 000 prints it.",
    responses=error_responses(401, 403, 503),
)
def list_queues(caller: CurrentUser, queues: Queues) -> Envelope[list[QueueSummary]]:
    return Envelope(data=queues.overview(caller))


@router.get(
    "/{name}",
    response_model=Envelope[QueueDetails],
    summary="One queue with its live stats; with includeJobs=true a page of its jobs too (admin)",
    responses=error_responses(400, *ADMIN_ERRORS),
)
def get_queue(
    name: QueueName,
    caller: CurrentUser,
    queues: Queues,
    cursors: Cursors,
    include_jobs: Annotated[bool, Query(alias="includeJobs", description="Add the newest jobs (seed 004)")] = False,
    status: StatusQuery = None,
    limit: LimitQuery = 20,
) -> Envelope[QueueDetails]:
    details = QueueDetails.model_validate(queues.describe(name, caller).model_dump())
    if include_jobs:
        jobs, after = queues.list_jobs(name, caller, status=status, limit=limit, cursor=None)
        details.jobs = [JobPublic.of(j) for j in jobs]
        details.next_cursor = cursors.seal(after, queue_jobs_listing(name, status))
    return Envelope(data=details)


@router.post(
    "/{name}",
    response_model=Envelope[PauseState | CleanResult],
    summary="Queue actions (seed 004): pause, resume, or clean with {grace, limit, type} (admin)",
    responses=error_responses(400, *ADMIN_ERRORS, 409),
)
def queue_action(name: QueueName, body: QueueAction, caller: CurrentUser, queues: Queues) -> Envelope[PauseState | CleanResult]:
    return Envelope(data=queues.act(name, body, caller))


@router.delete(
    "/{name}",
    response_model=Envelope[BulkRemoval],
    summary="Remove jobs in bulk (seed 004): ?jobIds=a,b,c or ?status=failed (admin)",
    description=(
        "`jobIds`: comma-separated; each is `<userId>/<jobId>` (the `userId` and `jobId` a listing shows), or a bare "
        "jobId of the owner named by `userId` (the caller when absent). `status`: every job of that status, oldest "
        "first, up to `limit`. Each delete is conditional on the job not having changed since it was read; running "
        "jobs are not removed (cancel them). The answer lists what was removed and why the others were not."
    ),
    responses=error_responses(400, *ADMIN_ERRORS),
)
def remove_jobs(
    name: QueueName,
    caller: CurrentUser,
    queues: Queues,
    job_ids: Annotated[str | None, Query(alias="jobIds", max_length=20_000, description="a,b,c or alice/a,bob/b")] = None,
    status: StatusQuery = None,
    user_id: Annotated[str | None, Query(alias="userId", max_length=256, description="Owner of bare jobIds")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="By status: at most this many")] = 1000,
) -> Envelope[BulkRemoval]:
    if (job_ids is None) == (status is None):
        raise Invalid("give jobIds or status (not both)")
    if job_ids is None:
        return Envelope(data=queues.remove_jobs(name, caller, status=status, limit=limit))
    return Envelope(data=queues.remove_jobs(name, caller, refs=job_refs(job_ids, user_id or caller.user_id)))


def job_refs(text: str, default_owner: str) -> list[tuple[str, str]]:
    """``a,alice/b`` -> ``[(default_owner, a), (alice, b)]``; a job id has no ``/``, a user id may."""
    refs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        owner, _, job_id = part.rpartition("/")
        if not re.fullmatch(JOB_ID_PATTERN, job_id) or (_ and not owner):
            raise Invalid(f"jobIds: '{part}' is not a job id or <userId>/<jobId>")
        refs.append((owner or default_owner, job_id))
    if not refs or len(refs) > MAX_BULK_REMOVAL:
        raise Invalid(f"jobIds: give 1 to {MAX_BULK_REMOVAL} ids")
    return refs


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
    status: StatusQuery = None,
    page: PageNumber = None,
    limit: LimitQuery = 20,
    cursor: Annotated[str | None, Query(max_length=2048, description="`nextCursor` of the previous page")] = None,
) -> Envelope[JobPage]:
    return paged(
        lambda n, c: queues.list_jobs(name, caller, status=status, limit=n, cursor=c),
        page=page,
        limit=limit,
        cursor=cursor,
        cursors=cursors,
        listing=queue_jobs_listing(name, status),
    )


def queue_jobs_listing(name: str, status: JobStatus | None) -> str:
    """What a cursor of the queue's job listing is bound to (GET /queues/{name}/jobs and ?includeJobs=true)."""
    return json.dumps(["queue-jobs", name, status])


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


@router.get(
    "/{name}/groups",
    response_model=Envelope[GroupList],
    summary="The queue's busiest group keys: active and started jobs, limits, paused (admin)",
    responses=error_responses(400, *ADMIN_ERRORS),
)
def queue_groups(
    name: QueueName, caller: CurrentUser, queues: Queues, limit: Annotated[int, Query(ge=1, le=100, description="Keys to show")] = 20
) -> Envelope[GroupList]:
    return Envelope(data=queues.groups(name, caller, limit=limit))


GroupKey = Annotated[
    str, Path(pattern=GROUP_KEY_PATTERN, description="The group key: 1 to 128 characters, without '#', '/', control characters or leading whitespace")
]


@router.post(
    "/{name}/groups/{key}/pause",
    response_model=Envelope[GroupPauseState],
    summary="Pause one group key: its jobs wait (no attempt spent) until it is resumed (admin)",
    responses=error_responses(400, *ADMIN_ERRORS, 409),
)
def pause_group(name: QueueName, key: GroupKey, caller: CurrentUser, queues: Queues) -> Envelope[GroupPauseState]:
    return Envelope(data=queues.pause_group(name, key, caller, paused=True))


@router.post(
    "/{name}/groups/{key}/resume",
    response_model=Envelope[GroupPauseState],
    summary="Resume one group key (admin)",
    responses=error_responses(400, *ADMIN_ERRORS, 409),
)
def resume_group(name: QueueName, key: GroupKey, caller: CurrentUser, queues: Queues) -> Envelope[GroupPauseState]:
    return Envelope(data=queues.pause_group(name, key, caller, paused=False))


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
    if body is None:
        return Envelope(data=queues.redrive(name, caller, job_ids=None))
    return Envelope(
        data=queues.redrive(name, caller, job_ids=body.job_ids, user_id=body.user_id, priority=body.priority, attempts=body.attempts)
    )


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
    response_model=Envelope[ProcessorTarget],
    summary="Register an HTTP target or a Lambda function for a job type (admin)",
    description=(
        "`kind: http` POSTs each job to `url`; `kind: lambda` invokes `functionArn` synchronously (it must be listed in "
        "the stack's `LambdaTargetArns`). Either way the job's `{jobId, userId, queue, type, data, attempt, maxAttempts}` "
        "goes out and the answer is the result."
    ),
    responses=error_responses(400, 401, 403, 404, 409),
)
def put_processor(
    name: Annotated[str, Path(pattern=NAME_PATTERN)],
    job_type: Annotated[str, Path(pattern=TYPE_PATTERN)],
    target: ProcessorTarget,
    caller: CurrentUser,
    jobs: Jobs,
    queues: Queues,
) -> Envelope[AnyTarget]:
    queues.queue(name, caller)  # an unknown queue is a 404 here as on every /queues/{name} route
    return Envelope(data=jobs.targets.put(name, job_type, target, caller))


@router.get(
    "/{name}/breakers",
    response_model=Envelope[list[BreakerView]],
    summary="The circuit breakers of the queue's targets: closed, open or half_open (probing), and why",
    responses=error_responses(*ADMIN_ERRORS),
)
def list_breakers(name: QueueName, caller: CurrentUser, queues: Queues) -> Envelope[list[BreakerView]]:
    return Envelope(data=queues.breakers(name, caller))


@router.post(
    "/{name}/breakers/{job_type}/open",
    response_model=Envelope[BreakerView],
    summary="Open a target's circuit breaker by hand: its jobs wait, spending no attempts, until it is closed (admin)",
    responses=error_responses(*ADMIN_ERRORS, 409),
)
def open_breaker(
    name: QueueName, job_type: Annotated[str, Path(pattern=TYPE_PATTERN)], caller: CurrentUser, queues: Queues
) -> Envelope[BreakerView]:
    return Envelope(data=queues.force_breaker(name, job_type, caller, open_=True))


@router.post(
    "/{name}/breakers/{job_type}/close",
    response_model=Envelope[BreakerView],
    summary="Close a target's circuit breaker: its waiting jobs run again (admin)",
    responses=error_responses(*ADMIN_ERRORS, 409),
)
def close_breaker(
    name: QueueName, job_type: Annotated[str, Path(pattern=TYPE_PATTERN)], caller: CurrentUser, queues: Queues
) -> Envelope[BreakerView]:
    return Envelope(data=queues.force_breaker(name, job_type, caller, open_=False))
