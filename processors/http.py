"""The built-in http processor: POST the job to a registered target.

2xx: completed, the response's JSON is the result. 4xx: failed at once (the target
rejected the job; retrying cannot help), except 408, 425 and 429, which say "later".
5xx, a timeout or a connection error: retried with the job's backoff. A target may set
its own rule (``retryOn``: only these statuses are retried; ``failOn``: these fail at once).
Redirects are not followed: a target that moved is a configuration error to fix.

Cancelling: the request runs in a thread while this one watches the job (one read every
``JOBQ_HTTP_CANCEL_POLL_SECONDS``). Once the job is cancelled the connection is shut down
(the target sees its client go away), the target's ``cancelUrl`` is told if it has one, and
the job ends ``cancelled``: the consumer does not wait for the target's answer.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from shared.errors import PermanentJobError, RetryableJobError, Unavailable
from shared.models import HttpTarget
from shared.worker import JobCancelled, JobContext, JobInterrupted

MAX_RESPONSE_BYTES = 5_100_000  # a 5 MB result (the job result limit) and its envelope
CANCEL_NOTICE_TIMEOUT_SECONDS = 3


class _Request(threading.Thread):
    """One POST in its own thread, so the consumer can stop waiting for it."""

    def __init__(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
        super().__init__(daemon=True, name="jobq-http-target")
        parts = urlsplit(url)
        connection = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.conn = connection(parts.hostname or "", parts.port, timeout=timeout)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.body = body
        self.headers = headers
        self.status = 0
        self.response = b""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.conn.request("POST", self.path, body=self.body, headers=self.headers)
            response = self.conn.getresponse()
            self.status = response.status
            self.response = response.read(MAX_RESPONSE_BYTES + 1)
        except BaseException as err:  # handed to the waiting thread
            self.error = err
        finally:
            self.conn.close()

    def abort(self) -> None:
        """Shut the socket down: a blocked send or receive returns at once, and the target sees the close."""
        sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


def run_http_target(target: HttpTarget, job: JobContext) -> Any:
    try:
        # Again at call time: the name may resolve elsewhere than when it was registered.
        target.check_url(allow_loopback_http=job.settings.allow_loopback_http_targets)
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
    if job.waited_for_children:
        payload["childrenValues"] = job.children_values()  # it added children before: their results
    request = _Request(
        target.url,
        json.dumps(payload).encode(),
        {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "jobq-http-processor/1",
            "X-Jobq-Job-Id": job.job_id,
            "X-Jobq-Attempt": str(job.attempt),
        },
        target.timeout_seconds,
    )
    request.start()
    # The job's timeout (options.timeout) bounds the call too: the request is dropped at the deadline.
    wait_s = job.time_left(target.timeout_seconds) or target.timeout_seconds
    deadline = time.monotonic() + wait_s
    poll = job.settings.http_cancel_poll_seconds
    while True:
        request.join(min(poll, max(0.0, deadline - time.monotonic())))
        if not request.is_alive():
            break
        try:
            job.check_interrupted()
        except JobCancelled:
            request.abort()
            _tell_cancelled(target, payload)
            raise JobCancelled(f"job {job.job_id} was cancelled while its target worked on it") from None
        except JobInterrupted:  # another worker holds the job now: stop calling on its behalf
            request.abort()
            raise
        except Unavailable:
            pass  # the job could not be read this time: the target keeps working, the next look retries
        if time.monotonic() >= deadline:
            request.abort()
            raise RetryableJobError(f"target {target.url} unreachable: no answer within {wait_s:g} s")
    return _outcome(target, request, job)


def _outcome(target: HttpTarget, request: _Request, job: JobContext) -> Any:
    if request.error is not None:
        reason = "timed out" if isinstance(request.error, TimeoutError) else request.error
        raise RetryableJobError(f"target {target.url} unreachable: {reason}") from request.error
    status, body = request.status, request.response
    if 300 <= status < 400:
        raise PermanentJobError(f"target {target.url} answered {status}; redirects are not followed")
    if not 200 <= status < 300:
        message = f"target {target.url} answered {status}: {_snippet(body)}"
        if target.is_retried(status):
            raise RetryableJobError(message)
        raise PermanentJobError(message)
    if len(body) > MAX_RESPONSE_BYTES:
        raise PermanentJobError(f"target {target.url} answered with more than {MAX_RESPONSE_BYTES} bytes")
    if not body.strip():
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return {"status": status, "body": _snippet(body, 2000)}
    return _follow_ups(answer, job)


def _follow_ups(answer: Any, job: JobContext) -> Any:
    """``{"jobq": {"addJobs": [...], "addChildren": [...]}, ...}``: the target adds jobs (each a
    ``POST /jobs`` body; a child may carry ``onFailure``) as ``job.add_job`` and ``job.add_children``
    do; the rest of the answer is the result."""
    if not isinstance(answer, dict) or "jobq" not in answer:
        return answer
    asks = answer.pop("jobq")
    if not isinstance(asks, dict) or not all(isinstance(asks.get(k, []), list) for k in ("addJobs", "addChildren")):
        raise PermanentJobError('the target\'s "jobq" must be {"addJobs": [...], "addChildren": [...]}')
    for spec in asks.get("addJobs", []):
        if not isinstance(spec, dict):
            raise PermanentJobError("each of addJobs must be a job (queue, type, data, options)")
        job.add_job(spec.get("queue"), spec.get("type"), spec.get("data"), spec.get("options"))  # type: ignore[arg-type]  # checked there
    children = asks.get("addChildren", [])
    if children:
        if not all(isinstance(c, dict) for c in children):
            raise PermanentJobError("each of addChildren must be a job (queue, type, data, options, onFailure)")
        job.add_children(children)
    return answer


def _tell_cancelled(target: HttpTarget, payload: dict[str, Any]) -> None:
    """Best effort: the target's cancelUrl hears that the job it works on was cancelled."""
    if not target.cancel_url:
        return
    notice = {key: payload[key] for key in ("jobId", "userId", "queue", "type")} | {"event": "cancelled"}
    request = _Request(
        target.cancel_url,
        json.dumps(notice).encode(),
        {"Content-Type": "application/json", "User-Agent": "jobq-http-processor/1", "X-Jobq-Job-Id": str(payload["jobId"])},
        CANCEL_NOTICE_TIMEOUT_SECONDS,
    )
    request.start()
    request.join(CANCEL_NOTICE_TIMEOUT_SECONDS)


def _snippet(raw: bytes, limit: int = 300) -> str:
    return raw[:limit].decode("utf-8", "replace").strip()
