"""Step Functions targets: a job type starts a state machine's execution and ends with it.

The consumer's real handler, store and SQS (moto), the real state_machines adapter and boto3
client pointed (as in the local stack) at infra/local/state_machines.py through
AWS_ENDPOINT_URL_SFN; the end events it emits are fed to the ExecutionEventsFunction's handler.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions import composition
from functions.consumer.handler import handler as consumer_handler
from functions.executions.handler import handler as executions_handler
from infra.local.state_machines import LocalStateMachines, state_machine_arn
from shared.adapters import queues
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.clock import now_ms
from shared.errors import Invalid
from shared.health import HealthSweep
from shared.jobs import Identity, JobService
from shared.models import StateMachineTarget
from shared.settings import get_settings
from shared.status import JobStatus
from tests.unit.conftest import FakeLambdaContext, Stack, arrange, sqs_event

ADMIN = Identity("root", is_admin=True)
ALICE = Identity("alice")
ECHO = state_machine_arn("jobq-local-sfn-echo", "us-east-1")
FAIL_FIRST = state_machine_arn("jobq-local-sfn-fail-first", "us-east-1")
REJECT = state_machine_arn("jobq-local-sfn-reject", "us-east-1")
WAIT = state_machine_arn("jobq-local-sfn-wait", "us-east-1")
BIG = state_machine_arn("jobq-test-big-output", "us-east-1")
EVENTS = Path(__file__).resolve().parents[2] / "events"


def big_output(execution_input: dict[str, Any], stopped: threading.Event) -> dict[str, Any]:
    return {"rows": ["x" * 100] * 300}  # 30 KB: past the inline result threshold


class Executions:
    """The local Step Functions API and the end events it sent, in order."""

    def __init__(self, api: LocalStateMachines) -> None:
        self.api = api
        self.events: list[dict[str, Any]] = []
        self._ready = threading.Condition()
        api.on_end = self._heard

    def _heard(self, event: dict[str, Any]) -> None:
        with self._ready:
            self.events.append(event)
            self._ready.notify_all()

    def next_event(self, timeout: float = 10) -> dict[str, Any]:
        with self._ready:
            assert self._ready.wait_for(lambda: self.events, timeout), "no execution ended"
            return self.events.pop(0)


@pytest.fixture
def executions(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Executions]:
    api = LocalStateMachines(region="us-east-1")
    api.bind("jobq-test-big-output", "tests.unit.test_state_machine_targets:big_output")
    api.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", api.url)
    monkeypatch.setenv("JOBQ_STATE_MACHINE_TARGET_ARNS", ",".join(api.arns()))
    get_settings.cache_clear()
    composition.execution_ends.cache_clear()
    from shared.adapters import clients

    clients.reset()
    yield Executions(api)
    api.stop()
    composition.execution_ends.cache_clear()


def service(stack: Stack) -> JobService:
    return JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), get_settings())


def add_job(stack: Stack, machine: str, *, data: dict[str, Any] | None = None, options: dict[str, Any] | None = None, **target: Any) -> str:
    jobs = service(stack)
    jobs.targets.put("email-sending", "fulfil-order", StateMachineTarget(state_machine_arn=machine, **target), ADMIN)
    job, _ = jobs.create(JobCreate(queue="email-sending", type="fulfil-order", data=data or {"order": 1}, options=options or {}), ALICE)
    return job.job_id


def deliver(stack: Stack) -> dict[str, Any]:
    messages = stack.receive("email-sending")
    assert messages, "expected a message on the queue"
    return consumer_handler(sqs_event(stack, "email-sending", messages), FakeLambdaContext())


def end(event: dict[str, Any]) -> str:
    return str(executions_handler(event, FakeLambdaContext())["outcome"])


def test_a_state_machine_job_stays_active_after_its_consumer_returns_and_completes_from_the_end_event(
    stack: Stack, executions: Executions
) -> None:
    job_id = add_job(stack, ECHO, data={"order": 42}, timeout_seconds=7200)

    assert deliver(stack) == {"batchItemFailures": []}  # the message is acknowledged: nothing polls the execution

    waiting = stack.store.require("alice", job_id)
    assert waiting.status is JobStatus.ACTIVE and waiting.attempts == 1
    assert waiting.lease_until is not None and waiting.lease_until >= now_ms() + 7200 * 1000  # the target's timeout, and a margin
    event = executions.next_event()
    assert event["detail"]["name"] == waiting.lease_token and json.loads(event["detail"]["input"])["jobId"] == job_id

    assert end(event) == "completed"

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.COMPLETED and job.result == {"echo": {"order": 42}, "attempt": 1}
    assert job.history[-1].outcome == "completed"


def test_a_long_execution_is_not_marked_stalled_by_the_health_sweep(stack: Stack, executions: Executions) -> None:
    job_id = add_job(stack, WAIT, data={"seconds": 30})
    deliver(stack)

    recovery = HealthSweep(stack.store, queues.directory(), stack.settings).recover_stalled(stack.queues["email-sending"])

    assert recovery.stalled_retried == 0
    assert stack.store.require("alice", job_id).status is JobStatus.ACTIVE


def test_a_failed_execution_is_retried_with_backoff_and_the_next_execution_completes_the_job(stack: Stack, executions: Executions) -> None:
    job_id = add_job(stack, FAIL_FIRST, data={"failTimes": 1}, options={"attempts": 3, "backoff": {"type": "fixed", "delay": 1000}})
    deliver(stack)

    assert end(executions.next_event()) == "retrying"

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.DELAYED and job.error and "States.TaskFailed" in job.error
    time.sleep(1.1)
    deliver(stack)  # the wake-up the retry sent: a second attempt, a second execution
    assert end(executions.next_event()) == "completed"
    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.COMPLETED and job.attempts == 2 and job.result == {"succeededOnExecution": 2}


def test_an_execution_error_the_target_names_permanent_fails_the_job_at_once(stack: Stack, executions: Executions) -> None:
    job_id = add_job(stack, REJECT, options={"attempts": 5}, permanent_errors=["InvalidInput"])
    deliver(stack)

    assert end(executions.next_event()) == "failed"

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1 and job.error and "InvalidInput" in job.error
    assert len(stack.receive("email-sending", dlq=True)) == 1


def test_cancelling_a_job_stops_its_execution_and_the_end_event_ends_it_cancelled(stack: Stack, executions: Executions) -> None:
    job_id = add_job(stack, WAIT, data={"seconds": 30})
    deliver(stack)

    assert service(stack).cancel(job_id, ALICE).cancel_requested

    event = executions.next_event(timeout=5)  # at once, not after the 30 s the execution would run
    assert event["detail"]["status"] == "ABORTED"
    assert end(event) == "cancelled"
    assert stack.store.require("alice", job_id).status is JobStatus.CANCELLED


def test_a_repeated_or_stale_end_event_changes_nothing(stack: Stack, executions: Executions) -> None:
    job_id = add_job(stack, ECHO)
    deliver(stack)
    event = executions.next_event()
    stale = json.loads(json.dumps(event))
    stale["detail"]["name"] = "0" * 32  # an execution of an earlier attempt
    stale["detail"]["status"] = "FAILED"

    assert end(stale) == "ignored"
    assert end(event) == "completed"
    assert end(event) == "ignored"  # EventBridge delivers at least once
    assert stack.store.require("alice", job_id).status is JobStatus.COMPLETED


def test_a_large_output_is_stored_apart_as_any_large_result(stack: Stack, executions: Executions) -> None:
    job_id = add_job(stack, BIG)
    deliver(stack)

    assert end(executions.next_event()) == "completed"

    job = stack.store.require("alice", job_id)
    assert job.result_ref is not None
    assert stack.store.with_payloads(job).result == {"rows": ["x" * 100] * 300}


def test_only_state_machines_in_state_machine_target_arns_can_be_registered_and_may_outlast_the_consumer(
    stack: Stack, executions: Executions
) -> None:
    other = state_machine_arn("someone-elses-machine", "us-east-1")
    with pytest.raises(Invalid, match="StateMachineTargetArns"):
        service(stack).targets.put("email-sending", "fulfil-order", StateMachineTarget(state_machine_arn=other), ADMIN)
    day = StateMachineTarget(state_machine_arn=ECHO, timeout_seconds=86400)  # far past the consumer's timeout

    assert service(stack).targets.put("email-sending", "fulfil-order", day, ADMIN) == day
    assert stack.store.get_target("email-sending", "fulfil-order") == day


def test_the_execution_status_change_event_sample_completes_its_job(stack: Stack, executions: Executions) -> None:
    event = json.loads((EVENTS / "eventbridge-execution-status-change.json").read_text())
    detail = event["detail"]
    service(stack).targets.put("email-sending", "fulfil-order", StateMachineTarget(state_machine_arn=detail["stateMachineArn"]), ADMIN)
    job, _ = service(stack).create(
        JobCreate(queue="email-sending", type="fulfil-order", data={"order": 42}, options={"jobId": "order-42"}), Identity("user-123")
    )
    arrange(stack, job, JobStatus.ACTIVE, {"attempts": 1, "lease_token": detail["name"], "lease_until": now_ms() + 3_600_000})

    assert end(event) == "completed"

    assert stack.store.require("user-123", "order-42").result == {"shipped": True, "order": 42}
