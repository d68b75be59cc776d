"""A job's webhook deliveries: what was sent where, how often, and with what answer."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import CurrentUser, Jobs, SettingsDep
from api.envelope import Envelope, error_responses
from api.models import JobWebhooks, WebhookDelivery
from api.routes.jobs import Owner
from shared.adapters.webhooks import DynamoDeliveryLog
from shared.models import JOB_ID_PATTERN

router = APIRouter(prefix="/jobs", tags=["webhooks"])

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job's id")]


@lru_cache(maxsize=4)
def _log(table_name: str) -> DynamoDeliveryLog:
    return DynamoDeliveryLog(table_name)


@router.get(
    "/{job_id}/webhooks",
    response_model=Envelope[JobWebhooks],
    summary="A job's webhook deliveries, oldest first",
    responses=error_responses(401, 403, 404),
)
def job_webhooks(job_id: JobId, caller: CurrentUser, jobs: Jobs, settings: SettingsDep, user_id: Owner = None) -> Envelope[JobWebhooks]:
    job = jobs.get(job_id, caller, user_id=user_id)  # your own job, or (admins) userId's
    records = _log(settings.realtime_table_name).deliveries(job.user_id, job.job_id) if settings.realtime_table_name else []
    return Envelope(data=JobWebhooks(job_id=job.job_id, webhook=job.webhook, deliveries=[WebhookDelivery.model_validate(r) for r in records]))
