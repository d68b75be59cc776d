"""What the client raises: one tree, one class per class of API answer, so callers catch the level they care about.

    JobqClientError
    ├── ApiError                 the API answered with the error envelope (``status``, ``code``, ``message``)
    │   ├── BadRequest           400: the request breaks a rule (unknown queue, bad option); fix it
    │   ├── Unauthorized         401: no token, or API Gateway rejected it (expired, wrong issuer)
    │   ├── Forbidden            403: needs the admin group
    │   ├── NotFound             404: no such job, queue or schedule (or not yours)
    │   ├── Conflict             409: wrong state for the operation, or an idempotency clash
    │   ├── PayloadTooLarge      413: job data over the limit
    │   ├── RateLimited          429: still throttled after the client's retries
    │   └── ServerError          5xx: still failing after the client's retries
    ├── ConnectionFailed         no answer at all (refused, DNS, timeout) after the retries
    ├── WaitTimeout              ``Client.wait`` gave up before the job finished
    └── NotAvailable             the API does not offer this yet (e.g. flows)
"""

from __future__ import annotations

from typing import Any


class JobqClientError(Exception):
    """Base of everything the client raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(JobqClientError):
    status: int = 0

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class BadRequest(ApiError):
    exit_code = 2


class Unauthorized(ApiError):
    exit_code = 3


class Forbidden(ApiError):
    exit_code = 3


class NotFound(ApiError):
    exit_code = 4


class Conflict(ApiError):
    exit_code = 5


class PayloadTooLarge(ApiError):
    exit_code = 2


class RateLimited(ApiError):
    exit_code = 6


class ServerError(ApiError):
    exit_code = 7


class ConnectionFailed(JobqClientError):
    exit_code = 7


class WaitTimeout(JobqClientError):
    exit_code = 8


class NotAvailable(JobqClientError):
    exit_code = 9


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: BadRequest,
    409: Conflict,
    413: PayloadTooLarge,
    422: BadRequest,
    429: RateLimited,
}


def error_for(status: int, body: Any) -> ApiError:
    """The exception for an error answer: the envelope's code and message, or API Gateway's bare ``{"message"}``."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message, details = str(error.get("code", "HTTP_ERROR")), str(error.get("message", "")), error.get("details")
    else:
        message = str(body.get("message")) if isinstance(body, dict) and body.get("message") else f"HTTP {status}"
        code, details = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 429: "TOO_MANY_REQUESTS"}.get(status, "HTTP_ERROR"), None
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else BadRequest if status < 500 else ApiError)
    return cls(status, code, message, details)
