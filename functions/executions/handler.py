"""The ExecutionEventsFunction: EventBridge's "Step Functions Execution Status Change" events.

The rule (template.yaml) passes the ends (SUCCEEDED, FAILED, TIMED_OUT, ABORTED) of the state
machines in StateMachineTargetArns; each ends the job that started it (shared/executions.py).
An error raised here (AWS unavailable) makes Lambda retry the asynchronous event; what it
could not write after that goes to the function's on-failure queue, and the job's lease, once
it runs out, hands it to the stall sweep.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

# Imported during Lambda's init, as before: the composition root builds from them at the first event.
import shared.executions  # noqa: F401
from functions import composition
from shared.observability import logger, traced


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcome = composition.execution_ends().handle(event.get("detail") or {})
    return {"outcome": outcome}
