"""A queue's dead letters: list them with their jobs, redrive them, purge them.

A message reaches a queue's DLQ in two ways: the worker sends it when a job fails for
good (with a ``jobqFailureReason`` attribute), or SQS moves it after ``maxReceiveCount``
receives (a message that kept killing the consumer; its job may still say active).

* list: receive with a short visibility (``dead_letter_peek_seconds``), read the jobs with
  one BatchGetItem, then make the messages visible again at once;
* redrive: per message, by the state of its job (the job item is the source of truth):
  failed -> waiting with a fresh set of attempts and a new wake-up message (JobService.retry,
  so its history stays); not finished (waiting, delayed, active, stalled) -> woken again as it
  is; completed, cancelled or removed -> the message is stale and dropped. The DLQ message is
  deleted only after that, so a crash in between leaves it to be redriven again, harmlessly.
  Listed ids whose message is not found (SQS sampling, an expired message) but whose job is
  failed are retried all the same.
* purge: delete every message; a job still active or stalled whose lease ran out becomes
  failed, so nothing is left pretending to run.

Redriving everything does not use SQS's StartMessageMoveTask: every message's job must
change state (failed -> waiting) before its message means anything to the consumer, which
acknowledges and drops the message of a failed job. A server-side move would therefore
need the same per-job pass first, and messages arriving between the pass and the move would
be dropped. Moving them here costs one receive, one send batch and one delete batch per ten
jobs, next to the per-job conditional write that is needed anyway.

Each call works for at most ``admin_request_budget_seconds`` and reports what is left.
"""

from __future__ import annotations

import time
from typing import Any

from shared import lifecycle
from shared.adapters import policies, queues
from shared.client_models import JobPublic
from shared.clock import iso
from shared.errors import Conflict, JobqError, Unavailable
from shared.jobs import Identity, JobService
from shared.models import Job, JobRef, QueueInfo, QueuePolicy
from shared.ports import JobRepository
from shared.queue_models import DeadLetter, DeadLetterList, PurgeResult, RedriveResult, Skipped
from shared.status import FINISHED, JobStatus

REASON_ATTRIBUTE = "jobqFailureReason"


def ref_of(message: dict[str, Any]) -> JobRef | None:
    """The job (owner and id) a dead letter names, or None."""
    return queues.ref_of_body(message.get("Body"))


def _reason(message: dict[str, Any], queue: QueueInfo) -> str | None:
    attribute = (message.get("MessageAttributes") or {}).get(REASON_ATTRIBUTE) or {}
    if attribute.get("StringValue"):
        return str(attribute["StringValue"])
    if (message.get("Attributes") or {}).get("DeadLetterQueueSourceArn") or ref_of(message):
        return f"moved by SQS after {queue.max_receive_count} receives (the consumer kept failing on it)"
    return None


# ---- list --------------------------------------------------------------------------------------------


def peek(queue: QueueInfo, store: JobRepository, *, limit: int, hold_seconds: int) -> DeadLetterList:
    """Up to ``limit`` dead letters with their jobs; the messages stay in the DLQ."""
    messages: list[dict[str, Any]] = []
    empty = 0
    try:
        while len(messages) < limit and empty < 2:  # short polling samples servers: one empty answer is not proof
            batch = queues.receive_dead_letters(queue, limit - len(messages), hold_seconds)
            empty = 0 if batch else empty + 1
            messages.extend(batch)
    finally:
        queues.settle_dead_letters(queue, messages, "release")
    jobs = store.get_many(r for r in (ref_of(m) for m in messages) if r)
    letters = []
    for message in messages:
        ref = ref_of(message)
        attrs = message.get("Attributes") or {}
        sent = attrs.get("SentTimestamp")
        job = jobs.get(ref) if ref else None
        letters.append(
            DeadLetter(
                message_id=message["MessageId"],
                job_id=ref.job_id if ref else None,
                user_id=ref.user_id if ref else None,
                reason=_reason(message, queue),
                sent_at=iso(int(sent)) if sent else None,
                receive_count=int(attrs.get("ApproximateReceiveCount", 1)),
                job=JobPublic.of(job) if job else None,
            )
        )
    return DeadLetterList(dead_letters=letters, approximate_total=max(queues.dead_letter_depth(queue), len(letters)))


# ---- redrive -------------------------------------------------------------------------------------------


class _Redrive:
    def __init__(self, queue: QueueInfo, jobs: JobService, caller: Identity, *, priority: int | None = None, attempts: int | None = None) -> None:
        self.queue = queue
        self.jobs = jobs
        self.caller = caller
        self.priority = priority
        self.attempts = attempts
        self.result = RedriveResult(redriven=[], requeued=[], skipped=[], not_found=[], remaining=0)
        self.seen: set[JobRef] = set()

    def one(self, ref: JobRef | None) -> bool:
        """Act on one message's job; True if the message may be deleted."""
        if ref is None:
            self.result.skipped.append(Skipped(job_id=None, reason="the message names no job"))
            return True
        if ref in self.seen:
            return True  # a second message for a job already handled in this call
        job_id = ref.job_id
        job = self.jobs.store.get(ref.user_id, ref.job_id)
        try:
            if job is None:
                self.result.skipped.append(Skipped(job_id=job_id, reason="the job no longer exists"))
            elif job.status is JobStatus.FAILED:
                # waiting, fresh attempts (or as many as asked), a new message; history kept
                self.jobs.retry(job_id, self.caller, user_id=ref.user_id, why="redrive", priority=self.priority, attempts=self.attempts)
                self.result.redriven.append(job_id)
            elif job.status in FINISHED:
                self.result.skipped.append(Skipped(job_id=job_id, reason=f"the job is {job.status.value}"))
            else:
                queues.send_job(self.queue, ref, route=queues.Route.of(job))  # waiting, delayed, active, stalled: wake it again
                self.result.requeued.append(job_id)
        except Conflict:
            self.result.skipped.append(Skipped(job_id=job_id, reason="the job changed meanwhile; redrive it again"))
            return False
        except Unavailable:
            self.result.skipped.append(Skipped(job_id=job_id, reason="it could not be enqueued; redrive it again"))
            return False
        self.seen.add(ref)
        return True


def redrive(
    queue: QueueInfo,
    jobs: JobService,
    caller: Identity,
    *,
    job_ids: list[str] | None,
    budget_seconds: float,
    user_id: str | None = None,
    priority: int | None = None,
    attempts: int | None = None,
) -> RedriveResult:
    """Move all dead letters (or those of ``job_ids``) back to the queue; see the module docstring.

    ``job_ids`` match the dead letters of any owner, or only ``user_id``'s when given; an id
    whose message is gone is looked up in ``user_id``'s namespace (default: the caller's).
    ``priority`` and ``attempts`` apply to the failed jobs revived (not to jobs only woken again).
    """
    work = _Redrive(queue, jobs, caller, priority=priority, attempts=attempts)
    wanted = set(job_ids) if job_ids else None
    handled: set[str] = set()
    deadline = time.monotonic() + budget_seconds
    hold = int(budget_seconds) + 30  # nothing received in this call comes back before it ends
    held: list[dict[str, Any]] = []
    empty = 0
    try:
        while time.monotonic() < deadline and empty < 2 and not (wanted is not None and wanted <= handled):
            messages = queues.receive_dead_letters(queue, 10, hold)
            empty = 0 if messages else empty + 1
            done = []
            for message in messages:
                ref = ref_of(message)
                if wanted is not None and (ref is None or ref.job_id not in wanted or (user_id is not None and ref.user_id != user_id)):
                    held.append(message)
                elif work.one(ref):
                    done.append(message)
                    if ref is not None:
                        handled.add(ref.job_id)
                else:
                    held.append(message)
            queues.settle_dead_letters(queue, done, "delete")
    finally:
        queues.settle_dead_letters(queue, held, "release")
    owner = user_id or caller.user_id
    for job_id in sorted((wanted or set()) - handled):
        job = jobs.store.get(owner, job_id)
        if job is not None and job.queue == queue.name and job.status is JobStatus.FAILED:
            work.one(JobRef.of(job))
        else:
            work.result.not_found.append(job_id)
    work.result.remaining = queues.dead_letter_depth(queue)
    return work.result


# ---- purge -------------------------------------------------------------------------------------------


def _fail_for_good(jobs: JobService, queue: QueueInfo, job: Job, reason: str, policy: QueuePolicy) -> bool:
    """An active or stalled job whose lease ran out becomes failed (its DLQ message is the one purged); True if it did."""
    now = jobs.clock()
    if job.status not in (JobStatus.ACTIVE, JobStatus.STALLED) or (job.lease_until or 0) > now:
        return False
    try:
        jobs.transitions.apply(lifecycle.fail(job, token=None, error=reason, now=now, policy=policy, copy_to_dead_letters=False), queue)
    except JobqError:
        return False
    return True


def purge(queue: QueueInfo, jobs_service: JobService, *, budget_seconds: float) -> PurgeResult:
    """Delete the DLQ's messages; jobs that still claim to run are marked failed."""
    policy = policies.get_policy(queue)
    result = PurgeResult(purged=0, marked_failed=[], remaining=0)
    deadline = time.monotonic() + budget_seconds
    empty = 0
    while time.monotonic() < deadline and empty < 2:
        messages = queues.receive_dead_letters(queue, 10, int(budget_seconds) + 30)
        empty = 0 if messages else empty + 1
        if not messages:
            continue
        jobs = jobs_service.store.get_many(r for r in (ref_of(m) for m in messages) if r)
        for job in jobs.values():
            if job.queue == queue.name and _fail_for_good(jobs_service, queue, job, "dead letter purged: the consumer never finished it", policy):
                result.marked_failed.append(job.job_id)
        queues.settle_dead_letters(queue, messages, "delete")
        result.purged += len(messages)
    result.remaining = queues.dead_letter_depth(queue)
    return result


__all__ = ["peek", "purge", "redrive", "ref_of"]
