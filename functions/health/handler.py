"""The HealthFunction: an EventBridge rule (every 5 minutes, the stack's ``HealthCheckRate``).

Per queue: recovers stalled jobs, enqueues orphans, computes the queue's health and stores
it for GET /queues and GET /health/detailed, and emits metrics (shared/health.py).
The event is EventBridge's Scheduled Event; its content does not matter.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

# Imported during Lambda's init, as before: the composition root builds from them at the first event.
import shared.health  # noqa: F401
from functions import composition
from shared.observability import logger, traced


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.debug("health run", extra={"rule": (event.get("resources") or [None])[0], "time": event.get("time")})
    run = composition.health_sweep().check_health()
    return run.model_dump(by_alias=True, mode="json")
