"""What a consumer does with one SQS message: claim the job, run its processor, record the end.

The consumer handler (functions/consumer/handler.py) feeds every record of a batch to
``Worker.handle``; raising ``RetryLater`` reports that record as a batch item failure, so
it comes back after the visibility the worker set, and the batch's other records are
unaffected. Returning acknowledges the record (Lambda deletes it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared import queue_config, queues, strict_json
from shared.backoff import backoff_seconds
from shared.clock import iso, now_ms, parse_iso
from shared.errors import Conflict, PermanentJobError
from shared.models import AttemptRecord, Job, QueueInfo, json_size
from shared.observability import emit, logger
from shared.settings import Settings
from shared.status import FINISHED, JobStatus
from shared.store import JobRef, JobStore

Processor = Callable[["JobContext"], Any]
ProcessorResolver = Callable[[QueueInfo, Job], Processor]


class RetryLater(Exception):
    """Leave the message on the queue: it returns after the visibility timeout set for it."""


class JobInterrupted(BaseException):
    """Raised inside a processor when it must stop: its job was cancelled, or its lease lost."""


class JobCancelled(JobInterrupted):
    """The job was cancelled while it ran (DELETE /jobs/{id})."""


class LeaseLost(JobInterrupted):
    """Another worker reclaimed the job after this one's lease ran out."""


MAX_PROGRESS_BYTES = 1024
MAX_LOG_LINE = 2000


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Delivery:
    """One SQS message as the event source mapping hands it over."""

    message_id: str
    body: str
    receipt_handle: str
    queue: QueueInfo
    receive_count: int = 1


class JobContext:
    """What a processor gets: the job's input, and a way to report progress."""

    def __init__(self, job: Job, store: JobStore, token: str, clock: Callable[[], int], log_ttl_s: int = 30 * 86400) -> None:
        self.snapshot = job  # the job as last written by this worker
        self._log_ttl_s = log_ttl_s
        self._store = store
        self._token = token
        self._clock = clock

    @property
    def job_id(self) -> str:
        return self.snapshot.job_id

    @property
    def queue(self) -> str:
        return self.snapshot.queue

    @property
    def type(self) -> str:
        return self.snapshot.type

    @property
    def data(self) -> dict[str, Any]:
        return self.snapshot.data

    @property
    def attempt(self) -> int:
        return self.snapshot.attempts

    @property
    def max_attempts(self) -> int:
        return self.snapshot.max_attempts

    @property
    def user_id(self) -> str:
        return self.snapshot.user_id

    def progress(self, progress: float | dict[str, Any], message: str | None = None) -> None:
        """Record progress (a number 0..100, or a small object) and an optional message.

        Raises ``JobCancelled`` if the job was cancelled meanwhile: the processor stops there.
        """
        if isinstance(progress, bool) or not isinstance(progress, int | float | dict):
            raise ValueError("progress must be a number from 0 to 100 or a small object")
        if isinstance(progress, int | float) and not 0 <= progress <= 100:
            raise ValueError("progress must be between 0 and 100")
        strict_json.check(progress, "progress")  # NaN, Infinity, lone surrogates: refused before they are stored
        if message is not None:
            strict_json.check(message, "message")
        if isinstance(progress, dict) and json_size(progress) > MAX_PROGRESS_BYTES:
            raise ValueError(f"a progress object is at most {MAX_PROGRESS_BYTES} bytes")
        try:
            self.snapshot = self._store.transition(
                self.snapshot,
                JobStatus.ACTIVE,
                {"progress": progress, "progress_message": message, "updated_at": iso(self._clock())},
                owner_token=self._token,
                unless_cancel_requested=True,
            )
        except Conflict:
            self._raise_interruption()
            raise

    def log(self, message: str) -> None:
        """Append a line to the job's log (GET /jobs/{id}/logs)."""
        now = self._clock()
        self._store.append_log(
            self.user_id,
            self.job_id, str(message)[:MAX_LOG_LINE], at_ms=now, attempt=self.attempt, expires_at=now // 1000 + self._log_ttl_s
        )

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled: long loops without progress reports can poll this."""
        current = self._store.get(self.user_id, self.job_id)
        return current is None or current.cancel_requested or current.status is not JobStatus.ACTIVE

    def _raise_interruption(self) -> None:
        current = self._store.get(self.user_id, self.job_id)
        if current is not None and current.cancel_requested:
            raise JobCancelled(f"job {self.job_id} was cancelled")
        if current is None or current.lease_token != self._token:
            raise LeaseLost(f"job {self.job_id} is no longer held by this worker")


class Worker:
    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        resolve: ProcessorResolver,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.settings = settings
        self.resolve = resolve
        self.clock = clock

    # ---- one message ---------------------------------------------------------------
    def handle(self, delivery: Delivery, *, remaining_ms: int | None = None) -> Outcome:
        ref = queues.ref_of_body(delivery.body)
        if ref is None:
            logger.error("malformed message moved to the DLQ", extra={"message_id": delivery.message_id})
            queues.send_to_dead_letters(delivery.queue, delivery.body, reason="malformed message: no jobId and userId")
            return Outcome.SKIPPED
        lease_ms = remaining_ms if remaining_ms is not None else self.settings.default_lease_seconds * 1000
        claimed = self._claim(ref, delivery, lease_ms)
        if isinstance(claimed, Outcome):
            return claimed
        job, token = claimed
        return self._run(job, token, delivery)

    def _claim(self, ref: JobRef, delivery: Delivery, lease_ms: int) -> tuple[Job, str] | Outcome:
        job_id = ref.job_id
        for _ in range(3):  # re-read after losing a race
            job = self.store.get(ref.user_id, ref.job_id)
            if job is None:
                logger.warning("message for an unknown job acknowledged", extra={"job_id": job_id})
                return Outcome.SKIPPED
            now = self.clock()
            if job.status in FINISHED:
                logger.info("delivery of a finished job acknowledged", extra={"job_id": job_id, "status": job.status.value})
                return Outcome.SKIPPED
            if job.status is JobStatus.ACTIVE and (job.lease_until or 0) > now:
                logger.info("duplicate delivery of a running job acknowledged", extra={"job_id": job_id})
                return Outcome.SKIPPED
            if job.status is JobStatus.DELAYED and job.run_at and parse_iso(job.run_at) > now + 1000:
                # Woken early (a retried send, a manual redrive): sleep again until due.
                queues.change_visibility(delivery.queue, delivery.receipt_handle, -(-(parse_iso(job.run_at) - now) // 1000))
                raise RetryLater(f"job {job_id} is not due before {job.run_at}")
            if job.cancel_requested and job.status in (JobStatus.ACTIVE, JobStatus.STALLED):
                # Cancelled while running, and its worker died before it heard: it ends cancelled.
                try:
                    self.store.transition(
                        job,
                        JobStatus.CANCELLED,
                        {"cancelled_at": iso(now), "updated_at": iso(now), "history": _close(job.history, now, "cancelled", "lease expired")},
                        remove=("lease_until", "lease_token"),
                        expires_at=self._expiry(job, JobStatus.CANCELLED, now),
                    )
                except Conflict:
                    continue
                return Outcome.CANCELLED
            history = list(job.history)
            if job.status in (JobStatus.ACTIVE, JobStatus.STALLED) and history and history[-1].outcome is None:
                # Its last worker died: the lease ran out before it finished.
                history[-1] = history[-1].model_copy(update={"ended_at": iso(now), "outcome": "stalled", "error": "lease expired"})
            if job.attempts >= job.max_attempts:
                try:
                    self._fail(job, delivery, "the consumer stopped during the final attempt (lease expired)", history=history)
                except Conflict:
                    continue
                return Outcome.FAILED
            token = uuid.uuid4().hex
            attempt = job.attempts + 1
            try:
                job = self.store.transition(
                    job,
                    JobStatus.ACTIVE,
                    {
                        "attempts": attempt,
                        "lease_until": now + lease_ms,
                        "lease_token": token,
                        "started_at": iso(now),
                        "updated_at": iso(now),
                        "history": [*history, AttemptRecord(attempt=attempt, started_at=iso(now))],
                    },
                )
            except Conflict:
                continue
            return job, token
        logger.warning("job kept changing while being claimed; will retry", extra={"job_id": job_id})
        raise RetryLater(f"could not claim job {job_id}")

    def _run(self, job: Job, token: str, delivery: Delivery) -> Outcome:
        context = JobContext(job, self.store, token, self.clock, self.settings.log_ttl_days * 86400)
        started = time.monotonic()
        try:
            processor = self.resolve(delivery.queue, job)
            result = processor(context)
        except JobCancelled:
            return self._end_cancelled(context.snapshot, token, started)
        except LeaseLost:
            logger.warning("lease lost while running; another delivery owns the job now", extra={"job_id": job.job_id})
            return Outcome.SKIPPED
        except PermanentJobError as err:
            return self._end_failed(context.snapshot, token, delivery, err.message, started)
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
            if context.snapshot.attempts >= context.snapshot.max_attempts:
                return self._end_failed(context.snapshot, token, delivery, message, started)
            return self._retry(context.snapshot, token, delivery, message, started)
        problem = _result_problem(result, self.settings.max_result_bytes)
        if problem:
            return self._end_failed(context.snapshot, token, delivery, problem, started)
        job = context.snapshot
        elapsed = int((time.monotonic() - started) * 1000)
        now = self.clock()
        try:
            self.store.transition(
                job,
                JobStatus.COMPLETED,
                {
                    "result": result,
                    "processing_time": elapsed,
                    "completed_at": iso(now),
                    "updated_at": iso(now),
                    "history": _close(job.history, now, "completed"),
                },
                remove=("lease_until", "lease_token"),
                owner_token=token,
                expires_at=self._expiry(job, JobStatus.COMPLETED, now),
            )
        except Conflict:
            logger.warning("job changed while running (lease lost); result dropped", extra={"job_id": job.job_id})
            return Outcome.SKIPPED
        emit("JobsCompleted", job.queue)
        emit("ProcessingTime", job.queue, elapsed, unit="Milliseconds")  # type: ignore[arg-type]
        logger.info("job completed", extra={"job_id": job.job_id, "attempt": job.attempts, "processing_ms": elapsed})
        return Outcome.COMPLETED

    # ---- endings ----------------------------------------------------------------------
    def _retry(self, job: Job, token: str, delivery: Delivery, error: str, started: float) -> Outcome:
        now = self.clock()
        wait = backoff_seconds(job.backoff, job.attempts, cap_seconds=self.settings.backoff_cap_seconds)
        try:
            self.store.transition(
                job,
                JobStatus.DELAYED,
                {
                    "error": error,
                    "run_at": iso(now + wait * 1000),
                    "processing_time": int((time.monotonic() - started) * 1000),
                    "updated_at": iso(now),
                    "history": _close(job.history, now, "retrying", error),
                },
                remove=("lease_until", "lease_token"),
                owner_token=token,
            )
        except Conflict:
            logger.warning("job changed while running (lease lost)", extra={"job_id": job.job_id})
            return Outcome.SKIPPED
        emit("JobsRetried", job.queue)
        logger.warning(
            "attempt failed; retrying after backoff",
            extra={"job_id": job.job_id, "attempt": job.attempts, "max_attempts": job.max_attempts, "retry_in_s": wait, "error": error},
        )
        queues.change_visibility(delivery.queue, delivery.receipt_handle, wait)
        raise RetryLater(error)

    def _end_failed(self, job: Job, token: str, delivery: Delivery, error: str, started: float) -> Outcome:
        try:
            self._fail(job, delivery, error, token=token, processing_ms=int((time.monotonic() - started) * 1000))
        except Conflict:
            logger.warning("job changed while running (lease lost)", extra={"job_id": job.job_id})
            return Outcome.SKIPPED
        return Outcome.FAILED

    def _end_cancelled(self, job: Job, token: str, started: float) -> Outcome:
        now = self.clock()
        try:
            self.store.transition(
                job,
                JobStatus.CANCELLED,
                {
                    "cancelled_at": iso(now),
                    "updated_at": iso(now),
                    "processing_time": int((time.monotonic() - started) * 1000),
                    "history": _close(job.history, now, "cancelled", "cancelled while running"),
                },
                remove=("lease_until", "lease_token"),
                owner_token=token,
                expires_at=self._expiry(job, JobStatus.CANCELLED, now),
            )
        except Conflict:
            return Outcome.SKIPPED
        emit("JobsCancelled", job.queue)
        logger.info("job cancelled while running", extra={"job_id": job.job_id})
        return Outcome.CANCELLED

    def _fail(
        self,
        job: Job,
        delivery: Delivery,
        error: str,
        *,
        token: str | None = None,
        history: list[AttemptRecord] | None = None,
        processing_ms: int | None = None,
    ) -> None:
        now = self.clock()
        changes: dict[str, Any] = {
            "error": error,
            "failed_at": iso(now),
            "updated_at": iso(now),
            "history": _close(history if history is not None else job.history, now, "failed", error),
        }
        if processing_ms is not None:
            changes["processing_time"] = processing_ms
        self.store.transition(
            job, JobStatus.FAILED, changes, remove=("lease_until", "lease_token"), owner_token=token, expires_at=self._expiry(job, JobStatus.FAILED, now)
        )
        queues.send_to_dead_letters(delivery.queue, delivery.body, reason=error)
        emit("JobsFailed", job.queue)
        logger.error("job failed", extra={"job_id": job.job_id, "attempts": job.attempts, "error": error})

    @staticmethod
    def _expiry(job: Job, status: JobStatus, now: int) -> int | None:
        """When the finished job expires: its queue's retention by age (the policy is cached per container)."""
        return queue_config.get_policy(queues.directory().get(job.queue)).expires_at(status, now)


def _close(history: list[AttemptRecord], now: int, outcome: str, error: str | None = None) -> list[AttemptRecord]:
    """End the open attempt record, if there is one."""
    if not history or history[-1].outcome is not None:
        return list(history)
    return [*history[:-1], history[-1].model_copy(update={"ended_at": iso(now), "outcome": outcome, "error": error})]


def _result_problem(result: Any, limit: int) -> str | None:
    reason = strict_json.problem(result, "result")
    if reason:
        return f"the processor returned a result that is not strict JSON: {reason}"
    try:
        size = len(strict_json.dumps(result).encode())
    except (TypeError, ValueError) as err:
        return f"the processor returned a result that is not JSON: {err}"
    return f"the processor's result is {size} bytes; the limit is {limit}" if size > limit else None
