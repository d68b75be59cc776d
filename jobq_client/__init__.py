"""jobq's Python client and the ``jobq`` CLI built on it.

    from jobq_client import Client

    with Client("https://abc123.execute-api.eu-west-1.amazonaws.com", token) as jobq:
        job = jobq.add("email-sending", "send-email", {"to": "bob@example.com", "subject": "Hi", "body": "Hello"})
        done = jobq.wait(job.job_id, timeout=60)
        print(done.status, done.result)
"""

from jobq_client.aio import AsyncClient
from jobq_client.client import Client, JobUpdate
from jobq_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    JobqClientError,
    NotAvailable,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthorized,
    WaitTimeout,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "JobUpdate",
    "JobqClientError",
    "NotAvailable",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "WaitTimeout",
]
