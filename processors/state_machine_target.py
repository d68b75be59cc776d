"""The built-in stepfunctions processor: start a registered state machine's execution, once per attempt.

The execution gets ``{jobId, userId, queue, type, data, attempt, maxAttempts}`` (as a Lambda
target's event) and is named after the attempt's lease token. The consumer does not wait:
it raises ``EndsElsewhere``, the job stays ``active`` with a lease of the target's
``timeoutSeconds`` (plus a margin for the event's delivery), and the execution's
status-change event ends it (shared/executions.py).

AWS requests per attempt: one ``states:StartExecution`` (plus the state machine's own state
transitions, billed to it), on top of the consumer's claim and the lease write; the end event
costs the handler one GetItem of the target (cached), one GetItem and one UpdateItem of the job.
"""

from __future__ import annotations

import json
from typing import Any

from processors.lambda_target import function_payload
from shared.adapters import state_machines
from shared.errors import JobqError, PermanentJobError, RetryableJobError
from shared.models import StateMachineTarget
from shared.settings import Settings
from shared.worker import EndsElsewhere, JobContext

# Past the execution's own timeout: the time its end event may take to arrive before the stall sweep may take the job.
EVENT_MARGIN_SECONDS = 300


def allowed_state_machines(settings: Settings) -> set[str]:
    """The ARNs the stack lets jobs start (StateMachineTargetArns)."""
    return {arn.strip() for arn in settings.state_machine_target_arns.split(",") if arn.strip()}


def run_state_machine_target(target: StateMachineTarget, job: JobContext) -> Any:
    if target.state_machine_arn not in allowed_state_machines(job.settings):
        raise PermanentJobError(f"state machine {target.state_machine_arn} is not in the stack's StateMachineTargetArns")
    payload = function_payload(job)
    if len(json.dumps(payload).encode()) > state_machines.MAX_INPUT_BYTES:
        raise PermanentJobError("the job is larger than Step Functions' 256 KB execution input")
    try:
        state_machines.start(target.state_machine_arn, job.token, payload)
    except JobqError as err:
        raise RetryableJobError(f"state machine {target.state_machine_arn} could not be started: {err.message}") from err
    raise EndsElsewhere(int(target.timeout_seconds) + EVENT_MARGIN_SECONDS)
