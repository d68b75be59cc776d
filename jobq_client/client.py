"""``Client(url, token)``: jobq's HTTP API as Python calls with typed results.

The results are the API's own public models (``shared.models``, ``shared.queue_models``,
``shared.schedule_models``), validated from the responses, so the client and the API cannot
drift apart. Creates carry an ``Idempotency-Key`` made once per call and reused by every
retry of that call, so a create retried after a lost answer never makes two jobs. Answers
429 and 5xx and network errors are retried with exponential backoff and jitter (honouring
``Retry-After``); operations that are not idempotent (retry, trigger, redrive, clean) are
retried only when the request cannot have been processed (429, connection refused).
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel

from jobq_client.errors import ApiError, ConnectionFailed, NotAvailable, RateLimited, ServerError, WaitTimeout, error_for
from jobq_client.live import JobEvents, LiveUnavailable
from shared.client_models import BulkResult, JobCreate, JobOptions, JobPage, JobPublic, LogLine, LogPage
from shared.queue_models import (
    CleanRequest,
    CleanResult,
    DeadLetterList,
    PauseState,
    PurgeResult,
    QueueMetrics,
    QueueSummary,
    RedriveResult,
)
from shared.schedule_models import Schedule, ScheduleCreate, SchedulePage, SchedulePatch
from shared.status import FINISHED, JobStatus

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class JobUpdate:
    """One state of a followed job: how it came (``via``: "push" or "poll"), and why polling when it is (``note``)."""

    job: JobPublic
    via: Literal["push", "poll"]
    note: str | None = None


ENDING_EVENTS = frozenset({"job:completed", "job:cancelled"})


def _is_ending(event: dict[str, Any]) -> bool:
    return event.get("type") in ENDING_EVENTS or (event.get("type") == "job:failed" and not event.get("willRetry"))


def _apply(job: JobPublic, event: dict[str, Any]) -> JobPublic:
    """The job as an event says it is now (the fields events carry); the rest stays as last read."""
    update: dict[str, Any] = {}
    with contextlib.suppress(ValueError):  # an event of a newer API: keep the status read
        update["status"] = JobStatus(event.get("status"))
    if "progress" in event:
        update["progress"] = event["progress"]
        update["progress_message"] = event.get("message")
    if isinstance(event.get("attempt"), int):
        update["attempts"] = event["attempt"]
    if event.get("error"):
        update["error"] = event["error"]
    if event.get("at"):
        update["updated_at"] = event["at"]
    return job.model_copy(update=update)


def _older(event: dict[str, Any], job: JobPublic) -> bool:
    """An event about a state before the one held (events and jobs stamp ``at``/``updatedAt`` alike, ISO in ms)."""
    at = event.get("at")
    return isinstance(at, str) and bool(job.updated_at) and at < str(job.updated_at)


def _seen(job: JobPublic) -> tuple[Any, ...]:
    return (job.status, job.progress, job.progress_message, job.attempts)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = 15.0


class Client:
    """A jobq API client. ``url`` is the API's base URL (the stack's ``ApiUrl``), ``token`` a JWT its authorizer accepts."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        websocket_url: str | None = None,
    ) -> None:
        """``websocket_url``: the live events' WebSocket; by default the one the API names (``""``: never push)."""
        self.url = url.rstrip("/")
        self._websocket_url = websocket_url
        self.token = token
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        headers = {"User-Agent": "jobq-client/0.1", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)
        self._openapi: dict[str, Any] | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- who am I --------------------------------------------------------------------------------
    @property
    def claims(self) -> dict[str, Any]:
        """The token's claims, read without verifying it (API Gateway verifies it on every call)."""
        if not self.token or self.token.count(".") != 2:
            return {}
        payload = self.token.split(".")[1]
        try:
            return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return {}

    @property
    def user_id(self) -> str | None:
        sub = self.claims.get("sub")
        return str(sub) if sub else None

    def check(self) -> str:
        """Prove the URL and the token with one cheap authenticated read; the token's user id."""
        user = self.user_id or "unknown"
        self._call("GET", f"/jobs/user/{_seg(user)}", JobPage, params={"limit": 1})
        return user

    # ---- jobs ------------------------------------------------------------------------------------
    def add(
        self,
        queue: str,
        type: str,
        data: dict[str, Any] | None = None,
        *,
        options: JobOptions | dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        **option_fields: Any,
    ) -> JobPublic:
        """Create a job. Options as a ``JobOptions``, a dict, or keywords (``attempts=3, delay=1000, job_id="x"``)."""
        opts = _options(options, option_fields)
        body = JobCreate(queue=queue, type=type, data=data or {}, options=opts).model_dump(
            by_alias=True, mode="json", exclude_unset=True
        )
        key = idempotency_key or str(uuid.uuid4())
        return self._call("POST", "/jobs", JobPublic, json=body, headers={"Idempotency-Key": key}, safe=True)

    def add_bulk(self, jobs: list[dict[str, Any] | JobCreate]) -> BulkResult:
        """Up to 100 jobs in one call; ``results[i]`` says how each went. Retried only when nothing can have been written."""
        items = [j.model_dump(by_alias=True, mode="json", exclude_unset=True) if isinstance(j, JobCreate) else j for j in jobs]
        return self._call("POST", "/jobs/bulk", BulkResult, json={"jobs": items}, safe=False)

    def get(self, job_id: str, *, user_id: str | None = None) -> JobPublic:
        """A job; an admin names another user's job with ``user_id`` (ids are scoped by owner)."""
        return self._call("GET", f"/jobs/{_seg(job_id)}", JobPublic, params=_owner(user_id))

    def wait(
        self,
        job_id: str,
        timeout: float = 60.0,
        *,
        user_id: str | None = None,
        poll_interval: float = 0.5,
        on_update: Callable[[JobPublic], None] | None = None,
        live: bool = True,
    ) -> JobPublic:
        """Block until the job is completed, failed or cancelled, and return it; ``WaitTimeout`` after ``timeout`` seconds.

        Follows the job by push where the API has live events, else by polling (``follow``); ``on_update`` sees every change.
        """
        for update in self.follow(job_id, timeout, user_id=user_id, poll_interval=poll_interval, live=live):
            if on_update:
                on_update(update.job)
            if update.job.status in FINISHED:
                return update.job
        raise AssertionError("follow() ends with a finished job or WaitTimeout")  # pragma: no cover

    def follow(
        self,
        job_id: str,
        timeout: float = 60.0,
        *,
        user_id: str | None = None,
        poll_interval: float = 0.5,
        live: bool = True,
        check_every: float = 15.0,
    ) -> Iterator[JobUpdate]:
        """The job as it changes, until it ends (the last update is the finished job); ``WaitTimeout`` after ``timeout`` s.

        With ``live`` (the default) and a WebSocket on the API (``websocket_url``), the job's events are
        pushed: one ``GET`` at the start and one at the end (the full result), nothing between; a
        quiet socket is checked with a ``GET`` every ``check_every`` seconds. Without it, or when
        the socket fails, it polls ``GET /jobs/{id}`` (0.1 s growing to ``poll_interval``).
        Each update says how it came (``via``: "push" or "poll") and, when polling, why (``note``).
        """
        deadline = time.monotonic() + timeout
        note: str | None = None
        events: JobEvents | None = None
        if live:
            try:
                events = JobEvents(self.websocket_url or "", self.token, job_id, user_id, open_timeout=min(5.0, timeout)).__enter__()
            except LiveUnavailable as why:
                note = str(why)
        else:
            note = "live events not asked for"
        try:
            job = self.get(job_id, user_id=user_id)  # after subscribing: a change after this read is pushed
            if events is not None:
                yield JobUpdate(job, "push")
                while job.status not in FINISHED:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise WaitTimeout(f"job {job_id} is still {job.status.value} after {timeout:g}s")
                    try:
                        event = events.next(min(left, check_every))
                    except LiveUnavailable as why:
                        note = f"{why}; polling"
                        break
                    if event is not None and not _is_ending(event) and _older(event, job):
                        continue  # written before the state read at the start, delivered after it: already seen
                    changed = self.get(job_id, user_id=user_id) if event is None or _is_ending(event) else _apply(job, event)
                    if _seen(changed) != _seen(job) or changed.status in FINISHED:
                        job = changed
                        yield JobUpdate(job, "push")
                if job.status in FINISHED:
                    return
            else:
                yield JobUpdate(job, "poll", note)
        finally:
            if events is not None:
                events.close()
        interval = 0.1
        while job.status not in FINISHED:
            if time.monotonic() + interval > deadline:
                raise WaitTimeout(f"job {job_id} is still {job.status.value} after {timeout:g}s")
            self._sleep(interval)
            interval = min(poll_interval, interval * 2)
            current = self.get(job_id, user_id=user_id)
            if _seen(current) != _seen(job):
                job = current
                yield JobUpdate(job, "poll", note)

    @property
    def websocket_url(self) -> str | None:
        """The API's live events WebSocket (``wss://...``), as it tells its clients (``GET /dashboard/config.json``)."""
        if self._websocket_url is None:
            try:
                response = self._send("GET", "/dashboard/config.json", safe=True)
                found = response.json().get("websocketUrl") if response.is_success else None
            except (ConnectionFailed, ValueError, AttributeError):
                found = None
            self._websocket_url = str(found) if found else ""
        return self._websocket_url or None

    def iter_jobs(
        self,
        *,
        queue: str | None = None,
        status: JobStatus | str | None = None,
        user_id: str | None = None,
        page_size: int = 100,
        limit: int | None = None,
    ) -> Iterator[JobPublic]:
        """Jobs newest first, every page fetched as needed.

        ``user_id`` (yours by default, anyone's for an admin) lists by owner, optionally within ``queue``;
        ``queue`` alone lists the whole queue (admin).
        """
        params: dict[str, Any] = {"limit": min(page_size, 100)}
        if status:
            params["status"] = str(status)
        if queue and not user_id:
            path = f"/queues/{_seg(queue)}/jobs"
        else:
            owner = user_id or self.user_id
            if not owner:
                raise ValueError("iter_jobs needs queue= or user_id= when the token has no subject")
            path = f"/jobs/user/{_seg(owner)}"
            if queue:
                params["queue"] = queue
        yielded = 0
        for page in self._pages(path, params, JobPage):
            for job in page.jobs:
                if limit is not None and yielded >= limit:
                    return
                yielded += 1
                yield job

    def list_jobs(
        self,
        *,
        queue: str | None = None,
        status: JobStatus | str | None = None,
        user_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of jobs (what ``iter_jobs`` hides): pass ``next_cursor`` back as ``cursor``."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = str(status)
        if cursor:
            params["cursor"] = cursor
        if queue and not user_id:
            return self._call("GET", f"/queues/{_seg(queue)}/jobs", JobPage, params=params)
        if queue:
            params["queue"] = queue
        owner = user_id or self.user_id
        if not owner:
            raise ValueError("list_jobs needs queue= or user_id= when the token has no subject")
        return self._call("GET", f"/jobs/user/{_seg(owner)}", JobPage, params=params)

    def cancel(self, job_id: str, *, user_id: str | None = None) -> JobPublic:
        """Waiting/delayed: cancelled now. Active: ``cancel_requested`` (it stops at its next progress report)."""
        return self._call("DELETE", f"/jobs/{_seg(job_id)}", JobPublic, params=_owner(user_id))

    def retry(self, job_id: str, *, user_id: str | None = None) -> JobPublic:
        """A failed or cancelled job back to waiting with a fresh set of attempts."""
        return self._call("POST", f"/jobs/{_seg(job_id)}/retry", JobPublic, params=_owner(user_id), safe=False)

    def remove(self, job_id: str, *, user_id: str | None = None) -> None:
        """Remove a job for good, where the API offers it (``DELETE /jobs/{id}?action=remove``)."""
        if not self._offers_remove():
            raise NotAvailable(
                "this API cannot remove a single job yet; cancel it (jobq cancel) or clean finished jobs by age (jobq queue clean)"
            )
        self._call("DELETE", f"/jobs/{_seg(job_id)}", None, params={**_owner(user_id), "action": "remove"})

    def logs(self, job_id: str, *, user_id: str | None = None, limit: int = 100, cursor: str | None = None) -> LogPage:
        params: dict[str, Any] = {**_owner(user_id), "limit": limit}
        if cursor:
            params["cursor"] = cursor
        return self._call("GET", f"/jobs/{_seg(job_id)}/logs", LogPage, params=params)

    def iter_logs(self, job_id: str, *, user_id: str | None = None) -> Iterator[LogLine]:
        """Every log line so far, oldest first."""
        for page in self._pages(f"/jobs/{_seg(job_id)}/logs", {**_owner(user_id), "limit": 100}, LogPage):
            yield from page.lines

    # ---- queues (admin) --------------------------------------------------------------------------
    def queues(self) -> list[QueueSummary]:
        return [QueueSummary.model_validate(q) for q in self._call("GET", "/queues", None) or []]  # data is the list (seed 000)

    def queue(self, name: str) -> QueueSummary:
        return self._call("GET", f"/queues/{_seg(name)}", QueueSummary)

    def pause_queue(self, name: str) -> PauseState:
        return self._call("POST", f"/queues/{_seg(name)}/pause", PauseState, safe=True)

    def resume_queue(self, name: str) -> PauseState:
        return self._call("POST", f"/queues/{_seg(name)}/resume", PauseState, safe=True)

    def clean_queue(self, name: str, *, status: str, older_than_ms: int = 0, limit: int = 1000) -> CleanResult:
        body = CleanRequest(older_than=older_than_ms, status=status, limit=limit).model_dump(by_alias=True)  # type: ignore[arg-type]
        return self._call("POST", f"/queues/{_seg(name)}/clean", CleanResult, json=body, safe=False)

    def metrics(self, name: str, *, hours: int = 24, resolution: str | None = None) -> QueueMetrics:
        params: dict[str, Any] = {"hours": hours}
        if resolution:
            params["resolution"] = resolution
        return self._call("GET", f"/queues/{_seg(name)}/metrics", QueueMetrics, params=params)

    def dead_letters(self, name: str, *, limit: int = 50) -> DeadLetterList:
        return self._call("GET", f"/queues/{_seg(name)}/dead-letters", DeadLetterList, params={"limit": limit})

    def redrive(self, name: str, job_ids: list[str] | None = None) -> RedriveResult:
        """Dead letters back to the queue with a fresh set of attempts: all, or only ``job_ids``."""
        body = {"jobIds": job_ids} if job_ids else {}
        return self._call("POST", f"/queues/{_seg(name)}/dead-letters/redrive", RedriveResult, json=body, safe=False)

    def purge_dead_letters(self, name: str) -> PurgeResult:
        return self._call("DELETE", f"/queues/{_seg(name)}/dead-letters", PurgeResult)

    # ---- schedules (admin) -----------------------------------------------------------------------
    def schedules(self) -> list[Schedule]:
        return [s for page in self._pages("/schedules", {"limit": 100}, SchedulePage) for s in page.schedules]

    def schedule(self, name: str) -> Schedule:
        return self._call("GET", f"/schedules/{_seg(name)}", Schedule)

    def add_schedule(self, name: str, queue: str, type: str, data: dict[str, Any] | None = None, **fields: Any) -> Schedule:
        """``cron="0 2 * * *", timezone="Europe/Paris"`` or ``every=300_000`` (ms); optional ``limit``, ``options`` ..."""
        body = ScheduleCreate(name=name, queue=queue, type=type, data=data or {}, **fields).model_dump(
            by_alias=True, mode="json", exclude_unset=True
        )
        return self._call("POST", "/schedules", Schedule, json=body, safe=True)

    def update_schedule(self, name: str, **fields: Any) -> Schedule:
        """Change ``cron``, ``every`` (ms), ``timezone``, ``limit`` (None: no limit) or ``description``; runs and template stay."""
        body = SchedulePatch.model_validate(fields).model_dump(by_alias=True, mode="json", exclude_unset=True)
        return self._call("PATCH", f"/schedules/{_seg(name)}", Schedule, json=body, safe=True)

    def pause_schedule(self, name: str) -> Schedule:
        return self._call("POST", f"/schedules/{_seg(name)}/pause", Schedule, safe=True)

    def resume_schedule(self, name: str) -> Schedule:
        return self._call("POST", f"/schedules/{_seg(name)}/resume", Schedule, safe=True)

    def trigger_schedule(self, name: str) -> JobPublic:
        return self._call("POST", f"/schedules/{_seg(name)}/trigger", JobPublic, safe=False)

    def delete_schedule(self, name: str) -> None:
        self._call("DELETE", f"/schedules/{_seg(name)}", None)

    # ---- flows -----------------------------------------------------------------------------------
    def flow(self, job_id: str, *, user_id: str | None = None) -> dict[str, Any]:
        """A job's flow (parent and children), where the API has flows."""
        if not any(path.startswith("/flows") for path in self.openapi().get("paths", {})):
            raise NotAvailable("flows are not available on this API yet (jobs that start jobs come with flows, issue 14)")
        return self._call("GET", f"/flows/{_seg(job_id)}", None, params=_owner(user_id)) or {}

    def watch_flow(
        self, job_id: str, timeout: float = 3600.0, *, user_id: str | None = None, live: bool = True, poll_interval: float = 1.0
    ) -> Iterator[tuple[dict[str, Any], str]]:
        """A flow's events until its root ends, each with how it came ("push" or "poll"); the last is ``flow:completed``.

        Pushed: the WebSocket's flow subscription (its jobs' ``job:*`` events, then ``flow:completed``).
        Polled (no WebSocket, or it failed): ``GET /flows/{id}`` every ``poll_interval`` s, a
        ``job:<status>`` event for each job whose status changed. ``WaitTimeout`` after ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        events: JobEvents | None = None
        if live:
            try:
                events = JobEvents(self.websocket_url or "", self.token, job_id, user_id, open_timeout=min(5.0, timeout), flow=True).__enter__()
            except LiveUnavailable:
                events = None
        try:
            while events is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"flow {job_id} has not ended after {timeout:g}s")
                try:
                    event = events.next(left)
                except LiveUnavailable:
                    break
                if event is None:
                    continue
                yield event, "push"
                if event.get("type") == "flow:completed":
                    return
        finally:
            if events is not None:
                events.close()
        seen: dict[str, str | None] = {}
        while True:
            tree = self.flow(job_id, user_id=user_id)
            for node in _nodes(tree):
                if seen.get(node["jobId"], "") != node.get("status"):
                    seen[node["jobId"]] = node.get("status")
                    yield {"type": f"job:{node.get('status')}", "jobId": node["jobId"], "queue": node.get("queue"), "status": node.get("status")}, "poll"
            if tree.get("status") in {s.value for s in FINISHED}:
                yield {"type": "flow:completed", "flowId": job_id, "jobId": job_id, "status": tree.get("status"),
                       "result": tree.get("result"), "error": tree.get("error")}, "poll"  # fmt: skip
                return
            if time.monotonic() + poll_interval > deadline:
                raise WaitTimeout(f"flow {job_id} has not ended after {timeout:g}s")
            self._sleep(poll_interval)

    # ---- health and capabilities ------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /health`` as seed 000 prints it (no envelope): status, timestamp, uptime, checks, details."""
        response = self._send("GET", "/health", safe=True)
        body = _json(response)
        if not isinstance(body, dict) or "status" not in body:
            raise error_for(response.status_code, body)
        return body

    def openapi(self) -> dict[str, Any]:
        """The API's OpenAPI document (public), read once: what this deployment offers."""
        if self._openapi is None:
            response = self._send("GET", "/openapi.json", safe=True)
            self._openapi = response.json() if response.is_success else {}
        return self._openapi

    def _offers_remove(self) -> bool:
        delete = self.openapi().get("paths", {}).get("/jobs/{job_id}", {}).get("delete", {})
        return any(p.get("name") == "action" for p in delete.get("parameters", []))

    # ---- HTTP ------------------------------------------------------------------------------------
    def _pages(self, path: str, params: dict[str, Any], model: type[M]) -> Iterator[M]:
        cursor: str | None = None
        while True:
            page = self._call("GET", path, model, params={**params, **({"cursor": cursor} if cursor else {})})
            yield page
            cursor = getattr(page, "next_cursor", None)
            if not cursor:
                return

    def _call(self, method: str, path: str, model: type[M] | None, *, safe: bool | None = None, **kwargs: Any) -> Any:
        response = self._send(method, path, safe=method in ("GET", "PUT", "DELETE") if safe is None else safe, **kwargs)
        body = _json(response)
        if not response.is_success:
            raise error_for(response.status_code, body)
        if model is None or response.status_code == 204:
            return body.get("data") if isinstance(body, dict) else None
        data = body.get("data") if isinstance(body, dict) and "data" in body else body
        return model.model_validate(data)

    def _send(self, method: str, path: str, *, safe: bool, **kwargs: Any) -> httpx.Response:
        """One request with retries: 429 and refused connections always; 5xx and timeouts only when ``safe``."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt >= self.retries or not (safe or not_sent):
                    raise ConnectionFailed(f"{method} {self.url}{path}: {exc or type(exc).__name__}") from exc
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            retryable = response.status_code == 429 or (safe and response.status_code in RETRY_STATUSES)
            if not retryable or attempt >= self.retries:
                return response
            self._sleep(self._delay(attempt, response.headers.get("Retry-After")))
            attempt += 1

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))  # nosec B311: full jitter, not a secret


def _options(options: JobOptions | dict[str, Any] | None, fields: dict[str, Any]) -> JobOptions:
    base = options.model_dump(by_alias=False, exclude_unset=True) if isinstance(options, JobOptions) else dict(options or {})
    return JobOptions.model_validate({**base, **fields})


def _owner(user_id: str | None) -> dict[str, str]:
    return {"userId": user_id} if user_id else {}


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        return {"message": response.text[:500]}


__all__ = ["ApiError", "Client", "ConnectionFailed", "JobUpdate", "RateLimited", "ServerError", "WaitTimeout"]


def _nodes(tree: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A flow's nodes, root first."""
    yield tree
    for child in tree.get("children") or []:
        yield from _nodes(child)
