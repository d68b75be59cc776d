"""What a consumer does with one SQS message: claim the job, run its processor, record the end.

The consumer handler (functions/consumer/handler.py) feeds every record of a batch to
``Worker.handle``; raising ``RetryLater`` reports that record as a batch item failure, so
it comes back after the visibility the worker set, and the batch's other records are
unaffected. Returning acknowledges the record (Lambda deletes it).
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared import backoff, flow_control, lifecycle, strict_json
from shared.adapters import policies, queues
from shared.adapters.limits import DynamoLimits
from shared.adapters.sqs import SqsJobMessages
from shared.clock import now_ms, parse_iso
from shared.errors import Conflict, PermanentJobError, Unavailable
from shared.job_context import (  # the processor's side; imported from here by the processors, as before
    EndsElsewhere,
    JobCancelled,
    JobContext,
    JobInterrupted,
    JobTimedOut,
    LeaseLost,
)
from shared.lifecycle import AttemptOutcome, Change, Guard
from shared.models import AttemptUsage, Job, JobRef, QueueInfo, QueuePolicy
from shared.observability import logger
from shared.ports import JobRepository, QueueGateway
from shared.settings import Settings
from shared.status import FINISHED, JobStatus
from shared.transitions import DeliveryRef, Transitions
from shared.usage import attempt_usage

if TYPE_CHECKING:
    from shared.flows import FollowUps  # imported when a processor adds jobs: flows are not every job's cold start

Processor = Callable[[JobContext], Any]
ProcessorResolver = Callable[[QueueInfo, Job], Processor]


class RetryLater(Exception):
    """Leave the message on the queue: it returns after the visibility timeout set for it."""


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    DEFERRED = "deferred"  # over a flow limit: the job waits in a new message (no attempt spent)
    WAITING_CHILDREN = "waiting-children"  # the processor added children; it runs again when they finished
    AWAITING_EXECUTION = "awaiting-execution"  # started a state machine's execution; its end event ends the job
    KEPT = "kept"  # the ending could not be written; it travels in a message that a later delivery writes

# The part of a consumer's remaining time kept back from retrying a final write: enough to send
# the kept outcome's message and return.
FINAL_WRITE_RESERVE_MS = 3000
# A throttled claim: the message comes back after min(2**receives, this) seconds, no attempt spent.
THROTTLE_BACKOFF_CAP_SECONDS = 120


@dataclass(frozen=True)
class Ending:
    """How an attempt ended, as the worker decided it: enough to write it now or from a later delivery."""

    operation: str  # complete | await_children | await_execution | retry_later | fail | cancel
    attempt: int
    result: Any = None
    error: str | None = None
    processing_ms: int | None = None
    wait_seconds: int = 0
    outcome: str | None = None  # the attempt record's outcome when not the operation's own (timed_out)
    usage: dict[str, Any] | None = None  # AttemptUsage, as JSON (it travels in kept-outcome messages)
    follow_ups: list[dict[str, Any]] | None = None  # jobs and children the processor added (shared/flows.py)

    def as_body(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Ending | None:
        try:
            return cls(**body)
        except TypeError:
            return None


@dataclass(frozen=True)
class Delivery:
    """One SQS message as the event source mapping hands it over."""

    message_id: str
    body: str
    receipt_handle: str
    queue: QueueInfo
    receive_count: int = 1
    memory_mb: int | None = None  # the consumer's configured memory (its Lambda context)
    batch_records: int = 1  # records in the invocation's batch: the attempt's share of the request charge


class Worker:
    def __init__(
        self,
        store: JobRepository,
        settings: Settings,
        resolve: ProcessorResolver,
        *,
        clock: Callable[[], int] = now_ms,
        messages: QueueGateway | None = None,
        policy: Callable[[QueueInfo], QueuePolicy] = policies.get_policy,
        transitions: Transitions | None = None,
        limits: flow_control.Limits | None = None,
        admit: Callable[[QueueInfo, Job], int | None] | None = None,
        holds_jobs: Callable[[QueueInfo], bool] | None = None,
        accepts: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.store = store
        self.accepts = accepts  # whether a queue takes a job type: checks the jobs a processor adds
        self.settings = settings
        self.resolve = resolve
        self.clock = clock
        self.messages = messages or SqsJobMessages()
        self.policy = policy
        self.transitions = transitions or Transitions(store, self.messages)
        self.limits = limits or DynamoLimits(store.table_name)  # flow control's counters (shared/flow_control.py)
        # Before a claim: seconds the job must wait without spending an attempt (its target's circuit breaker), or None.
        self.admit = admit
        # Queues whose jobs ``admit`` may hold are read before the claim (a held job spends no attempt).
        self.holds_jobs = holds_jobs if holds_jobs is not None else (lambda _queue: admit is not None)
        # Endings this container could neither write nor send: applied if the same delivery comes back here.
        self._kept: dict[JobRef, Ending] = {}

    # ---- one message ---------------------------------------------------------------
    def handle(self, delivery: Delivery, *, remaining_ms: int | None = None) -> Outcome:
        ref = queues.ref_of_body(delivery.body)
        if ref is None:
            logger.error("malformed message moved to the DLQ", extra={"message_id": delivery.message_id})
            queues.send_to_dead_letters(delivery.queue, delivery.body, reason="malformed message: no jobId and userId")  # raises if it cannot: the message stays
            return Outcome.SKIPPED
        message = _message_of(delivery.body)
        lease_ms = remaining_ms if remaining_ms is not None else self.settings.default_lease_seconds * 1000
        deadline = time.monotonic() * 1000 + max(0, lease_ms - FINAL_WRITE_RESERVE_MS)
        try:
            kept = Ending.from_body(message["keptOutcome"]) if isinstance(message.get("keptOutcome"), dict) else None
            written = self._write_kept(ref, kept, delivery, deadline) if kept is not None else None
            if written is not None:
                return written
            # No ending to write (or it was written: a kept retry's message is the job's wake-up): a delivery like any other.
            claimed = self._claim(ref, delivery, lease_ms, deadline)
        except Unavailable as err:
            # Throttled or down before any work started: come back soon, without spending an attempt.
            wait = min(2 ** max(delivery.receive_count, 1), THROTTLE_BACKOFF_CAP_SECONDS)
            logger.warning("AWS unavailable on the consumer path; backing off", extra={"job_id": ref.job_id, "retry_in_s": wait, "error": err.message})
            self._set_visibility(delivery, wait)
            raise RetryLater(err.message) from err
        if isinstance(claimed, Outcome):
            return claimed
        job, token, slots = claimed
        try:
            return self._run(job, token, delivery, deadline)
        finally:
            for slot in slots:
                self._give_back(delivery.queue, slot)

    def _claim(self, ref: JobRef, delivery: Delivery, lease_ms: int, deadline: float) -> tuple[Job, str, tuple[tuple[str, str, str], ...]] | Outcome:
        job_id = ref.job_id
        token = uuid.uuid4().hex
        seen: Job | None = None
        admission: flow_control.Admission | None = None
        body_group = queues.group_of_body(delivery.body)
        if self.holds_jobs(delivery.queue) or (body_group is queues.GROUP_NOT_CARRIED and self._has_group_limits(delivery.queue)):
            seen = self.store.get(ref.user_id, ref.job_id)  # decided below, admission included
        else:
            # Flow control needs no read: the group key travels in the message (None without limits on the queue).
            now = self.clock()
            group = None if body_group is queues.GROUP_NOT_CARRIED else body_group
            admitted = self._admit(job_id, group, delivery, token, now + lease_ms, now, queues.exclusive_of_body(delivery.body))
            if isinstance(admitted, Outcome):
                return admitted
            admission = admitted
            try:  # the plain case, one write and no read: a waiting (or due) job with attempts left
                # startedAt is the instant the rate window was charged, so a job's start always falls in the window it counted in.
                claimed = self.store.claim(ref.user_id, ref.job_id, now=now, lease_ms=lease_ms, token=token, max_history=lifecycle.MAX_HISTORY)
                return claimed, token, admission.slots
            except Conflict as refused:  # the failed condition returned the job as it is: decide from it
                seen = refused.details if isinstance(refused.details, Job) else None
            except BaseException:
                self._release(delivery.queue, admission)
                raise
        gate = [admission] if admission is not None else []  # the flow gate's answer, once it was asked
        try:
            outcome = self._decide(ref, seen, delivery, lease_ms, deadline, token, gate)
        except BaseException:
            self._release(delivery.queue, gate)
            raise
        if isinstance(outcome, Outcome):
            self._release(delivery.queue, gate)  # no attempt started: its key's slot goes back at once
        return outcome

    def _decide(
        self, ref: JobRef, seen: Job | None, delivery: Delivery, lease_ms: int, deadline: float, token: str, gate: list[flow_control.Admission]
    ) -> tuple[Job, str, tuple[tuple[str, str, str], ...]] | Outcome:
        """A claim the plain write could not make (or a queue whose jobs are read first): decide from the job."""
        job_id = ref.job_id
        for round_ in range(3):  # re-read after losing a race
            job = seen if round_ == 0 else self.store.get(ref.user_id, ref.job_id)
            if job is None:
                logger.warning("message for an unknown job acknowledged", extra={"job_id": job_id})
                return Outcome.SKIPPED
            now = self.clock()
            if job.status in FINISHED:
                logger.info("delivery of a finished job acknowledged", extra={"job_id": job_id, "status": job.status.value})
                return Outcome.SKIPPED
            if job.status is JobStatus.ACTIVE and not lifecycle.lease_expired(job, now):
                kept = self._kept.get(ref)
                written = self._write_kept(ref, kept, delivery, deadline) if kept is not None else None
                if written is not None:
                    return written
                logger.info("duplicate delivery of a running job acknowledged", extra={"job_id": job_id})
                return Outcome.SKIPPED
            if job.status is JobStatus.DELAYED and job.run_at and parse_iso(job.run_at) > now + 1000:
                # Woken early (a retried send, a manual redrive): sleep again until due.
                self._set_visibility(delivery, -(-(parse_iso(job.run_at) - now) // 1000))
                raise RetryLater(f"job {job_id} is not due before {job.run_at}")
            try:
                if job.cancel_requested and job.status in (JobStatus.ACTIVE, JobStatus.STALLED):
                    # Cancelled while running, and its worker died before it heard: it ends cancelled.
                    change = lifecycle.cancel(job, now=now, policy=self._policy(job), reason="cancelled; its consumer had stopped")
                    self.transitions.apply(change, delivery.queue)
                    return Outcome.CANCELLED
                if job.attempts >= job.max_attempts:
                    error = f"the consumer stopped during the final attempt ({lifecycle.LEASE_EXPIRED})"
                    self.transitions.apply(lifecycle.fail(job, token=None, error=error, now=now, policy=self._policy(job)), delivery.queue)
                    return Outcome.FAILED
                hold = self.admit(delivery.queue, job) if self.admit is not None else None
                if hold is not None:
                    self._set_visibility(delivery, hold)
                    raise RetryLater(f"job {job_id} waits {hold} s: its target's circuit breaker is open")
                if not gate:  # not yet through the flow gate (the job was read first)
                    admitted = self._admit(job_id, job.group, delivery, token, now + lease_ms, now, job.exclusive_key)
                    if isinstance(admitted, Outcome):
                        return admitted
                    gate.append(admitted)
                job = self.transitions.apply(lifecycle.claim(job, now=now, lease_ms=lease_ms, token=token), delivery.queue)
            except Conflict:
                continue
            return job, token, gate[0].slots
        logger.warning("job kept changing while being claimed; will retry", extra={"job_id": job_id})
        raise RetryLater(f"could not claim job {job_id}")

    def _has_group_limits(self, queue: QueueInfo) -> bool:
        return self.policy(queue).groups is not None

    def _give_back(self, queue: QueueInfo, slot: tuple[str, str, str]) -> None:
        """Give a slot back; a job that waits for it (keepLastIfActive) is woken at once, not at its next look."""
        waiter = self.limits.release_slot(*slot)
        if waiter is None:
            return
        try:
            self.messages.send_body(queue, _message_of(waiter))
        except Unavailable as err:  # it looks again after its wait
            logger.warning("could not wake the job waiting for a slot", extra={"error": err.message})

    def _release(self, queue: QueueInfo, gate: list[flow_control.Admission] | flow_control.Admission | None) -> None:
        for admission in gate if isinstance(gate, list) else [gate] if gate is not None else []:
            for slot in admission.slots:
                self._give_back(queue, slot)

    def _admit(
        self, job_id: str, group: str | None, delivery: Delivery, token: str, lease_until: int, now: int, exclusive: str | None = None
    ) -> flow_control.Admission | Outcome:
        """Flow control before the claim: go, or wait (the message's visibility moved; no attempt spent)."""
        policy = self.policy(delivery.queue)
        if policy.rate_limit is None and (policy.groups is None or group is None) and exclusive is None:
            return flow_control.Admission()  # no limits: no counter is touched
        admission = flow_control.admit(
            self.limits,
            queue=delivery.queue.name,
            group=group,
            rate_limit=policy.rate_limit,
            groups=policy.groups,
            token=token,
            lease_until_ms=lease_until,
            now_ms=now,
            slot_wait_seconds=min(2 ** max(delivery.receive_count - 1, 0), self.settings.group_slot_wait_cap_seconds),
            exclusive=exclusive,
            # What the active job sends back when it ends (a kept ending is not this message's to repeat).
            waiter=json.dumps({k: v for k, v in _message_of(delivery.body).items() if k != "keptOutcome"}, separators=(",", ":")) if exclusive else None,
        )
        if admission.go:
            return admission
        logger.info("job waits for its flow limit", extra={"job_id": job_id, "reason": admission.reason, "retry_in_s": admission.wait_seconds})
        if delivery.receive_count >= max(2, int(delivery.queue.max_receive_count * flow_control.RESEND_AFTER_RECEIVE_SHARE)):
            # Waited often: a new message carries the job on, before SQS's redrive counts this one into the DLQ.
            try:
                self.messages.send_body(delivery.queue, _message_of(delivery.body), delay_seconds=min(admission.wait_seconds, 900))
                return Outcome.DEFERRED
            except Unavailable:
                pass
        self._set_visibility(delivery, admission.wait_seconds)
        raise RetryLater(admission.reason)

    def _call(self, processor: Processor, context: JobContext, timeout_ms: int | None) -> Any:
        """Run the processor; with a timeout, in a thread the worker stops waiting for at the deadline."""
        if timeout_ms is None:
            return processor(context)
        done = threading.Event()
        box: dict[str, Any] = {}
        run_in = contextvars.copy_context()  # the log keys of this record

        def target() -> None:
            try:
                box["result"] = run_in.run(processor, context)
            except BaseException as err:  # handed to the worker's thread as is
                box["error"] = err
            finally:
                done.set()

        threading.Thread(target=target, name=f"job-{context.job_id}", daemon=True).start()
        if not done.wait(context.time_left() or 0):
            # Abandoned: its next progress() raises, and its lease is gone once the ending is written.
            context.expire()
            raise JobTimedOut(f"timed out after {timeout_ms} ms")
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _run(self, job: Job, token: str, delivery: Delivery, deadline: float) -> Outcome:
        def follow_ups() -> FollowUps:
            from shared.flows import FollowUps, JobPlanner

            return FollowUps(JobPlanner(queues.directory(), self.accepts), job, self.clock)

        context = JobContext(job, self.store, token, self.clock, self.settings.log_ttl_days * 86400, follow_ups=follow_ups, timeout_ms=job.timeout, settings=self.settings)
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            context.snapshot = self.store.with_payloads(job)  # data stored apart (S3) is read back first
            processor = self.resolve(delivery.queue, context.snapshot)
            result = self._call(processor, context, job.timeout)
        except JobTimedOut as err:
            return self._end(context, delivery, self._failed_attempt(job, err, f"timed out after {job.timeout} ms", took(), timed_out=True), deadline)
        except JobCancelled:
            return self._end(context, delivery, Ending("cancel", job.attempts, processing_ms=took()), deadline)
        except LeaseLost:
            logger.warning("lease lost while running; another delivery owns the job now", extra={"job_id": job.job_id})
            return Outcome.SKIPPED
        except EndsElsewhere as waiting:
            ending = Ending("await_execution", job.attempts, processing_ms=took(), wait_seconds=waiting.lease_seconds)
            return self._end(context, delivery, ending, deadline)
        except PermanentJobError as err:
            return self._end(context, delivery, Ending("fail", job.attempts, error=err.message, processing_ms=took()), deadline)
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
            if context.timed_out:  # an HTTP target's call dropped at the deadline: the attempt timed out
                message = f"timed out after {job.timeout} ms ({message})"
            return self._end(context, delivery, self._failed_attempt(job, err, message, took(), timed_out=context.timed_out), deadline)
        problem = _result_problem(result, self.settings.max_result_bytes)
        if problem:
            return self._end(context, delivery, Ending("fail", job.attempts, error=problem, processing_ms=took()), deadline)
        adding = context.follow_ups  # None: the processor added nothing
        added = (adding.as_body() or None) if adding is not None else None
        if adding is not None and adding.children:
            return self._end(context, delivery, Ending("await_children", job.attempts, processing_ms=took(), follow_ups=added), deadline)
        return self._end(context, delivery, Ending("complete", job.attempts, result=result, processing_ms=took(), follow_ups=added), deadline)

    def _failed_attempt(self, job: Job, err: BaseException, message: str, processing_ms: int, *, timed_out: bool) -> Ending:
        """Retry after the backoff (the job type's custom one, if registered), or fail on the last attempt."""
        outcome = "timed_out" if timed_out else None
        if job.attempts >= job.max_attempts:
            return Ending("fail", job.attempts, error=message, processing_ms=processing_ms, outcome=outcome)
        wait = backoff.wait_seconds(job.backoff, job.attempts, err, queue=job.queue, job_type=job.type, cap_seconds=self.settings.backoff_cap_seconds)
        return Ending("retry_later", job.attempts, error=message, processing_ms=processing_ms, wait_seconds=wait, outcome=outcome)

    # ---- endings ----------------------------------------------------------------------
    def _change(self, job: Job, ending: Ending, token: str | None) -> Change:
        change = self._ending_change(job, ending, token)
        history = change.sets.get("history")
        if ending.usage and isinstance(history, list) and history and history[-1].attempt == ending.attempt:
            # The attempt's record closed by this change carries what it used (shared/usage.py).
            closed = history[-1].model_copy(update={"usage": AttemptUsage.model_validate(ending.usage)})
            change = replace(change, sets={**change.sets, "history": [*history[:-1], closed]})
        return change

    def _ending_change(self, job: Job, ending: Ending, token: str | None) -> Change:
        now = self.clock()
        if ending.operation == "complete":
            return lifecycle.complete(job, token=token, result=ending.result, processing_ms=ending.processing_ms or 0, now=now, policy=self._policy(job))
        if ending.operation == "await_execution":
            return lifecycle.await_execution(job, token=token, lease_ms=ending.wait_seconds * 1000, now=now)
        if ending.operation == "await_children":
            return lifecycle.await_children(job, token=token, processing_ms=ending.processing_ms or 0, now=now)
        if ending.operation == "retry_later":
            return lifecycle.retry_later(
                job, token=token, error=ending.error or "failed", wait_seconds=ending.wait_seconds, processing_ms=ending.processing_ms, now=now,
                outcome=AttemptOutcome(ending.outcome or AttemptOutcome.RETRYING),
            )
        if ending.operation == "fail":
            return lifecycle.fail(
                job, token=token, error=ending.error or "failed", now=now, policy=self._policy(job), processing_ms=ending.processing_ms,
                outcome=AttemptOutcome(ending.outcome or AttemptOutcome.FAILED),
            )
        return lifecycle.end_for_cancel(job, token=token, now=now, policy=self._policy(job))

    def _end(self, context: JobContext, delivery: Delivery, ending: Ending, deadline: float) -> Outcome:
        """Write the attempt's ending: retried while time allows; a cancel wins; kept when it cannot be written."""
        if ending.usage is None and ending.processing_ms is not None:
            usage = attempt_usage(ending.processing_ms, memory_mb=delivery.memory_mb, batch_records=delivery.batch_records)
            ending = replace(ending, usage=usage.model_dump())
        job, token = context.snapshot, context.token
        ref = DeliveryRef(delivery.receipt_handle, delivery.body)
        try:
            self.transitions.apply(
                self._change(job, ending, token), delivery.queue, delivery=ref, within_ms=self._left(deadline), together=self._together(job, ending)
            )
        except Conflict as clash:
            current = clash.details if isinstance(clash.details, Job) else self.store.get(job.user_id, job.job_id)
            if current is None or current.lease_token != token or current.status is not JobStatus.ACTIVE:
                logger.warning("job changed while running (lease lost); its ending dropped", extra={"job_id": job.job_id})
                return Outcome.SKIPPED
            if not current.cancel_requested:
                raise
            # A cancel was requested while the attempt ran: the job ends cancelled, whatever the attempt did.
            ending = Ending("cancel", ending.attempt, processing_ms=ending.processing_ms, usage=ending.usage)
            try:
                self.transitions.apply(self._change(current, ending, token), delivery.queue, within_ms=self._left(deadline))
            except Unavailable:
                return self._keep(job, ending, delivery)
            return Outcome.CANCELLED
        except Unavailable:
            return self._keep(job, ending, delivery)
        if ending.operation == "retry_later":
            raise RetryLater(ending.error or "retrying")  # the message returns after the backoff set as its visibility
        return _OUTCOME_OF[ending.operation]

    def _keep(self, job: Job, ending: Ending, delivery: Delivery) -> Outcome:
        """The ending could not be written in time: it travels in a new message, and a later delivery writes it.

        The job stays active under this attempt's lease meanwhile; whichever delivery comes next
        writes the ending exactly as it was decided, so a success stays a success.
        """
        body = {**_message_of(delivery.body), "jobId": job.job_id, "userId": job.user_id, "queue": job.queue, "keptOutcome": ending.as_body()}
        try:
            self.messages.send_body(delivery.queue, body, delay_seconds=1)
        except Unavailable:
            # SQS is down too: keep it here for a redelivery to this container, and let the message come back.
            self._kept[JobRef.of(job)] = ending
            logger.error("ending kept in memory; the message returns", extra={"job_id": job.job_id, "operation": ending.operation})
            self._set_visibility(delivery, 5)
            raise RetryLater(f"the ending of job {job.job_id} could not be written yet") from None
        logger.warning("ending could not be written; kept in a message", extra={"job_id": job.job_id, "operation": ending.operation})
        return Outcome.KEPT

    def _write_kept(self, ref: JobRef, ending: Ending, delivery: Delivery, deadline: float) -> Outcome | None:
        """A kept ending: written if the job is still in that attempt (active, or stalled by the health sweep meanwhile).

        None when there is nothing to write (written before, or another attempt began): the
        delivery is then handled like any other.
        """
        job_id = ref.job_id
        job = self.store.get(ref.user_id, ref.job_id)
        if job is None or job.attempts != ending.attempt or job.status not in (JobStatus.ACTIVE, JobStatus.STALLED):
            self._kept.pop(ref, None)
            return None
        if job.cancel_requested:
            ending = Ending("cancel", ending.attempt, processing_ms=ending.processing_ms)
        change = replace(self._change(job, ending, None), guard=Guard.ATTEMPT, token=None, unless_cancel_requested=ending.operation != "cancel")
        handle = DeliveryRef(delivery.receipt_handle, delivery.body)
        try:
            self.transitions.apply(change, delivery.queue, delivery=handle, within_ms=self._left(deadline), together=self._together(job, ending))
        except Conflict:
            if self._changed_only_by_cancel(ref, ending):
                return self._write_kept(ref, ending, delivery, deadline)
            return None
        self._kept.pop(ref, None)
        logger.info("kept ending written", extra={"job_id": job_id, "operation": ending.operation})
        if ending.operation == "retry_later":
            raise RetryLater(ending.error or "retrying")
        return _OUTCOME_OF[ending.operation]

    def _changed_only_by_cancel(self, ref: JobRef, ending: Ending) -> bool:
        current = self.store.get(ref.user_id, ref.job_id)
        return bool(current and current.cancel_requested and ending.operation != "cancel" and current.attempts == ending.attempt)

    # ---- helpers -----------------------------------------------------------------------
    def _together(self, job: Job, ending: Ending) -> list[dict[str, Any]] | None:
        """The follow-ups' writes that go in the ending's transaction (only a success has any)."""
        if not ending.follow_ups or ending.operation not in ("complete", "await_children"):
            return None
        from shared.adapters.flows import FlowStore
        from shared.flows import follow_up_actions, jobs_of_body

        return follow_up_actions(FlowStore(self.store.table_name), job, jobs_of_body(ending.follow_ups))

    def _policy(self, job: Job) -> QueuePolicy:
        """The job's queue's runtime policy (retention), cached per container."""
        return self.policy(queues.directory().get(job.queue))

    def _set_visibility(self, delivery: Delivery, seconds: int) -> None:
        try:
            self.messages.change_visibility(delivery.queue, delivery.receipt_handle, seconds)
        except Unavailable as err:  # the message comes back after its visibility timeout instead
            logger.warning("could not change a message's visibility", extra={"error": err.message})

    @staticmethod
    def _left(deadline: float) -> int:
        return max(0, int(deadline - time.monotonic() * 1000))


_OUTCOME_OF = {"await_execution": Outcome.AWAITING_EXECUTION, "await_children": Outcome.WAITING_CHILDREN, "complete": Outcome.COMPLETED, "fail": Outcome.FAILED, "cancel": Outcome.CANCELLED, "retry_later": Outcome.RETRYING}


def _result_problem(result: Any, limit: int) -> str | None:
    reason = strict_json.problem(result, "result")
    if reason:
        return f"the processor returned a result that is not strict JSON: {reason}"
    try:
        size = len(strict_json.dumps(result).encode())
    except (TypeError, ValueError) as err:
        return f"the processor returned a result that is not JSON: {err}"
    return f"the processor's result is {size} bytes; the limit is {limit}" if size > limit else None


def _message_of(body: str) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}

__all__ = [
    "Delivery", "Ending", "Outcome", "Processor", "ProcessorResolver", "RetryLater", "Worker",
    # the processor's side (shared/job_context.py), still importable from here
    "EndsElsewhere", "JobCancelled", "JobContext", "JobInterrupted", "JobTimedOut", "LeaseLost",
]  # fmt: skip
