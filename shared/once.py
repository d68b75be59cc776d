"""Once-only steps inside a processor: ``with job.once("charge-card") as step:`` (Powertools' idempotency, on jobq's store).

The contract. A job runs at least once: a retry, a redelivery or a consumer that died runs its
processor again. A step written as::

    with job.once("charge-card") as step:
        if not step.done:
            step.result = payments.charge(card, amount, idempotency_key=step.key)
    receipt = step.result

(or ``receipt = job.once("charge-card", lambda: payments.charge(...))``) has its result recorded
beside the job when the block ends without an exception; every later attempt of the same job
finds it ``done`` and gets the recorded result without running the body. So the effect
happens once, except in one window: the consumer dies (timeout, crash) after the body's effect
and before the record is written. The next attempt then runs the body again with
``step.uncertain`` true, and ``step.key`` (stable per job and step) is what lets the other side
refuse the duplicate: pass it as the payment provider's or the API's idempotency key, or check
for the effect before redoing it. Effectively once, then, for steps written this way and whose
other side honours the key; at least once for anything else.

- A body that raises is not recorded (the step is marked failed): the next attempt runs it again.
- The result must be JSON (at most 32 KiB); it is recorded as is, not the job's result.
- Names are per job; a name used twice in one attempt while the first is still open is an error.
- Steps expire with the job's log lines (``log_ttl_days``); a job redriven after that starts its steps afresh.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol

from shared.errors import JobqError
from shared.observability import logger

MAX_STEP_RESULT_BYTES = 32 * 1024
STEP_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


StepState = Literal["started", "done", "failed"]


@dataclass(frozen=True)
class StepRecord:
    state: str  # a StepState
    attempt: int
    result: Any = None


@dataclass(frozen=True)
class StepStart:
    """What starting a step found: nothing before (``previous`` None), the record it replaced, or one it may not replace."""

    started: bool  # False: the step is done (``previous`` holds its result) or open in this same attempt
    previous: StepRecord | None


class StepStore(Protocol):
    """Where steps are recorded (shared/adapters/once_steps.py)."""

    def start(self, user_id: str, job_id: str, name: str, *, attempt: int, expires_at: int) -> StepStart: ...
    def finish(self, user_id: str, job_id: str, name: str, *, attempt: int, state: StepState, result: Any = None) -> None: ...


class OnceStep:
    """One named step of one job: entered, it is either ``done`` (with its ``result``) or started by this attempt."""

    def __init__(self, store: StepStore, *, user_id: str, job_id: str, name: str, attempt: int, expires_at: int) -> None:
        if not STEP_NAME.fullmatch(name):
            raise ValueError("a step name is 1 to 100 letters, digits, '.', '_', ':' or '-'")
        self._store = store
        self.user_id, self.job_id, self.name, self.attempt = user_id, job_id, name, attempt
        self._expires_at = expires_at
        self.done = False
        self.uncertain = False
        self.result: Any = None
        self._owned = False

    @property
    def key(self) -> str:
        """Stable for this job and step across attempts: the idempotency key to give the other side."""
        return f"jobq:{self.user_id}/{self.job_id}/{self.name}"

    def __enter__(self) -> OnceStep:
        start = self._store.start(self.user_id, self.job_id, self.name, attempt=self.attempt, expires_at=self._expires_at)
        previous = start.previous
        if not start.started:
            if previous is not None and previous.state == "done":
                self.done, self.result = True, previous.result
                return self
            raise ValueError(f"step {self.name} is already open in this attempt")
        self._owned = True
        self.uncertain = previous is not None and previous.state == "started"
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if not self._owned:
            return
        self._owned = False
        if error is not None:
            try:
                self._store.finish(self.user_id, self.job_id, self.name, attempt=self.attempt, state="failed")
            except JobqError as err:  # left "started": the next attempt runs it again, marked uncertain
                logger.warning("a failed step could not be marked failed", extra={"job_id": self.job_id, "step": self.name, "error": err.message})
            return
        try:
            size = len(json.dumps(self.result, separators=(",", ":"), allow_nan=False).encode())
        except (TypeError, ValueError) as err:
            self._store.finish(self.user_id, self.job_id, self.name, attempt=self.attempt, state="failed")
            raise ValueError(f"the result of step {self.name} is not JSON: {err}") from err
        if size > MAX_STEP_RESULT_BYTES:
            self._store.finish(self.user_id, self.job_id, self.name, attempt=self.attempt, state="failed")
            raise ValueError(f"the result of step {self.name} is {size} bytes; a step records at most {MAX_STEP_RESULT_BYTES}")
        # Unavailable here leaves the step "started": the attempt is retried and the next one sees it uncertain.
        self._store.finish(self.user_id, self.job_id, self.name, attempt=self.attempt, state="done", result=self.result)
        self.done = True
