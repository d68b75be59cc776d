"""Step Functions targets through the local stack: its Step Functions API runs stand-in state machines
(infra/local/state_machines.py) and sends their end events to the ExecutionEventsFunction."""

from __future__ import annotations

import time
from typing import Any

import boto3
import httpx
import pytest

from infra.local.issuer import read_stack_state
from tests.integration.conftest import LocalStackProcess, wait_for_status

pytestmark = pytest.mark.integration

STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:{name}"
RETRY_FAST = {"attempts": 3, "backoff": {"type": "fixed", "delay": 500}}


def step_functions(stack: LocalStackProcess) -> Any:
    """The local stack's Step Functions API (its stand-in executions)."""
    endpoint = (read_stack_state(stack.state_dir) or {})["stepFunctionsEndpoint"]
    return boto3.client(
        "stepfunctions", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def register(stack: LocalStackProcess, job_type: str, name: str, **extra: object) -> None:
    target = {"kind": "stepfunctions", "stateMachineArn": STATE_MACHINE.format(name=name), "timeoutSeconds": 60, **extra}
    with stack.client("root", admin=True) as admin:
        response = admin.put(f"/queues/email-sending/processors/{job_type}", json=target)
        assert response.status_code == 200, response.text


def create(client: httpx.Client, job_type: str, data: dict[str, object]) -> str:
    response = client.post("/jobs", json={"queue": "email-sending", "type": job_type, "data": data, "options": RETRY_FAST})
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["jobId"])


def test_a_state_machine_job_completes_from_its_executions_end_event_and_failures_retry_or_fail(local_stack: LocalStackProcess) -> None:
    register(local_stack, "sfn-echo", "jobq-local-sfn-echo")
    register(local_stack, "sfn-flaky", "jobq-local-sfn-fail-first")
    register(local_stack, "sfn-reject", "jobq-local-sfn-reject", permanentErrors=["InvalidInput"])
    with local_stack.client("alice") as alice:
        ids = {t: create(alice, t, d) for t, d in (("sfn-echo", {"k": "v"}), ("sfn-flaky", {"failTimes": 1}), ("sfn-reject", {}))}
        echo, flaky, reject = (wait_for_status(alice, ids[t], {"completed", "failed"}) for t in ("sfn-echo", "sfn-flaky", "sfn-reject"))

    assert echo["status"] == "completed" and echo["result"] == {"echo": {"k": "v"}, "attempt": 1}
    assert flaky["status"] == "completed" and flaky["attempts"] == 2 and flaky["result"] == {"succeededOnExecution": 2}
    assert "States.TaskFailed" in (flaky["history"][0]["error"] or "")
    assert reject["status"] == "failed" and reject["attempts"] == 1 and "InvalidInput" in reject["error"]


def test_a_state_machine_job_stays_active_while_its_execution_runs_and_cancelling_it_stops_the_execution(
    local_stack: LocalStackProcess,
) -> None:
    register(local_stack, "sfn-wait", "jobq-local-sfn-wait")
    with local_stack.client("alice") as alice:
        job_id = create(alice, "sfn-wait", {"seconds": 60})
        running = wait_for_status(alice, job_id, {"active"})
        time.sleep(1.5)  # the consumer returned long ago; the job is still active, waiting for its execution
        assert alice.get(f"/jobs/{job_id}").json()["data"]["status"] == "active"
        response = alice.delete(f"/jobs/{job_id}")
        assert response.status_code == 202 and response.json()["data"]["cancelRequested"] is True, response.text
        cancelled = wait_for_status(alice, job_id, {"cancelled", "completed", "failed"}, timeout=15)

    assert running["attempts"] == 1
    assert cancelled["status"] == "cancelled"
    executions = step_functions(local_stack).list_executions(stateMachineArn=STATE_MACHINE.format(name="jobq-local-sfn-wait"))["executions"]
    assert [e["status"] for e in executions] == ["ABORTED"]


def test_a_state_machine_outside_state_machine_target_arns_is_refused(local_stack: LocalStackProcess) -> None:
    with local_stack.client("root", admin=True) as admin:
        target = {"kind": "stepfunctions", "stateMachineArn": STATE_MACHINE.format(name="not-listed")}
        response = admin.put("/queues/email-sending/processors/sfn-other", json=target)
    assert response.status_code == 400 and "StateMachineTargetArns" in response.json()["error"]["message"]
