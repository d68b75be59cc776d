"""The built-in http processor: POST the job to a registered target.

2xx: completed, the response's JSON is the result. 4xx: failed at once (the target
rejected the job; retrying cannot help), except 408 and 429, which say "later".
5xx, a timeout or a connection error: retried with the job's backoff.
Redirects are not followed: a target that moved is a configuration error to fix.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import HTTPRedirectHandler, Request, build_opener

from shared.errors import PermanentJobError, RetryableJobError
from shared.models import HttpTarget
from shared.settings import get_settings
from shared.worker import JobContext

MAX_RESPONSE_BYTES = 1024 * 1024
_RETRYABLE_4XX = frozenset({408, 425, 429})


class _NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = build_opener(_NoRedirect)


def run_http_target(target: HttpTarget, job: JobContext) -> Any:
    try:
        # Again at call time: the name may resolve elsewhere than when it was registered.
        target.check_url(allow_loopback_http=get_settings().allow_loopback_http_targets)
    except ValueError as err:
        raise PermanentJobError(f"target {target.url} may not be called: {err}") from err
    payload = {
        "jobId": job.job_id,
        "userId": job.user_id,  # job ids are unique per user, not globally
        "queue": job.queue,
        "type": job.type,
        "data": job.data,
        "attempt": job.attempt,
        "maxAttempts": job.max_attempts,
    }
    request = Request(
        target.url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "jobq-http-processor/1",
            "X-Jobq-Job-Id": job.job_id,
            "X-Jobq-Attempt": str(job.attempt),
        },
    )
    try:
        # The job's timeout (options.timeout) bounds the call too: the request is dropped at the deadline.
        with _opener.open(request, timeout=job.time_left(target.timeout_seconds)) as response:
            status = response.status
            body = response.read(MAX_RESPONSE_BYTES + 1)
    except HTTPError as err:
        snippet = _snippet(err.read(500) if err.fp else b"")
        if 300 <= err.code < 400:
            raise PermanentJobError(f"target {target.url} answered {err.code}; redirects are not followed") from err
        if 400 <= err.code < 500 and err.code not in _RETRYABLE_4XX:
            raise PermanentJobError(f"target {target.url} answered {err.code}: {snippet}") from err
        raise RetryableJobError(f"target {target.url} answered {err.code}: {snippet}") from err
    except (URLError, TimeoutError, ConnectionError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise RetryableJobError(f"target {target.url} unreachable: {reason}") from err
    if not 200 <= status < 300:
        raise PermanentJobError(f"target {target.url} answered {status}")
    if len(body) > MAX_RESPONSE_BYTES:
        raise PermanentJobError(f"target {target.url} answered with more than {MAX_RESPONSE_BYTES} bytes")
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        return {"status": status, "body": _snippet(body, 2000)}


def _snippet(raw: bytes, limit: int = 300) -> str:
    return raw[:limit].decode("utf-8", "replace").strip()
