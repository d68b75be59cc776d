"""Circuit breakers per processor target (seed 000's "temporary circuit breaker" for failing services).

A target (HTTP or Lambda) registered with ``breaker: {failureRate, minimumAttempts,
windowSeconds, cooldownSeconds}`` has one breaker, shared by every consumer of its queue:

    closed ──(failures / attempts ≥ failureRate, attempts ≥ minimumAttempts, in one window)──> open
    open ──(cooldownSeconds later, the next job takes the probe)──> half_open
    half_open ──(the probe succeeds)──> closed      half_open ──(the probe fails)──> open

While the breaker is open (or a probe is out) a job of that target is not claimed: its message
waits (its visibility is set to the time left) and no attempt is spent, so a dead target does
not burn its jobs' attempts into the DLQ. An admin can open a breaker by hand (it stays open,
with no probe, until closed by hand) or close it. Only retryable failures count (a 5xx, a
timeout, a function error not named permanent); a target that rejects a job (4xx, a permanent
error) is answering, so that counts as a success.

Cost: per attempt of a guarded target, one UpdateItem on the window item (1 write unit), plus a
GetItem of the state at most every ``breaker_cache_seconds`` per container; state changes are
one conditional write each. Targets without ``breaker`` cost nothing.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared.clock import now_ms
from shared.errors import Conflict, JobqError
from shared.models import BreakerSettings
from shared.observability import emit, logger

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# Manually opened: jobs look again this often (an admin's close takes effect within it).
MANUAL_HOLD_SECONDS = 30


@dataclass(frozen=True)
class BreakerState:
    state: str = CLOSED
    open_until: int = 0  # ms
    probe: str | None = None  # <userId>/<jobId> of the probe job
    probe_until: int = 0  # ms: a probe not heard of by then is given to another job
    manual: bool = False
    reason: str | None = None
    updated_at: str | None = None
    version: int = 0


@dataclass(frozen=True)
class WindowCounts:
    attempts: int
    failures: int


class BreakerStore(Protocol):
    def read(self, queue: str, job_type: str) -> BreakerState: ...
    def record(self, queue: str, job_type: str, *, window_start: int, failed: bool, expires_at: int) -> WindowCounts: ...
    def change(self, queue: str, job_type: str, new: BreakerState, *, expected_version: int) -> bool: ...


@dataclass(frozen=True)
class Admission:
    """Whether a job of a guarded target may run now: ``hold_seconds`` None means yes."""

    hold_seconds: int | None = None
    probe: bool = False


class Breakers:
    def __init__(self, store: BreakerStore, *, clock: Callable[[], int] = now_ms, cache_seconds: float = 2) -> None:
        self.store = store
        self.clock = clock
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, BreakerState]] = {}
        self._lock = threading.Lock()

    # ---- state ------------------------------------------------------------------------------
    def state(self, queue: str, job_type: str, *, fresh: bool = False) -> BreakerState:
        key = (queue, job_type)
        with self._lock:
            cached = self._cache.get(key)
        if not fresh and cached and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        state = self.store.read(queue, job_type)
        self._remember(queue, job_type, state)
        return state

    def _remember(self, queue: str, job_type: str, state: BreakerState) -> None:
        with self._lock:
            self._cache[(queue, job_type)] = (time.monotonic(), state)

    def _change(self, queue: str, job_type: str, current: BreakerState, new: BreakerState) -> bool:
        if not self.store.change(queue, job_type, new, expected_version=current.version):
            with self._lock:
                self._cache.pop((queue, job_type), None)
            return False
        self._remember(queue, job_type, replace(new, version=current.version + 1))
        if new.state != current.state:
            logger.info("circuit breaker changed", extra={"queue": queue, "type": job_type, "from": current.state, "to": new.state, "reason": new.reason})
            emit({OPEN: "BreakerOpened", HALF_OPEN: "BreakerProbing", CLOSED: "BreakerClosed"}[new.state], queue)
        return True

    # ---- before a claim -----------------------------------------------------------------------
    def admit(self, queue: str, job_type: str, job_ref: str, *, probe_ms: int) -> Admission:
        current = self.state(queue, job_type)
        now = self.clock()
        if current.state == CLOSED:
            return Admission()
        if current.state == HALF_OPEN and current.probe == job_ref:
            return Admission(probe=True)  # the probe's own redelivery
        if current.state == OPEN and current.manual:
            return Admission(hold_seconds=MANUAL_HOLD_SECONDS)
        due = current.open_until if current.state == OPEN else current.probe_until
        if now < due:
            return Admission(hold_seconds=max(1, math.ceil((due - now) / 1000)))
        probing = replace(current, state=HALF_OPEN, probe=job_ref, probe_until=now + probe_ms, reason="probing with one job")
        if self._change(queue, job_type, current, probing):
            return Admission(probe=True)
        return Admission(hold_seconds=2)  # another consumer took the probe a moment ago

    # ---- after an attempt -----------------------------------------------------------------------
    def record(self, queue: str, job_type: str, settings: BreakerSettings, job_ref: str, *, failed: bool, error: str | None = None) -> None:
        """Count an attempt's outcome; opens, closes or reopens the breaker as it says. Never raises."""
        try:
            self._record(queue, job_type, settings, job_ref, failed=failed, error=error)
        except JobqError as err:
            logger.warning("circuit breaker not updated", extra={"queue": queue, "type": job_type, "error": err.message})

    def _record(self, queue: str, job_type: str, settings: BreakerSettings, job_ref: str, *, failed: bool, error: str | None) -> None:
        now = self.clock()
        current = self.state(queue, job_type)
        if current.state == HALF_OPEN and current.probe == job_ref:
            if failed:
                self._change(queue, job_type, current, self._opened(current, settings, now, f"the probe failed: {error or 'an error'}"))
            else:
                self._change(queue, job_type, current, BreakerState(reason="the probe succeeded", version=current.version))
            return
        window_ms = settings.window_seconds * 1000
        counts = self.store.record(
            queue, job_type, window_start=now // window_ms * window_ms, failed=failed, expires_at=now // 1000 + 2 * settings.window_seconds + 60
        )
        if not failed or current.state != CLOSED:
            return
        if counts.attempts >= settings.minimum_attempts and counts.failures >= settings.failure_rate * counts.attempts:
            fresh = self.state(queue, job_type, fresh=True)
            if fresh.state == CLOSED:
                reason = f"{counts.failures} of {counts.attempts} attempts failed within {settings.window_seconds} s; last: {error or 'an error'}"
                self._change(queue, job_type, fresh, self._opened(fresh, settings, now, reason))

    @staticmethod
    def _opened(current: BreakerState, settings: BreakerSettings, now: int, reason: str) -> BreakerState:
        return BreakerState(state=OPEN, open_until=now + settings.cooldown_seconds * 1000, reason=reason, version=current.version)

    # ---- by hand (admin) ------------------------------------------------------------------------
    def force(self, queue: str, job_type: str, *, open_: bool, by: str) -> BreakerState:
        for _ in range(5):
            current = self.state(queue, job_type, fresh=True)
            if open_:
                new = BreakerState(state=OPEN, open_until=0, manual=True, reason=f"opened by {by}", version=current.version)
            else:
                new = BreakerState(state=CLOSED, reason=f"closed by {by}", version=current.version)
            if self._change(queue, job_type, current, new):
                return self.state(queue, job_type)
        raise Conflict(f"the breaker of {queue}/{job_type} kept changing; try again")


def guarded(breakers: Breakers, queue: str, job_type: str, settings: BreakerSettings, run: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``run`` (a processor) with its outcomes counted by the target's breaker."""
    from shared.errors import PermanentJobError
    from shared.worker import JobInterrupted

    def processor(job: Any) -> Any:
        ref = f"{job.user_id}/{job.job_id}"
        try:
            result = run(job)
        except JobInterrupted:
            raise
        except PermanentJobError:
            breakers.record(queue, job_type, settings, ref, failed=False)  # the target answered: it is up
            raise
        except Exception as err:
            breakers.record(queue, job_type, settings, ref, failed=True, error=f"{type(err).__name__}: {err}"[:300])
            raise
        breakers.record(queue, job_type, settings, ref, failed=False)
        return result

    return processor
