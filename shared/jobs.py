"""Job use cases the API calls: create, read with authorization, register targets."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from shared import queues
from shared.clock import iso, now_ms
from shared.errors import Conflict, Forbidden, Invalid, NotFound, PayloadTooLarge, Unavailable
from shared.models import Backoff, HttpTarget, Job, JobCreate, json_size
from shared.observability import emit, logger
from shared.queues import QueueDirectory
from shared.settings import Settings
from shared.status import JobStatus
from shared.store import JobStore


@dataclass(frozen=True)
class Identity:
    """Who calls: the token's ``sub``; admin when the groups claim holds the admin group."""

    user_id: str
    is_admin: bool = False


class ProcessorCatalog(Protocol):
    def has(self, queue: str, job_type: str) -> bool: ...
    def types(self, queue: str) -> set[str]: ...
    def is_code_type(self, queue: str, job_type: str) -> bool: ...


class JobService:
    def __init__(self, store: JobStore, directory: QueueDirectory, catalog: ProcessorCatalog, settings: Settings) -> None:
        self.store = store
        self.directory = directory
        self.catalog = catalog
        self.settings = settings

    def create(self, request: JobCreate, caller: Identity) -> tuple[Job, bool]:
        """Store and enqueue a job. Returns ``(job, created)``; an existing ``jobId`` of the caller's is returned as is."""
        queue = self.directory.get(request.queue)
        if not self.catalog.has(queue.name, request.type):
            valid = ", ".join(sorted(self.catalog.types(queue.name))) or "none registered"
            raise Invalid(f"no processor for type '{request.type}' on queue '{queue.name}'; valid types: {valid}")
        size = json_size(request.data)
        if size > self.settings.max_data_bytes:
            raise PayloadTooLarge(f"data is {size} bytes; the limit is {self.settings.max_data_bytes}")
        options = request.options
        if options.delay > self.settings.max_delay_ms:
            raise Invalid(f"options.delay is at most {self.settings.max_delay_ms} ms (15 minutes)")
        now = now_ms()
        job = Job(
            job_id=options.job_id or str(uuid.uuid4()),
            queue=queue.name,
            type=request.type,
            user_id=caller.user_id,
            status=JobStatus.DELAYED if options.delay else JobStatus.WAITING,
            data=request.data,
            priority=options.priority,
            max_attempts=options.attempts or queue.default_attempts,
            backoff=options.backoff or Backoff(type=queue.default_backoff_type, delay=queue.default_backoff_delay),
            delay=options.delay,
            run_at=iso(now + options.delay) if options.delay else None,
            created_at=iso(now),
            updated_at=iso(now),
        )
        try:
            self.store.create(job)
        except Conflict as clash:
            existing = clash.details
            if not isinstance(existing, Job) or not self._may_see(existing, caller):
                raise Conflict(f"jobId '{job.job_id}' is already in use") from clash
            return existing, False
        try:
            queues.send_job(queue, job.job_id, delay_seconds=-(-options.delay // 1000))
        except Unavailable:
            # Not enqueued: take the job back so the client's retry starts clean.
            self.store.delete(job.job_id)
            raise
        emit("JobsCreated", queue.name)
        logger.info("job created", extra={"job_id": job.job_id, "queue": queue.name, "type": job.type})
        return job, True

    def get(self, job_id: str, caller: Identity) -> Job:
        job = self.store.get(job_id)
        if job is None or not self._may_see(job, caller):
            raise NotFound(f"job {job_id} not found")
        return job

    def put_http_target(self, queue_name: str, job_type: str, target: HttpTarget, caller: Identity) -> HttpTarget:
        require_admin(caller)
        queue = self.directory.get(queue_name)
        try:
            target.check_url(allow_loopback_http=self.settings.allow_loopback_http_targets)
        except ValueError as err:
            raise Invalid(str(err)) from err
        if self.catalog.is_code_type(queue.name, job_type):
            raise Conflict(f"type '{job_type}' on queue '{queue.name}' is handled by a code processor")
        self.store.put_target(queue.name, job_type, target, now=iso(now_ms()))
        logger.info("http target registered", extra={"queue": queue.name, "type": job_type, "url": target.url})
        return target

    @staticmethod
    def _may_see(job: Job, caller: Identity) -> bool:
        return caller.is_admin or job.user_id == caller.user_id


def require_admin(caller: Identity) -> None:
    if not caller.is_admin:
        raise Forbidden("this operation needs the admin group")
