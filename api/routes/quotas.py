"""Per-user quotas (shared/quotas.py): ``/quotas/{userId}``. Readers and admins look, admins change (audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from api.access import StackGuard
from api.deps import Jobs
from api.envelope import Envelope, error_responses
from api.models import QuotaChange, UserQuota
from shared.clock import iso
from shared.quotas import QuotaOverride, QuotaUsage

router = APIRouter(prefix="/quotas", tags=["quotas"], dependencies=[StackGuard])
UserId = Annotated[str, Path(min_length=1, max_length=256, description="The user (the token's subject)")]


def _public(user_id: str, usage: QuotaUsage) -> UserQuota:
    quota = usage.quota
    return UserQuota(
        user_id=user_id,
        jobs_per_minute=quota.jobs_per_minute,
        max_unfinished_jobs=quota.max_unfinished_jobs,
        overridden=quota.overridden,
        created_this_minute=usage.created_this_minute,
        unfinished_jobs=usage.unfinished_jobs,
    )


@router.get("/{user_id}", response_model=Envelope[UserQuota], summary="A user's quotas and what they use now", responses=error_responses(400, 401, 403, 503))
def get_quota(user_id: UserId, jobs: Jobs) -> Envelope[UserQuota]:
    return Envelope(data=_public(user_id, jobs.quotas.usage(user_id)))


@router.put(
    "/{user_id}",
    response_model=Envelope[UserQuota],
    summary="Give a user limits of their own (admin); other API containers apply them within seconds",
    responses=error_responses(400, 401, 403, 503),
)
def put_quota(user_id: UserId, body: QuotaChange, jobs: Jobs) -> Envelope[UserQuota]:
    jobs.quotas.set(user_id, QuotaOverride(body.jobs_per_minute, body.max_unfinished_jobs), now=iso(jobs.clock()))
    return Envelope(data=_public(user_id, jobs.quotas.usage(user_id)))


@router.delete(
    "/{user_id}", status_code=204, summary="Back to the stack's default quotas (admin)", responses=error_responses(400, 401, 403, 503)
)
def delete_quota(user_id: UserId, jobs: Jobs) -> Response:
    jobs.quotas.clear(user_id)
    return Response(status_code=204)
