"""Job routes: HTTP in, a call of shared.jobs, the envelope out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from api.deps import CurrentUser, Jobs
from api.envelope import Envelope, error_responses
from shared.models import JOB_ID_PATTERN, JobCreate, JobPublic

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job's id")]


@router.post(
    "",
    status_code=201,
    response_model=Envelope[JobPublic],
    summary="Create a job",
    responses={200: {"model": Envelope[JobPublic], "description": "A job with this jobId exists: it is returned"}}
    | error_responses(400, 401, 409, 413, 503),
)
def create_job(body: JobCreate, caller: CurrentUser, jobs: Jobs, response: Response) -> Envelope[JobPublic]:
    job, created = jobs.create(body, caller)
    if not created:
        response.status_code = 200
    return Envelope(data=JobPublic.of(job))


@router.get("/{job_id}", response_model=Envelope[JobPublic], summary="Get a job", responses=error_responses(401, 404))
def get_job(job_id: JobId, caller: CurrentUser, jobs: Jobs) -> Envelope[JobPublic]:
    return Envelope(data=JobPublic.of(jobs.get(job_id, caller)))
