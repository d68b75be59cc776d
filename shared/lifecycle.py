"""The job lifecycle, owned once: every status change a job can make is one operation here.

Each operation is a pure function of the job as read (plus the time and what its caller
knows) and returns a :class:`Change`: what the one conditional write sets and removes
(only what changed: ``version`` is always ``ADD 1``, never a snapshot's value), what the
write is conditional on (the status as read, and the lease token or the version), how the
open attempt record closes, the job's retention stamp, and the side effects that follow.
``shared.transitions.Transitions`` applies a change through the jobs repository and runs
its effects; nothing else writes a status.

    operation      from                      to          attempt record        retention   effects
    claim          CLAIMABLE, active(expired) active      a stale one: stalled  -           -
                                                          + a new one opens
    progress       active                    active      -                     -           -
    complete       active (stalled: kept)    completed   completed             stamped     metric, log
    retry_later    active (stalled: kept)    delayed     retrying + error      -           wake after backoff, metric
    fail           active, stalled           failed      failed + error        stamped     DLQ copy first, metric, log
    cancel         waiting, delayed,         cancelled   cancelled + reason    stamped     schedule removed, metric
                   active, stalled
    request_cancel active                    active      -                     -           (the worker hears it)
    stall          active (lease expired)    stalled     stalled               -           wake now, log
    requeue        failed, cancelled         waiting     kept (history stays)  cleared     wake now, log
    wake           waiting, delayed, stalled (no write)  -                     -           wake now
    replace_pending waiting, delayed         waiting or  -                     -           wake at the new time
                                             delayed                                       (debounce)
    await_children active                    waiting-     waiting-children      -           log
                                             children
    await_execution active                   active      - (stays open)        -           log (lease covers the execution)
    children_done  waiting-children          waiting     -                     -           wake now, log
    fail_for_child waiting-children          failed      -                     stamped     log (no DLQ copy: the failed
                                                                                           child's copy revives it when
                                                                                           redriven; no JobsFailed: the
                                                                                           child's failure was counted)
    resume_for_child failed (by a child)     waiting-    -                     cleared     log
                                             children

Flows (shared/flows.py): a parent waits in ``waiting-children`` (created so, or ``await_children``
after its processor added children); the EventsFunction counts its children's ends and moves
it on with ``children_done`` or ``fail_for_child``, and back with ``resume_for_child`` when
the child that failed it is retried.

A cancel wins: the worker's endings (complete, retry_later, fail) are conditional on no
cancel having been requested; when one was, the worker ends the job ``cancelled`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.clock import iso
from shared.errors import Conflict
from shared.models import AttemptRecord, Job, QueuePolicy
from shared.status import CLAIMABLE, JobStatus, can_transition

S = JobStatus

# Bounds that keep a job item far below DynamoDB's 400 KB, whatever a processor raises.
MAX_ERROR_CHARS = 2000  # the job's error
MAX_RECORD_ERROR_CHARS = 500  # an attempt record's error
MAX_HISTORY = 25  # attempt records kept (the newest; the first is summarised by ``attempts`` and ``retries``)
LEASE_EXPIRED = "lease expired: the consumer stopped (timeout or crash) while the job ran"


class AttemptOutcome(StrEnum):
    """One vocabulary for how an attempt ended (``AttemptRecord.outcome``)."""

    COMPLETED = "completed"
    RETRYING = "retrying"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STALLED = "stalled"
    TIMED_OUT = "timed_out"  # the attempt ran past its timeout (options.timeout); it counts, and retries with backoff
    WAITING_CHILDREN = "waiting-children"


class Guard(StrEnum):
    """What a write is conditional on, besides the status as read."""

    LEASE = "lease"  # the worker that holds the job's lease (its token)
    VERSION = "version"  # the job exactly as read
    ATTEMPT = "attempt"  # the same attempt (a kept outcome applied by a later delivery)
    STATUS = "status"  # only the status (a cancel request lands whatever progress reports do)


# ---- side effects ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeadLetterCopy:
    """The job's message goes to its queue's DLQ, saying why. Sent before the write, so it is never lost."""

    reason: str


@dataclass(frozen=True)
class Wake:
    """A message for the job: now (``delay_seconds`` 0), or the current delivery's visibility moved to the backoff."""

    delay_seconds: int = 0
    current_delivery: bool = False


@dataclass(frozen=True)
class RemoveSchedule:
    """The one-time EventBridge schedule of a job delayed past SQS's 15 minutes."""


@dataclass(frozen=True)
class Metric:
    name: str
    value: float = 1
    unit: str = "Count"


@dataclass(frozen=True)
class Log:
    level: str
    message: str


Effect = DeadLetterCopy | Wake | RemoveSchedule | Metric | Log


@dataclass(frozen=True)
class Change:
    """One conditional write of one job, and what follows it."""

    operation: str
    job: Job  # as read: the write is conditional on its status (and its guard)
    target: JobStatus
    sets: dict[str, Any] = field(default_factory=dict)  # model field -> value; only what changes
    removes: tuple[str, ...] = ()
    guard: Guard = Guard.VERSION
    token: str | None = None  # the lease token, for Guard.LEASE
    unless_cancel_requested: bool = False
    expires_at: int | None = None  # the table's TTL, stamped when the job finishes
    clear_expiry: bool = False
    effects: tuple[Effect, ...] = ()

    def __post_init__(self) -> None:
        if not can_transition(self.job.status, self.target):
            raise Conflict(f"job {self.job.job_id} is {self.job.status.value}; it cannot become {self.target.value}")
        if self.guard is Guard.LEASE and not self.token:
            raise ValueError("a lease-guarded change needs the lease token")

    @property
    def status_changes(self) -> bool:
        return self.target is not self.job.status

    def after(self) -> Job:
        """The job as the write leaves it (validated: a change that breaks the model fails here, before any write)."""
        fields = {**self.job.model_dump(), **self.sets, "status": self.target, "version": self.job.version + 1}
        fields.update(dict.fromkeys(self.removes))
        return Job.model_validate(fields)

    def effects_of(self, kind: type) -> list[Any]:
        return [e for e in self.effects if isinstance(e, kind)]


# ---- bounds -------------------------------------------------------------------------------------------
_TRUNCATED = " ... (truncated)"


def bounded_error(error: str, limit: int = MAX_ERROR_CHARS) -> str:
    return error if len(error) <= limit else error[: limit - len(_TRUNCATED)] + _TRUNCATED


def _bounded_history(history: list[AttemptRecord]) -> list[AttemptRecord]:
    return list(history[-MAX_HISTORY:])


def close_attempt(history: list[AttemptRecord], now: int, outcome: AttemptOutcome, error: str | None = None) -> list[AttemptRecord]:
    """End the open attempt record, if there is one; the others stay as they are."""
    if not history or history[-1].outcome is not None:
        return list(history)
    last = history[-1].model_copy(
        update={"ended_at": iso(now), "outcome": outcome.value, "error": bounded_error(error, MAX_RECORD_ERROR_CHARS) if error else None}
    )
    return [*history[:-1], last]


def _finished_guard(job: Job, token: str | None) -> dict[str, Any]:
    """The worker ends the job it holds (its lease); anyone else ends the job as read."""
    return {"guard": Guard.LEASE, "token": token, "unless_cancel_requested": True} if token else {"guard": Guard.VERSION}


_LEASE = ("lease_until", "lease_token")


def _expiry(job: Job, policy: QueuePolicy, status: JobStatus, now: int) -> int | None:
    """The TTL of a job that finishes now; none for a flow child, which its parent may still need
    (retention removes it once the parent finished: shared/retention.py)."""
    return None if job.parent is not None else policy.expires_at(status, now)


# ---- the operations -----------------------------------------------------------------------------------
def lease_expired(job: Job, now: int) -> bool:
    return job.status is S.ACTIVE and (job.lease_until or 0) <= now


def claimable(job: Job, now: int) -> bool:
    return job.status in CLAIMABLE or lease_expired(job, now)


def claim(job: Job, *, now: int, lease_ms: int, token: str) -> Change:
    """A consumer takes the job for one attempt. A dead consumer's open record closes as stalled."""
    if not claimable(job, now):
        raise Conflict(f"job {job.job_id} is {job.status.value} and not claimable")
    history = close_attempt(job.history, now, AttemptOutcome.STALLED, LEASE_EXPIRED)
    attempt = job.attempts + 1
    history = _bounded_history([*history, AttemptRecord(attempt=attempt, started_at=iso(now))])
    return Change(
        "claim",
        job,
        S.ACTIVE,
        sets={
            "attempts": attempt,
            "lease_until": now + lease_ms,
            "lease_token": token,
            "started_at": iso(now),
            "updated_at": iso(now),
            "history": history,
        },
        guard=Guard.VERSION,
    )


def progress(job: Job, *, token: str, value: Any, message: str | None, now: int) -> Change:
    """A processor reports progress; fails (Conflict) once a cancel was requested: that is how it hears."""
    return Change(
        "progress",
        job,
        S.ACTIVE,
        sets={"progress": value, "progress_message": message, "updated_at": iso(now)},
        guard=Guard.LEASE,
        token=token,
        unless_cancel_requested=True,
    )


def complete(job: Job, *, token: str | None, result: Any, processing_ms: int, now: int, policy: QueuePolicy) -> Change:
    return Change(
        "complete",
        job,
        S.COMPLETED,
        sets={
            "result": result,
            "processing_time": processing_ms,
            "completed_at": iso(now),
            "updated_at": iso(now),
            "history": close_attempt(job.history, now, AttemptOutcome.COMPLETED),
        },
        removes=_LEASE,
        expires_at=_expiry(job, policy, S.COMPLETED, now),
        effects=(Metric("JobsCompleted"), Metric("ProcessingTime", processing_ms, "Milliseconds"), Log("info", "job completed")),
        **_finished_guard(job, token),
    )


def retry_later(
    job: Job, *, token: str | None, error: str, wait_seconds: int, processing_ms: int | None, now: int,
    outcome: AttemptOutcome = AttemptOutcome.RETRYING,
) -> Change:
    """A failed (or timed-out) attempt with attempts left: delayed until its backoff runs out; the delivery comes back then."""
    error = bounded_error(error)
    sets: dict[str, Any] = {
        "error": error,
        "run_at": iso(now + wait_seconds * 1000),
        "updated_at": iso(now),
        "history": close_attempt(job.history, now, outcome, error),
    }
    if processing_ms is not None:
        sets["processing_time"] = processing_ms
    return Change(
        "retry_later",
        job,
        S.DELAYED,
        sets=sets,
        removes=_LEASE,
        effects=(Wake(wait_seconds, current_delivery=True), Metric("JobsRetried"), Log("warning", "attempt failed; retrying after backoff")),
        **_finished_guard(job, token),
    )


def fail(
    job: Job,
    *,
    token: str | None,
    error: str,
    now: int,
    policy: QueuePolicy,
    processing_ms: int | None = None,
    copy_to_dead_letters: bool = True,
    outcome: AttemptOutcome = AttemptOutcome.FAILED,
) -> Change:
    """Failed for good: out of attempts, or a permanent error. Its message goes to the DLQ before the write
    (``copy_to_dead_letters=False`` only where the DLQ message is the one being purged)."""
    error = bounded_error(error)
    sets: dict[str, Any] = {
        "error": error,
        "failed_at": iso(now),
        "updated_at": iso(now),
        "history": close_attempt(job.history, now, outcome, error),
    }
    if processing_ms is not None:
        sets["processing_time"] = processing_ms
    return Change(
        "fail",
        job,
        S.FAILED,
        sets=sets,
        removes=_LEASE,
        expires_at=_expiry(job, policy, S.FAILED, now),
        effects=((DeadLetterCopy(error),) if copy_to_dead_letters else ()) + (Metric("JobsFailed"), Log("error", "job failed")),
        **_finished_guard(job, token),
    )


def cancel(job: Job, *, now: int, policy: QueuePolicy, reason: str, token: str | None = None, has_schedule: bool = False) -> Change:
    """Cancelled: before it ran (waiting, delayed), by its worker on request, or with no worker left (stalled, lease expired)."""
    sets: dict[str, Any] = {"cancelled_at": iso(now), "updated_at": iso(now)}
    history = close_attempt(job.history, now, AttemptOutcome.CANCELLED, reason)
    if history != job.history:
        sets["history"] = history
    effects: list[Effect] = [Metric("JobsCancelled"), Log("info", f"job cancelled: {reason}")]
    if has_schedule:
        effects.insert(0, RemoveSchedule())
    return Change(
        "cancel",
        job,
        S.CANCELLED,
        sets=sets,
        removes=_LEASE if job.lease_token or job.lease_until else (),
        guard=Guard.LEASE if token else Guard.VERSION,
        token=token,
        expires_at=_expiry(job, policy, S.CANCELLED, now),
        effects=tuple(effects),
    )


def request_cancel(job: Job, *, now: int) -> Change:
    """Ask the running worker to stop: only the flag is written, so no progress report or snapshot can undo it."""
    if job.status is not S.ACTIVE:
        raise Conflict(f"job {job.job_id} is {job.status.value}; only an active job takes a cancel request")
    return Change(
        "request_cancel",
        job,
        S.ACTIVE,
        sets={"cancel_requested": True, "updated_at": iso(now)},
        guard=Guard.STATUS,
        effects=(Log("info", "cancel requested for a running job"),),
    )


def stall(job: Job, *, now: int) -> Change:
    """The consumer died (its lease ran out): stalled, and woken so the next consumer reclaims it."""
    if not lease_expired(job, now):
        raise Conflict(f"job {job.job_id} still holds its lease")
    return Change(
        "stall",
        job,
        S.STALLED,
        sets={"updated_at": iso(now), "history": close_attempt(job.history, now, AttemptOutcome.STALLED, LEASE_EXPIRED)},
        removes=_LEASE,
        guard=Guard.VERSION,
        effects=(Wake(), Log("warning", "stalled job re-enqueued")),
    )


def requeue(job: Job, *, now: int, why: str, priority: int | None = None, max_attempts: int | None = None) -> Change:
    """A manual retry or a redrive: back to waiting with a fresh set of attempts; earlier attempts stay in history.

    ``priority`` and ``max_attempts`` replace the job's own (seed 002 revives dead letters at low priority, once)."""
    if job.status not in (S.FAILED, S.CANCELLED):
        raise Conflict(f"job {job.job_id} is {job.status.value}; only failed or cancelled jobs can be retried")
    sets: dict[str, Any] = {"attempts": 0, "retries": job.retries + 1, "cancel_requested": False, "progress": 0, "updated_at": iso(now)}
    if priority is not None:
        sets["priority"] = priority
    if max_attempts is not None:
        sets["max_attempts"] = max_attempts
    return Change(
        "requeue",
        job,
        S.WAITING,
        sets=sets,
        removes=("error", "result", "progress_message", "processing_time", "failed_at", "cancelled_at", "completed_at", "run_at"),
        guard=Guard.VERSION,
        clear_expiry=True,
        effects=(Wake(), Log("info", f"job requeued ({why})")),
    )


def wake(job: Job) -> tuple[Effect, ...]:
    """A job nobody will pick up without a new message (an orphan, an overdue delayed job): no write, one message."""
    if job.status not in (S.WAITING, S.DELAYED, S.STALLED):
        raise Conflict(f"job {job.job_id} is {job.status.value}; nothing to wake")
    return (Wake(),)


def replace_pending(job: Job, *, data: dict[str, Any], now: int, delay_ms: int | None = None) -> Change:
    """Deduplication's debounce and keep-last-if-active: a job not started yet takes the newest data.

    ``delay_ms`` (debounce) restarts its delay from now; None keeps its schedule (keep-last)."""
    if job.status not in (S.WAITING, S.DELAYED):
        raise Conflict(f"job {job.job_id} is {job.status.value}; only a job that has not started takes new data")
    sets: dict[str, Any] = {"data": data, "updated_at": iso(now)}
    if delay_ms is None:
        return Change("replace_pending", job, job.status, sets=sets, guard=Guard.VERSION, effects=(Log("info", "pending job's data replaced"),))
    target = S.DELAYED if delay_ms > 0 else S.WAITING
    removes: tuple[str, ...] = ()
    if delay_ms > 0:
        sets.update({"run_at": iso(now + delay_ms), "delay": delay_ms})
    else:
        removes = ("run_at",)
    return Change(
        "replace_pending",
        job,
        target,
        sets=sets,
        removes=removes,
        guard=Guard.VERSION,
        # An earlier message wakes it too soon at worst: the consumer sends a delayed job back to sleep.
        effects=(Wake(-(-delay_ms // 1000)), Log("info", "pending job debounced: data replaced, delay restarted")),
    )


def end_for_cancel(job: Job, *, token: str | None, now: int, policy: QueuePolicy) -> Change:
    """What a worker writes when it finds a cancel was requested: cancelled, whatever its attempt did."""
    return cancel(job, now=now, policy=policy, reason="cancelled while running", token=token)


def await_execution(job: Job, *, token: str | None, lease_ms: int, now: int) -> Change:
    """The processor started work that ends elsewhere (a state machine's execution, shared/executions.py):
    the job stays active, its attempt open, and its lease covers the wait so no stall sweep takes it."""
    guard = {"guard": Guard.LEASE, "token": token} if token else {"guard": Guard.ATTEMPT}
    return Change(
        "await_execution",
        job,
        S.ACTIVE,
        sets={"lease_until": now + lease_ms, "updated_at": iso(now)},
        unless_cancel_requested=True,
        effects=(Log("info", "job waits for its execution to end"),),
        **guard,
    )


# ---- flows: a parent and its children ------------------------------------------------------------------
def await_children(job: Job, *, token: str | None, processing_ms: int, now: int) -> Change:
    """The processor added children (``job.add_children``): the job waits for them, then runs again."""
    return Change(
        "await_children",
        job,
        S.WAITING_CHILDREN,
        sets={
            "processing_time": processing_ms,
            "updated_at": iso(now),
            "history": close_attempt(job.history, now, AttemptOutcome.WAITING_CHILDREN),
            "has_children": True,
        },
        removes=_LEASE,
        effects=(Log("info", "job waits for its children"),),
        **_finished_guard(job, token),
    )


def children_done(job: Job, *, now: int) -> Change:
    """Every child finished (or a continueParentOnFailure child failed): the parent runs, with fresh attempts."""
    return Change(
        "children_done",
        job,
        S.WAITING,
        sets={"attempts": 0, "updated_at": iso(now)},
        guard=Guard.STATUS,
        effects=(Wake(), Log("info", "children finished; job enqueued")),
    )


def fail_for_child(job: Job, *, child_id: str, child_error: str | None, now: int, policy: QueuePolicy) -> Change:
    """A failParentOnFailure child failed: the parent fails without running (and its own parent hears of it)."""
    error = bounded_error(f"child {child_id} failed" + (f": {child_error}" if child_error else ""))
    return Change(
        "fail_for_child",
        job,
        S.FAILED,
        sets={"error": error, "failed_at": iso(now), "updated_at": iso(now)},
        guard=Guard.STATUS,
        expires_at=_expiry(job, policy, S.FAILED, now),
        # No JobsFailed (nor a bucket's ``failed``, shared/stats.py): the child's failure was counted once.
        effects=(Log("error", "job failed: a child failed"),),
    )


def resume_for_child(job: Job, *, now: int) -> Change:
    """The child that failed the parent was retried: the parent waits for its children again."""
    return Change(
        "resume_for_child",
        job,
        S.WAITING_CHILDREN,
        sets={"updated_at": iso(now)},
        removes=("error", "failed_at"),
        guard=Guard.STATUS,
        clear_expiry=True,
        effects=(Log("info", "a failed child was retried; job waits for its children again"),),
    )
