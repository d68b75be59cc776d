"""Queue routes (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import CurrentUser, Jobs
from api.envelope import Envelope, error_responses
from shared.models import NAME_PATTERN, TYPE_PATTERN, HttpTarget

router = APIRouter(prefix="/queues", tags=["queues"])


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
