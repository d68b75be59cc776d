"""The job state machine: one enum and the table of allowed transitions.

Every write that changes a job's status is an operation of shared/lifecycle.py, checked
against this table, and one conditional write on the status as read.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    DELAYED = "delayed"
    WAITING = "waiting"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STALLED = "stalled"
    WAITING_CHILDREN = "waiting-children"  # a flow's parent: not enqueued until its children finished


S = JobStatus

# delayed -> active happens when an SQS delay or a retry backoff runs out: the
# consumer claims the job straight from delayed, nobody needs to flip it first.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # delayed -> delayed, waiting -> waiting: a debounced job's data replaced (its delay restarted).
    S.DELAYED: frozenset({S.DELAYED, S.WAITING, S.ACTIVE, S.CANCELLED}),
    S.WAITING: frozenset({S.WAITING, S.ACTIVE, S.CANCELLED, S.DELAYED}),
    # active -> active: an expired lease is reclaimed on redelivery.
    # active -> delayed: a failed attempt waits out its backoff.
    # active -> waiting-children: the processor added children (job.add_children) and waits for them.
    S.ACTIVE: frozenset({S.ACTIVE, S.COMPLETED, S.FAILED, S.DELAYED, S.CANCELLED, S.STALLED, S.WAITING_CHILDREN}),
    # stalled -> completed | delayed: an attempt's outcome kept through a failed final write
    # lands after the health sweep found its lease expired (shared/lifecycle.py).
    S.STALLED: frozenset({S.ACTIVE, S.WAITING, S.COMPLETED, S.DELAYED, S.FAILED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    # waiting-children -> waiting: its children finished; -> failed: a child failed (failParentOnFailure)
    S.WAITING_CHILDREN: frozenset({S.WAITING, S.FAILED, S.CANCELLED}),
    # a manual retry puts a finished-unsuccessfully job back in line; a parent failed by its child
    # waits again once that child is retried (failed -> waiting-children)
    S.FAILED: frozenset({S.WAITING, S.WAITING_CHILDREN}),
    S.CANCELLED: frozenset({S.WAITING}),
}

FINISHED: frozenset[JobStatus] = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})
CLAIMABLE: frozenset[JobStatus] = frozenset(s for s, targets in TRANSITIONS.items() if S.ACTIVE in targets and s is not S.ACTIVE)


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """The statuses a job may be in for a move to ``target``: the condition of the write."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]
