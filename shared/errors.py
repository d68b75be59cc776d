"""One exception tree for jobq, mapped to HTTP once (api/errors.py) and to batch results once (the consumer).

    JobqError
    ├── NotFound            404: no such job, queue or processor (or not yours)
    ├── Conflict            409: wrong state for the operation, idempotency clash
    ├── Invalid             400: a request that breaks a rule (unknown queue, bad option)
    ├── Forbidden           403: needs admin
    ├── PayloadTooLarge     413: job data over the limit
    ├── TooManyJobs         429: the queue (or the user on it) is at its unfinished-job limit
    ├── Unavailable         503: a dependency failed; the client may retry safely
    │   └── Throttled       503: a dependency asked us to slow down (throttling, capacity)
    └── PermanentJobError   a processor's verdict: fail the job now, do not retry

Processors raise ``PermanentJobError`` for bad input; any other exception from a
processor is retried with the job's backoff.
"""

from __future__ import annotations

from typing import Any


class JobqError(Exception):
    """Base of every error jobq raises on purpose."""

    status_code = 500
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(JobqError):
    status_code = 404
    code = "NOT_FOUND"


class Conflict(JobqError):
    status_code = 409
    code = "CONFLICT"


class Invalid(JobqError):
    status_code = 400
    code = "INVALID_REQUEST"


class Forbidden(JobqError):
    status_code = 403
    code = "FORBIDDEN"


class PayloadTooLarge(JobqError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class TooManyJobs(JobqError):
    """Back-pressure: nothing was stored; ``retry_after`` seconds is a fair time to try again."""

    status_code = 429
    code = "TOO_MANY_JOBS"

    def __init__(self, message: str, *, retry_after: int, paused: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        if paused:  # a paused queue drains only when someone resumes it: 503, as seed 000 answers an unavailable queue
            self.status_code = 503
            self.code = "QUEUE_PAUSED_AND_FULL"


class Unavailable(JobqError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"


class Throttled(Unavailable):
    """AWS throttled the call: worth retrying after a backoff, not worth an attempt of the job."""

    code = "THROTTLED"


class PermanentJobError(JobqError):
    """Raised by a processor when retrying cannot help (bad input, a 4xx from a target)."""

    code = "PERMANENT_FAILURE"


class RetryableJobError(JobqError):
    """Raised by a processor for a failure worth retrying (a 5xx, a timeout)."""

    code = "RETRYABLE_FAILURE"
