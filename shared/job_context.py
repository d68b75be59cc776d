"""What a processor sees of its job while it runs: ``JobContext``, and the interruptions it may raise.

The worker (shared/worker.py) builds one per attempt; a processor reads the job's input, reports
progress, logs, adds jobs, and runs steps once through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared import lifecycle, strict_json
from shared.errors import Conflict, PermanentJobError, Unavailable
from shared.models import Job, JobRef, json_size
from shared.observability import logger
from shared.ports import JobRepository
from shared.settings import Settings
from shared.status import JobStatus

if TYPE_CHECKING:
    from shared.flows import FollowUps  # imported when a processor adds jobs: flows are not every job's cold start


class JobInterrupted(BaseException):
    """Raised inside a processor when it must stop: its job was cancelled, or its lease lost."""


class JobCancelled(JobInterrupted):
    """The job was cancelled while it ran (DELETE /jobs/{id})."""


class LeaseLost(JobInterrupted):
    """Another worker reclaimed the job after this one's lease ran out."""


class EndsElsewhere(Exception):
    """Raised by a processor that started work ending outside the consumer (a state machine's execution):
    the job stays active for ``lease_seconds`` and whoever hears of the end writes it (shared/executions.py)."""

    def __init__(self, lease_seconds: int) -> None:
        super().__init__(f"the job waits up to {lease_seconds} s for its execution to end")
        self.lease_seconds = lease_seconds


class JobTimedOut(JobInterrupted):
    """The attempt ran past its timeout (options.timeout): it ends ``timed_out`` and is retried with backoff."""


MAX_PROGRESS_BYTES = 1024
MAX_LOG_LINE = 2000


class JobContext:
    """What a processor gets: the job's input, a way to report progress, and to add jobs."""

    def __init__(
        self,
        job: Job,
        store: JobRepository,
        token: str,
        clock: Callable[[], int],
        log_ttl_s: int = 30 * 86400,
        *,
        follow_ups: Callable[[], FollowUps] | None = None,
        timeout_ms: int | None = None,
        settings: Settings,
    ) -> None:
        self.snapshot = job  # the job as last written by this worker
        self.settings = settings  # the stack's settings, as the composition root read them (processors' limits and lists)
        self._log_ttl_s = log_ttl_s
        self._store = store
        self._token = token
        self._clock = clock
        self._make_follow_ups = follow_ups  # built when the processor first adds a job (flows load only then)
        self.follow_ups: FollowUps | None = None
        self._timeout_ms = timeout_ms
        self._deadline_ms = clock() + timeout_ms if timeout_ms is not None else None
        self._deadline_mono = time.monotonic() + timeout_ms / 1000 if timeout_ms is not None else None
        self._expired = False

    @property
    def deadline(self) -> int | None:
        """Epoch ms at which this attempt times out (None: no timeout; the consumer's Lambda timeout still holds)."""
        return self._deadline_ms

    @property
    def timed_out(self) -> bool:
        """True once the attempt is past its timeout: a processor stops there (progress() raises JobTimedOut)."""
        return self._expired or (self._deadline_mono is not None and time.monotonic() >= self._deadline_mono)

    def time_left(self, cap_seconds: float | None = None) -> float | None:
        """Seconds left before the timeout (at most ``cap_seconds``); what an HTTP call may wait. None: no limit."""
        if self._deadline_mono is None:
            return cap_seconds
        left = max(0.01, self._deadline_mono - time.monotonic())
        return min(left, cap_seconds) if cap_seconds is not None else left

    def expire(self) -> None:
        """The worker gave up on the attempt: whatever the processor calls next raises JobTimedOut."""
        self._expired = True

    # ---- flows: jobs that start jobs (shared/flows.py) ------------------------------------------
    def add_job(self, queue: str, type: str, data: dict[str, Any] | None = None, options: dict[str, Any] | None = None) -> str:
        """Add a job (any queue, this job's user) created with this job's completion, never without it
        nor twice. Returns its id. An invalid job raises ``PermanentJobError``: this job fails."""
        return self._adding().add_job({"queue": queue, "type": type, "data": data or {}, "options": options or {}})

    def add_children(self, children: list[dict[str, Any]]) -> list[str]:
        """Add children (``{"queue", "type", "data", "options", "onFailure"}``): when this attempt ends,
        the job waits in ``waiting-children`` and runs again once they finished (``children_values``)."""
        return [self._adding().add_child(child) for child in children]

    @property
    def waited_for_children(self) -> bool:
        """True for a flow's parent: it runs now that its children finished (``children_values``)."""
        return self.snapshot.has_children

    def children_values(self) -> dict[str, Any]:
        """The results of this job's finished children, by child job id (empty before it had any)."""
        from shared.adapters.flows import FlowStore
        from shared.flows import children_values

        return children_values(FlowStore(self._store.table_name), self._store, JobRef.of(self.snapshot))

    def _adding(self) -> FollowUps:
        if self.follow_ups is None:
            if self._make_follow_ups is None:
                raise PermanentJobError("this processor runs without a way to add jobs")
            self.follow_ups = self._make_follow_ups()
        return self.follow_ups

    @property
    def token(self) -> str:
        """This attempt's lease token."""
        return self._token

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
        if self.timed_out:
            raise JobTimedOut(f"job {self.job_id} timed out after {self._timeout_ms} ms")
        change = lifecycle.progress(self.snapshot, token=self._token, value=progress, message=message, now=self._clock())
        try:
            self.snapshot = self._store.apply(change)
        except Conflict:
            self._raise_interruption()
            raise
        except Unavailable as err:
            # A progress report is not worth the attempt: the processor goes on; the next report retries.
            logger.warning("progress not recorded; going on", extra={"job_id": self.job_id, "error": err.message})

    def log(self, message: str) -> None:
        """Append a line to the job's log (GET /jobs/{id}/logs)."""
        now = self._clock()
        self._store.append_log(
            self.user_id,
            self.job_id, str(message)[:MAX_LOG_LINE], at_ms=now, attempt=self.attempt, expires_at=now // 1000 + self._log_ttl_s
        )

    def once(self, name: str, run: Callable[[], Any] | None = None) -> Any:
        """A step whose effect this job performs once (shared/once.py has the contract).

        ``with job.once("charge-card") as step: if not step.done: step.result = ...``, or
        ``job.once("charge-card", lambda: ...)``, which runs the callable unless the step is done
        and returns its (recorded) result.
        """
        from shared.adapters.once_steps import OnceSteps
        from shared.once import OnceStep

        step = OnceStep(
            OnceSteps(self._store.table_name),
            user_id=self.user_id,
            job_id=self.job_id,
            name=name,
            attempt=self.attempt,
            expires_at=self._clock() // 1000 + self._log_ttl_s,
        )
        if run is None:
            return step
        with step:
            if not step.done:
                step.result = run()
        return step.result

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled: long loops without progress reports can poll this."""
        current = self._store.get(self.user_id, self.job_id)
        return current is None or current.cancel_requested or current.status is not JobStatus.ACTIVE

    def check_interrupted(self) -> None:
        """One read: raise ``JobCancelled`` if a cancel was requested, ``LeaseLost`` if the job is no
        longer this worker's (for processors that wait on something else, as the http processor)."""
        self._raise_interruption()

    def _raise_interruption(self) -> None:
        current = self._store.get(self.user_id, self.job_id)
        if current is not None and current.cancel_requested:
            raise JobCancelled(f"job {self.job_id} was cancelled")
        if current is None or current.lease_token != self._token:
            raise LeaseLost(f"job {self.job_id} is no longer held by this worker")
