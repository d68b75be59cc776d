"""The SchedulerFunction: what a recurring EventBridge Scheduler schedule invokes.

Scheduler invokes it asynchronously with the schedule's target Input, its context
attributes filled in (shared/adapters/scheduler.py ``firing_input``)::

    {"jobq": "schedule-firing", "schedule": "nightly-report",
     "scheduledTime": "2030-01-01T07:00:00Z", "executionId": "...", "attempt": "1"}

Each invocation is one firing: ``ScheduleService.fire`` creates its one job. An error
that retrying can fix (DynamoDB or SQS unavailable) is raised, so Lambda retries the
event; a delivery that arrives twice creates nothing the second time.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

# Imported during Lambda's init, as before: the composition root builds from them at the first event.
import shared.adapters.job_repository
import shared.catalog
import shared.jobs
import shared.schedules  # noqa: F401
from functions import composition
from shared.observability import logger, traced


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    name = event.get("schedule") if isinstance(event, dict) else None
    scheduled_time = event.get("scheduledTime") if isinstance(event, dict) else None
    if not isinstance(name, str) or not name or not isinstance(scheduled_time, str):
        logger.error("not a jobq schedule firing; ignored", extra={"event_keys": sorted(event) if isinstance(event, dict) else None})
        return {"schedule": name, "outcome": "failed", "reason": "not a jobq schedule firing"}
    result = composition.schedule_service().fire(name, scheduled_time)
    return result.model_dump(by_alias=True)
