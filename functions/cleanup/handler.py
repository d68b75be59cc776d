"""The CleanupFunction: an EventBridge rule (hourly, the stack's ``CleanupRate``) applies every queue's retention.

The event is EventBridge's Scheduled Event (``"detail-type": "Scheduled Event"``); its content
does not matter. The run stops in time to record what it did when the invocation's time
runs short, and the next run goes on where it stopped (shared/retention.py).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

# Imported during Lambda's init, as before: the composition root builds from them at the first event.
import shared.retention  # noqa: F401
from functions import composition
from shared.observability import logger, traced


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.debug("cleanup run", extra={"rule": (event.get("resources") or [None])[0], "time": event.get("time")})
    run = composition.retention().clean(time_left_ms=context.get_remaining_time_in_millis)
    return run.model_dump(by_alias=True, mode="json")
