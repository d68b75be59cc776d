"""Lambda targets through the local stack: its Lambda API serves Invoke for the stand-in functions."""

from __future__ import annotations

import pytest

from tests.integration.conftest import LocalStackProcess, wait_for_status

pytestmark = pytest.mark.integration

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:{name}"


def register(stack: LocalStackProcess, job_type: str, name: str, **extra: object) -> None:
    target = {"kind": "lambda", "functionArn": FUNCTION.format(name=name), "timeoutSeconds": 5, **extra}
    with stack.client("root", admin=True) as admin:
        response = admin.put(f"/queues/email-sending/processors/{job_type}", json=target)
        assert response.status_code == 200, response.text


def test_a_lambda_target_job_completes_retries_and_fails_permanently_as_configured(local_stack: LocalStackProcess) -> None:
    register(local_stack, "fn-echo", "jobq-local-echo")
    register(local_stack, "fn-flaky", "jobq-local-fail-first")
    register(local_stack, "fn-reject", "jobq-local-reject", permanentErrors=["InvalidInput"])
    retry_fast = {"attempts": 3, "backoff": {"type": "fixed", "delay": 500}}
    with local_stack.client("alice") as alice:
        ids = {}
        for job_type, data in (("fn-echo", {"k": "v"}), ("fn-flaky", {"failTimes": 1}), ("fn-reject", {})):
            response = alice.post("/jobs", json={"queue": "email-sending", "type": job_type, "data": data, "options": retry_fast})
            assert response.status_code == 201, response.text
            ids[job_type] = response.json()["data"]["jobId"]
        echo, flaky, reject = (wait_for_status(alice, ids[t], {"completed", "failed"}) for t in ("fn-echo", "fn-flaky", "fn-reject"))

    assert echo["status"] == "completed" and echo["result"]["echo"] == {"k": "v"}
    assert flaky["status"] == "completed" and flaky["attempts"] == 2 and flaky["result"] == {"succeededOnCall": 2}
    assert reject["status"] == "failed" and reject["attempts"] == 1 and "InvalidInput" in reject["error"]


def test_a_function_outside_lambda_target_arns_is_refused(local_stack: LocalStackProcess) -> None:
    with local_stack.client("root", admin=True) as admin:
        target = {"kind": "lambda", "functionArn": FUNCTION.format(name="not-listed")}
        response = admin.put("/queues/email-sending/processors/fn-other", json=target)
    assert response.status_code == 400 and "LambdaTargetArns" in response.json()["error"]["message"]
