"""A state machine's execution ended: the job that started it ends with it (Step Functions targets).

EventBridge delivers "Step Functions Execution Status Change" events of the registered state
machines (template.yaml ExecutionEventsFunction) to ``ExecutionEnds.handle``. The execution's
input names the job (``{jobId, userId, queue, attempt, ...}``, processors/state_machine_target.py)
and its name is the lease token of the attempt that started it, so the one conditional write
that ends the job is guarded by that token, as a consumer's own ending is:

    SUCCEEDED                 complete, the output as the result (past a few KB: in S3, as any result)
    FAILED, TIMED_OUT         retry_later with the job's backoff, or fail (out of attempts, or the
                              execution's error is one the target lists in permanentErrors)
    ABORTED                   cancelled when the job was cancelled (the API stopped the execution);
                              otherwise (stopped by hand) a failed attempt, as above
    any, a cancel requested   cancelled: a cancel wins, as with a consumer's endings

An event of an older attempt, of a job that is gone or finished, or of an execution jobq did
not start, is ignored (logged); a second delivery of the same event finds the token gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared import lifecycle, strict_json
from shared.adapters import policies, queues, state_machines
from shared.adapters.job_repository import JobStore
from shared.adapters.sqs import SqsJobMessages
from shared.backoff import backoff_seconds
from shared.clock import now_ms, parse_iso
from shared.errors import Conflict, JobqError
from shared.lifecycle import Change
from shared.models import Job, StateMachineTarget
from shared.observability import logger
from shared.settings import Settings
from shared.status import JobStatus
from shared.transitions import Transitions

ENDED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class StatusChange(BaseModel):
    """The fields of the event's ``detail`` that jobq reads."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str = Field(alias="stateMachineArn")
    name: str
    status: str
    input: str | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    input_details: dict[str, Any] | None = Field(default=None, alias="inputDetails")
    output_details: dict[str, Any] | None = Field(default=None, alias="outputDetails")


class ExecutionEnds:
    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        *,
        transitions: Transitions | None = None,
        describe: Callable[[str], state_machines.ExecutionEnd] = state_machines.describe,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.settings = settings
        self.transitions = transitions or Transitions(store, SqsJobMessages())
        self.describe = describe
        self.clock = clock

    def handle(self, detail: dict[str, Any]) -> str:
        """What became of the job (``completed``, ``retrying``, ``failed``, ``cancelled`` or ``ignored``)."""
        change = StatusChange.model_validate(detail)
        if change.status not in ENDED:
            return "ignored"
        allowed = {arn.strip() for arn in self.settings.state_machine_target_arns.split(",") if arn.strip()}
        if change.state_machine_arn not in allowed:
            logger.warning("event of a state machine not in StateMachineTargetArns ignored", extra={"execution": change.execution_arn})
            return "ignored"
        end = self._end_of(change)
        job = self._job_of(end.input)
        if job is None or job.status is not JobStatus.ACTIVE or job.lease_token != change.name:
            logger.info("end of an execution that is not a job's current attempt ignored", extra={"execution": change.execution_arn})
            return "ignored"
        target = self.store.get_target(job.queue, job.type)
        permanent = target.permanent_errors if isinstance(target, StateMachineTarget) else []
        try:
            outcome, written = self._ending(job, end, permanent, token=change.name)
            self.transitions.apply(written, queues.directory().get(job.queue))
        except Conflict:
            # Changed meanwhile: a cancel requested after we read it wins; anything else (a second delivery) is done.
            current = self.store.get(job.user_id, job.job_id)
            if current is None or current.status is not JobStatus.ACTIVE or current.lease_token != change.name or not current.cancel_requested:
                return "ignored"
            outcome, written = "cancelled", self._cancel(current, change.name)
            self.transitions.apply(written, queues.directory().get(job.queue))
        logger.info("execution ended; job updated", extra={"job_id": job.job_id, "execution": change.execution_arn, "status": change.status, "outcome": outcome})
        return outcome

    def _end_of(self, change: StatusChange) -> state_machines.ExecutionEnd:
        """The execution's input and output: from the event, or read back when the event left them out (past 256 KB)."""
        end = state_machines.ExecutionEnd(
            status=change.status,
            input=state_machines.json_of(change.input),
            output=state_machines.json_of(change.output),
            error=change.error,
            cause=change.cause,
        )
        left_out = (change.input_details or {}).get("included") is False or (change.output_details or {}).get("included") is False
        if left_out or end.input is None:
            read = self.describe(change.execution_arn)
            end = state_machines.ExecutionEnd(change.status, read.input, read.output, change.error or read.error, change.cause or read.cause)
        return end

    def _job_of(self, execution_input: Any) -> Job | None:
        if not isinstance(execution_input, dict):
            return None
        user_id, job_id = execution_input.get("userId"), execution_input.get("jobId")
        if not isinstance(user_id, str) or not isinstance(job_id, str):
            return None
        return self.store.get(user_id, job_id)

    def _ending(self, job: Job, end: state_machines.ExecutionEnd, permanent: list[str], *, token: str) -> tuple[str, Change]:
        now = self.clock()
        policy = policies.get_policy(queues.directory().get(job.queue))
        took = self._took(job, now)
        if job.cancel_requested:
            return "cancelled", self._cancel(job, token)
        if end.status == "SUCCEEDED":
            problem = _result_problem(end.output, self.settings.max_result_bytes)
            if problem is None:
                return "completed", lifecycle.complete(job, token=token, result=end.output, processing_ms=took, now=now, policy=policy)
            error, retried = problem, False
        else:
            error = f"execution {end.status.lower().replace('_', ' ')}" + (f": {end.error}" if end.error else "") + (f" ({end.cause})" if end.cause else "")
            retried = end.error not in permanent
        if not retried or job.attempts >= job.max_attempts:
            return "failed", lifecycle.fail(job, token=token, error=error, now=now, policy=policy, processing_ms=took)
        wait = backoff_seconds(job.backoff, job.attempts, cap_seconds=self.settings.backoff_cap_seconds)
        return "retrying", lifecycle.retry_later(job, token=token, error=error, wait_seconds=wait, processing_ms=took, now=now)

    def _cancel(self, job: Job, token: str) -> Change:
        return lifecycle.end_for_cancel(job, token=token, now=self.clock(), policy=policies.get_policy(queues.directory().get(job.queue)))

    @staticmethod
    def _took(job: Job, now: int) -> int:
        try:
            return max(0, now - parse_iso(job.started_at)) if job.started_at else 0
        except (ValueError, JobqError):
            return 0


def _result_problem(result: Any, limit: int) -> str | None:
    reason = strict_json.problem(result, "result")
    if reason:
        return f"the execution's output is not strict JSON: {reason}"
    size = len(strict_json.dumps(result).encode())
    return f"the execution's output is {size} bytes; the limit is {limit}" if size > limit else None
