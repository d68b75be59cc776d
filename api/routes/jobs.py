"""Job routes: HTTP in, a call of shared.jobs, the envelope out."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response

from api.cursors import CursorSigner
from api.deps import CurrentUser, Cursors, Jobs, schedule_service
from api.envelope import Envelope, error_responses
from shared.client_models import (
    BulkCreate,
    BulkItemResult,
    BulkResult,
    JobCreate,
    JobPage,
    JobPublic,
    JobStatusView,
    LogLine,
    LogPage,
    StatusRequest,
    StatusResult,
)
from shared.clock import iso
from shared.dashboard import build_dashboard
from shared.errors import Invalid
from shared.jobs import MAX_BULK_JOBS
from shared.models import JOB_ID_PATTERN, NAME_PATTERN, Job
from shared.paging import Fetch, numbered_page
from shared.queue_admin import QueueService
from shared.queue_models import Dashboard
from shared.status import JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job's id")]
Limit = Annotated[int, Query(ge=1, le=100, description="Jobs per page")]
Cursor = Annotated[str | None, Query(max_length=2048, description="`nextCursor` of the previous page")]
StatusFilter = Annotated[JobStatus | None, Query(description="Only jobs in this status")]
QueueFilter = Annotated[str | None, Query(pattern=NAME_PATTERN, description="Only jobs of this queue")]
Owner = Annotated[
    str | None,
    Query(
        alias="userId",
        min_length=1,
        max_length=256,
        description="Admins: the owner of the job (job ids are per user). Without it, your own job.",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=255, description="Same key and body: the same job, however often you send it"),
]


PageNumber = Annotated[int | None, Query(ge=1, description="Seed 000's page number (1: the newest); instead of `cursor`")]


def _page(jobs: list[Job], next_cursor: str | None, *, page: int | None = None, limit: int | None = None) -> Envelope[JobPage]:
    return Envelope(
        data=JobPage(jobs=[JobPublic.of(j) for j in jobs], next_cursor=next_cursor, page=page, limit=limit, has_more=next_cursor is not None)
    )


def paged(
    fetch: Fetch[Job], *, page: int | None, limit: int, cursor: str | None, cursors: CursorSigner, listing: str
) -> Envelope[JobPage]:
    """One page by number (``page``) or by signed cursor; ``fetch(limit, store_cursor)`` is one Query."""
    if page is not None:
        if cursor:
            raise Invalid("give page or cursor, not both")
        found, after = numbered_page(fetch, page=page, limit=limit)
        return _page(found, cursors.seal(after, listing), page=page, limit=limit)
    found, after = fetch(limit, cursors.open(cursor, listing))
    return _page(found, cursors.seal(after, listing), limit=limit)


def _listing(*parts: object) -> str:
    """What a cursor is bound to: the listing and its filters (JSON, so no two listings share one)."""
    return json.dumps([str(p) if p is not None else None for p in parts])


@router.post(
    "",
    status_code=201,
    response_model=Envelope[JobPublic],
    summary="Create a job",
    responses=error_responses(400, 401, 403, 409, 413, 429, 503)
    | {200: {"model": Envelope[JobPublic], "description": "The job already exists (same jobId, Idempotency-Key or deduplication key): it is returned"}},
)
def create_job(
    body: JobCreate, caller: CurrentUser, jobs: Jobs, response: Response, idempotency_key: IdempotencyKey = None
) -> Envelope[JobPublic]:
    job, created = jobs.create(body, caller, idempotency_key=idempotency_key)
    if not created:
        response.status_code = 200
    return Envelope(data=JobPublic.of(job))


@router.post(
    "/bulk",
    response_model=Envelope[BulkResult],
    summary=f"Create up to {MAX_BULK_JOBS} jobs",
    description="Each item is a `POST /jobs` body and succeeds or fails on its own: see `results[i].status`.",
    responses=error_responses(400, 401),
)
def create_jobs(body: BulkCreate, caller: CurrentUser, jobs: Jobs) -> Envelope[BulkResult]:
    outcomes = jobs.create_bulk(body.jobs, caller)
    results = [
        BulkItemResult(
            index=o.index,
            success=o.error is None,
            status=o.status,
            job=JobPublic.of(o.job) if o.job else None,
            error={"code": o.error.code, "message": o.error.message} if o.error else None,
        )
        for o in outcomes
    ]
    ok = sum(r.success for r in results)
    return Envelope(data=BulkResult(created=ok, failed=len(results) - ok, results=results))


@router.post(
    "/status",
    response_model=Envelope[StatusResult],
    summary="Status, progress and result pointer of up to 100 jobs in one call",
    description="One BatchGetItem. Ids of jobs you may not see are listed in `notFound` with the unknown ones, "
    "without saying which is which. Admins and readers may name owners with `jobs: [{jobId, userId}]`.",
    responses=error_responses(400, 401, 403, 503),
)
def job_statuses(body: StatusRequest, caller: CurrentUser, jobs: Jobs) -> Envelope[StatusResult]:
    found, missing = jobs.get_many(caller, body.refs())
    return Envelope(data=StatusResult(jobs=[JobStatusView.of(j) for j in found], not_found=missing))


@router.get(
    "",
    response_model=Envelope[JobPage],
    summary="List a queue's jobs (admin)",
    responses=error_responses(400, 401, 403),
)
def list_jobs(
    caller: CurrentUser,
    jobs: Jobs,
    cursors: Cursors,
    queue: Annotated[str, Query(pattern=NAME_PATTERN, description="The queue")],
    status: StatusFilter = None,
    page: PageNumber = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Envelope[JobPage]:
    return paged(
        lambda n, c: jobs.list_for_queue(caller, queue=queue, status=status, limit=n, cursor=c),
        page=page,
        limit=limit,
        cursor=cursor,
        cursors=cursors,
        listing=_listing("queue", queue, status),
    )


@router.get(
    "/user",
    response_model=Envelope[JobPage],
    summary="List your own jobs, newest first (seed 001's GET /jobs/user)",
    responses=error_responses(400, 401),
)
def list_my_jobs(
    caller: CurrentUser,
    jobs: Jobs,
    cursors: Cursors,
    status: StatusFilter = None,
    queue: QueueFilter = None,
    page: PageNumber = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Envelope[JobPage]:
    return paged(
        lambda n, c: jobs.list_for_user(caller.user_id, caller, status=status, queue=queue, limit=n, cursor=c),
        page=page,
        limit=limit,
        cursor=cursor,
        cursors=cursors,
        listing=_listing("user", caller.user_id, status, queue),  # the same listing as /jobs/user/{own id}
    )


@router.get(
    "/dashboard",
    response_model=Envelope[Dashboard],
    summary="Everything an operator's dashboard shows, in one call (admin; seed 001)",
    description="Every queue's stats and health, recent failures, active jobs, and the schedules due next.",
    responses=error_responses(401, 403, 503),
)
def dashboard(caller: CurrentUser, jobs: Jobs) -> Envelope[Dashboard]:
    return Envelope(data=build_dashboard(QueueService(jobs), schedule_service(), caller))


@router.get(
    "/user/{user_id}",
    response_model=Envelope[JobPage],
    summary="List a user's jobs, newest first",
    description="Users may list their own jobs; admins anyone's. Filters: `status`, `queue`.",
    responses=error_responses(400, 401, 403),
)
def list_user_jobs(
    user_id: Annotated[str, Path(max_length=256)],
    caller: CurrentUser,
    jobs: Jobs,
    cursors: Cursors,
    status: StatusFilter = None,
    queue: QueueFilter = None,
    page: PageNumber = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Envelope[JobPage]:
    return paged(
        lambda n, c: jobs.list_for_user(user_id, caller, status=status, queue=queue, limit=n, cursor=c),
        page=page,
        limit=limit,
        cursor=cursor,
        cursors=cursors,
        listing=_listing("user", user_id, status, queue),
    )


@router.get("/{job_id}", response_model=Envelope[JobPublic], summary="Get a job", responses=error_responses(401, 404))
def get_job(job_id: JobId, caller: CurrentUser, jobs: Jobs, user_id: Owner = None) -> Envelope[JobPublic]:
    return Envelope(data=JobPublic.of(jobs.read(job_id, caller, user_id=user_id)))


@router.get(
    "/{job_id}/result",
    response_model=Envelope[Any],
    summary="A job's result alone (null until it has one)",
    description="The whole result however large (up to 5 MB), also when GET /jobs/{id} leaves it out (`omitted`).",
    responses=error_responses(401, 404),
)
def job_result(job_id: JobId, caller: CurrentUser, jobs: Jobs, user_id: Owner = None) -> Envelope[Any]:
    return Envelope(data=jobs.result(job_id, caller, user_id=user_id))


@router.delete(
    "/{job_id}",
    response_model=Envelope[JobPublic],
    summary="Cancel a job; or remove it, or retry it (`?action=`, seed 004)",
    description="`action=cancel` (the default): a waiting or delayed job is cancelled at once (200). An active job is "
    "marked (202): its processor stops at its next progress report (an HTTP target's request is abandoned within "
    "seconds) and the job ends `cancelled`. A finished job: 409. `action=remove`: the job is deleted unless it is "
    "active (409: cancel it first); the answer is the job as it was. `action=retry`: as `POST /jobs/{jobId}/retry`.",
    responses=error_responses(400, 401, 404, 409, 503) | {202: {"model": Envelope[JobPublic], "description": "Cancellation requested; the job is still active"}},
)
def cancel_job(
    job_id: JobId,
    caller: CurrentUser,
    jobs: Jobs,
    response: Response,
    user_id: Owner = None,
    action: Annotated[Literal["cancel", "remove", "retry"], Query(description="What to do with the job")] = "cancel",
) -> Envelope[JobPublic]:
    if action == "remove":
        return Envelope(data=JobPublic.of(jobs.remove(job_id, caller, user_id=user_id)))
    if action == "retry":
        return Envelope(data=JobPublic.of(jobs.retry(job_id, caller, user_id=user_id)))
    return _cancelled(jobs.cancel(job_id, caller, user_id=user_id), response)


def _cancelled(job: Job, response: Response) -> Envelope[JobPublic]:
    if job.status is not JobStatus.CANCELLED:
        response.status_code = 202
    return Envelope(data=JobPublic.of(job))


@router.post(
    "/user/{job_id}/cancel",
    response_model=Envelope[JobPublic],
    summary="Cancel one of your jobs (seed 001); same as DELETE /jobs/{jobId}",
    responses=error_responses(401, 404, 409) | {202: {"model": Envelope[JobPublic], "description": "Cancellation requested; the job is still active"}},
)
def cancel_my_job(job_id: JobId, caller: CurrentUser, jobs: Jobs, response: Response, user_id: Owner = None) -> Envelope[JobPublic]:
    return _cancelled(jobs.cancel(job_id, caller, user_id=user_id), response)


@router.post(
    "/{job_id}/retry",
    response_model=Envelope[JobPublic],
    summary="Retry a failed or cancelled job",
    description="The job goes back to `waiting` with a fresh set of attempts; its earlier attempts stay in `history`.",
    responses=error_responses(401, 404, 409, 503),
)
def retry_job(job_id: JobId, caller: CurrentUser, jobs: Jobs, user_id: Owner = None) -> Envelope[JobPublic]:
    return Envelope(data=JobPublic.of(jobs.retry(job_id, caller, user_id=user_id)))


@router.get(
    "/{job_id}/logs",
    response_model=Envelope[LogPage],
    summary="A job's log lines, oldest first",
    responses=error_responses(400, 401, 404),
)
def job_logs(
    job_id: JobId, caller: CurrentUser, jobs: Jobs, cursors: Cursors, limit: Limit = 50, cursor: Cursor = None, user_id: Owner = None
) -> Envelope[LogPage]:
    listing = _listing("logs", user_id or caller.user_id, job_id)
    lines, after = jobs.logs(job_id, caller, limit=limit, cursor=cursors.open(cursor, listing), user_id=user_id)
    next_cursor = cursors.seal(after, listing)
    return Envelope(
        data=LogPage(
            lines=[LogLine(at=iso(line["at_ms"]), message=line["message"], attempt=line["attempt"]) for line in lines],
            next_cursor=next_cursor,
        )
    )
