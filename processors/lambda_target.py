"""The built-in lambda processor: invoke a registered function synchronously, once per attempt.

The function gets ``{jobId, userId, queue, type, data, attempt, maxAttempts}`` (as an HTTP
target's POST body) and what it returns is the job's result. A function error (it raised)
is retried with the job's backoff, unless its ``errorType`` is one the target lists in
``permanentErrors``: then the job fails at once. Throttling, a missing function or a denied
invoke are retried too (a deploy or a concurrency limit is usually what they are).

AWS requests per attempt: one ``lambda:Invoke`` (billed to the function as one request plus
its duration), on top of the consumer's own.
"""

from __future__ import annotations

import json
from typing import Any

from shared.adapters import lambda_functions
from shared.errors import JobqError, PermanentJobError, RetryableJobError
from shared.models import LambdaTarget
from shared.settings import Settings
from shared.worker import JobContext


def function_payload(job: JobContext) -> dict[str, Any]:
    return {
        "jobId": job.job_id,
        "userId": job.user_id,  # job ids are unique per user, not globally
        "queue": job.queue,
        "type": job.type,
        "data": job.data,
        "attempt": job.attempt,
        "maxAttempts": job.max_attempts,
    }


def allowed_functions(settings: Settings) -> set[str]:
    """The ARNs the stack lets jobs invoke (LambdaTargetArns)."""
    return {arn.strip() for arn in settings.lambda_target_arns.split(",") if arn.strip()}


def run_lambda_target(target: LambdaTarget, job: JobContext) -> Any:
    if target.function_arn not in allowed_functions(job.settings):
        # Removed from LambdaTargetArns since it was registered: the role may not invoke it any more.
        raise PermanentJobError(f"function {target.function_arn} is not in the stack's LambdaTargetArns")
    payload = function_payload(job)
    if len(json.dumps(payload).encode()) > lambda_functions.MAX_PAYLOAD_BYTES:
        raise PermanentJobError("the job is larger than Lambda's 6 MB synchronous payload")
    try:
        answer = lambda_functions.invoke(target.function_arn, payload, timeout_seconds=target.timeout_seconds)
    except JobqError as err:
        raise RetryableJobError(f"function {target.function_arn} could not be invoked: {err.message}") from err
    if answer.function_error:
        message = f"function {target.function_arn} raised {answer.error_type}: {answer.error_message}"
        if answer.error_type in target.permanent_errors:
            raise PermanentJobError(message)
        raise RetryableJobError(message)
    return answer.payload
