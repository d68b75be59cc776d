"""Applying the lifecycle's changes: the one place that writes a job's status.

``Transitions.apply`` takes a :class:`shared.lifecycle.Change` and does what it says, in
this order:

1. effects that must come first: the DLQ copy of a failed job is sent before the job is
   written ``failed``, so a crash or an SQS error between the two never loses it (at worst
   the DLQ holds a second copy, which a redrive treats as one);
2. the conditional write through the jobs repository, retried with backoff while AWS
   throttles or errs and the caller's deadline allows (``Unavailable`` after that);
3. the effects that follow: wake-up messages, a retried delivery's new visibility, the
   removal of a delayed job's schedule, metrics and the log line. A failed wake-up is
   left to the health sweep (it finds waiting and stalled jobs nobody picked up).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.errors import JobqError, Unavailable
from shared.lifecycle import Change, DeadLetterCopy, Log, Metric, RemoveSchedule, Wake
from shared.models import Job, QueueInfo
from shared.observability import emit, logger
from shared.ports import DelayedSchedules, JobMessages, JobWriter

T = TypeVar("T")


@dataclass(frozen=True)
class DeliveryRef:
    """The SQS message a consumer is handling, for effects on it (its visibility, its body for the DLQ)."""

    receipt_handle: str
    body: str


def _no_deadline() -> int:
    return 0


class Transitions:
    def __init__(
        self,
        jobs: JobWriter,
        messages: JobMessages,
        schedules: DelayedSchedules | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic_ms: Callable[[], int] = lambda: int(time.monotonic() * 1000),
    ) -> None:
        self.jobs = jobs
        self.messages = messages
        self.schedules = schedules
        self.sleep = sleep
        self.monotonic_ms = monotonic_ms

    def apply(
        self,
        change: Change,
        queue: QueueInfo,
        *,
        delivery: DeliveryRef | None = None,
        within_ms: int = 0,
        must_wake: bool = False,
        together: list[dict[str, Any]] | None = None,
    ) -> Job:
        """Write ``change`` and run its effects; retries AWS errors for up to ``within_ms`` (0: one try).

        Raises ``Conflict`` when the job is not as the change expects (its details: the job now),
        ``Unavailable`` when AWS kept failing (nothing was written; a DLQ copy may have been sent).
        ``must_wake``: a wake-up that cannot be sent raises ``Unavailable`` after the write (the
        API says so; the health sweep sends it later). ``together``: other items' writes made in
        the same transaction (a completion's follow-up jobs: shared/flows.py).
        """
        deadline = self.monotonic_ms() + within_ms
        for copy in change.effects_of(DeadLetterCopy):

            def send(reason: str = copy.reason) -> None:
                self.messages.dead_letter(queue, change.job, reason=reason)

            self._retrying(send, deadline)
        if together:
            actions = together
            written = self._retrying(lambda: self.jobs.apply_together(change, actions), deadline)
        else:
            written = self._retrying(lambda: self.jobs.apply(change), deadline)
        self._follow(change, written, queue, delivery, must_wake=must_wake)
        return written

    def _retrying(self, call: Callable[[], T], deadline: int) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except Unavailable:
                wait_ms = min(2000, 50 * 2**attempt) * (0.5 + random.random())  # nosec B311 - jitter, not a secret
                if self.monotonic_ms() + wait_ms >= deadline:
                    raise
                attempt += 1
                self.sleep(wait_ms / 1000)

    def _follow(self, change: Change, job: Job, queue: QueueInfo, delivery: DeliveryRef | None, *, must_wake: bool) -> None:
        extra = {"job_id": job.job_id, "queue": queue.name, "status": job.status.value, "operation": change.operation}
        unsent: Unavailable | None = None
        for effect in change.effects:
            try:
                if isinstance(effect, Wake):
                    if effect.current_delivery and delivery is not None:
                        self.messages.change_visibility(queue, delivery.receipt_handle, effect.delay_seconds)
                    else:
                        self.messages.wake(queue, job, delay_seconds=effect.delay_seconds)
                elif isinstance(effect, RemoveSchedule) and self.schedules is not None:
                    self.schedules.remove(job)
                elif isinstance(effect, Metric):
                    emit(effect.name, queue.name, effect.value, unit=effect.unit)  # type: ignore[arg-type]  # a MetricUnit value
                elif isinstance(effect, Log):
                    getattr(logger, effect.level)(effect.message, extra={**extra, "attempts": job.attempts, "error": job.error})
            except JobqError as err:
                # The write stands; what did not follow is repaired by the health sweep (orphans, stalled
                # jobs) or harmless (a schedule left behind wakes a finished job, which is acknowledged).
                logger.warning("a side effect of a job's change failed", extra={**extra, "effect": type(effect).__name__, "error": err.message})
                if isinstance(effect, Wake) and isinstance(err, Unavailable):
                    unsent = err
        if must_wake and unsent is not None:
            raise unsent
