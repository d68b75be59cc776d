"""Lambda targets: a job type invokes a function; the local stack's Lambda API serves Invoke for stand-ins.

The consumer's real handler, store and SQS (moto), and the real lambda adapter and boto3 client,
pointed (as in the local stack) at infra/local/lambda_api.py through AWS_ENDPOINT_URL_LAMBDA.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions.consumer.handler import handler
from infra.local.esm import MappingRegistry
from infra.local.functions import LocalFunctions, function_arn
from infra.local.lambda_api import LambdaApi
from shared.adapters import lambda_functions, queues
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.errors import Invalid
from shared.jobs import Identity, JobService
from shared.models import LambdaTarget
from shared.settings import get_settings
from shared.status import JobStatus
from tests.unit.api_events import admin, http_event
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event

ADMIN = Identity("root", is_admin=True)
ALICE = Identity("alice")
ECHO = function_arn("jobq-local-echo", "us-east-1")
FAIL_FIRST = function_arn("jobq-local-fail-first", "us-east-1")
REJECT = function_arn("jobq-local-reject", "us-east-1")
UNDEPLOYED = function_arn("jobq-local-not-deployed", "us-east-1")


@pytest.fixture
def lambda_api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaApi]:
    api = LambdaApi(MappingRegistry(), functions=LocalFunctions({})).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", api.url)
    monkeypatch.setenv("JOBQ_LAMBDA_TARGET_ARNS", ",".join([*api.functions.arns("us-east-1"), UNDEPLOYED]))
    get_settings.cache_clear()
    lambda_functions.reset()
    yield api
    api.stop()
    lambda_functions.reset()


def service(stack: Stack) -> JobService:
    return JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), get_settings())


def add_job(stack: Stack, function: str, *, data: dict[str, Any] | None = None, options: dict[str, Any] | None = None, **target: Any) -> str:
    jobs = service(stack)
    jobs.targets.put("email-sending", "thumbnail", LambdaTarget(function_arn=function, timeout_seconds=5, **target), ADMIN)
    job, _ = jobs.create(JobCreate(queue="email-sending", type="thumbnail", data=data or {"n": 1}, options=options or {}), ALICE)
    return job.job_id


def deliver(stack: Stack) -> dict[str, Any]:
    messages = stack.receive("email-sending")
    assert messages, "expected a message on the queue"
    return handler(sqs_event(stack, "email-sending", messages), FakeLambdaContext())


def test_a_lambda_target_job_completes_with_what_the_function_returned(stack: Stack, lambda_api: LambdaApi) -> None:
    job_id = add_job(stack, ECHO, data={"image": "cat.png"})

    assert deliver(stack) == {"batchItemFailures": []}

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.COMPLETED and job.attempts == 1
    assert job.result == {"echo": {"image": "cat.png"}, "attempt": 1, "jobId": job_id}
    assert lambda_api.invocations == 1


def test_a_function_error_is_retried_with_the_jobs_backoff(stack: Stack, lambda_api: LambdaApi) -> None:
    job_id = add_job(stack, FAIL_FIRST, data={"failTimes": 1}, options={"attempts": 3, "backoff": {"type": "fixed", "delay": 1000}})

    first = deliver(stack)

    assert len(first["batchItemFailures"]) == 1
    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.DELAYED
    assert job.error and "raised RuntimeError: failing on purpose" in job.error
    time.sleep(1.1)
    deliver(stack)
    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.COMPLETED and job.attempts == 2 and job.result == {"succeededOnCall": 2}


def test_an_error_type_the_target_names_permanent_fails_the_job_at_once(stack: Stack, lambda_api: LambdaApi) -> None:
    job_id = add_job(stack, REJECT, options={"attempts": 5}, permanent_errors=["InvalidInput"])

    assert deliver(stack) == {"batchItemFailures": []}

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1
    assert job.error and "InvalidInput" in job.error
    assert len(stack.receive("email-sending", dlq=True)) == 1


def test_an_error_type_not_named_permanent_is_retried(stack: Stack, lambda_api: LambdaApi) -> None:
    job_id = add_job(stack, REJECT, options={"attempts": 5}, permanent_errors=["SomethingElse"])

    assert len(deliver(stack)["batchItemFailures"]) == 1
    assert stack.store.require("alice", job_id).status is JobStatus.DELAYED


def test_a_function_that_cannot_be_invoked_is_retried_not_failed(stack: Stack, lambda_api: LambdaApi) -> None:
    job_id = add_job(stack, UNDEPLOYED, options={"attempts": 3})

    assert len(deliver(stack)["batchItemFailures"]) == 1

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.DELAYED and job.error and "could not be invoked" in job.error


def test_a_function_removed_from_the_stack_list_fails_its_jobs_at_once(stack: Stack, lambda_api: LambdaApi, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = add_job(stack, ECHO, options={"attempts": 3})
    monkeypatch.setenv("JOBQ_LAMBDA_TARGET_ARNS", FAIL_FIRST)
    get_settings.cache_clear()

    deliver(stack)

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.FAILED and job.error and "LambdaTargetArns" in job.error
    assert lambda_api.invocations == 0


def test_only_functions_in_lambda_target_arns_can_be_registered(stack: Stack, lambda_api: LambdaApi) -> None:
    other = function_arn("someone-elses-function", "us-east-1")
    with pytest.raises(Invalid, match="LambdaTargetArns"):
        service(stack).targets.put("email-sending", "thumbnail", LambdaTarget(function_arn=other), ADMIN)
    assert stack.store.get_target("email-sending", "thumbnail") is None


def call(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    from api.main import handler as api_handler

    response = api_handler(http_event(method, path, **kwargs), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def test_registering_a_lambda_target_through_the_api_needs_admin_and_shows_in_the_queue(stack: Stack, lambda_api: LambdaApi) -> None:
    target = {"kind": "lambda", "functionArn": ECHO, "timeoutSeconds": 10, "permanentErrors": ["InvalidInput"]}
    assert call("PUT", "/queues/email-sending/processors/thumbnail", body=target, claims={"sub": "alice"})[0] == 403

    status, body = call("PUT", "/queues/email-sending/processors/thumbnail", body=target, claims=admin())

    assert status == 200 and body["data"] == target
    status, body = call("GET", "/queues/email-sending", claims=admin())
    assert status == 200
    assert body["data"]["configuration"]["processors"]["functions"] == {"thumbnail": target}
    status, body = call("PUT", "/queues/email-sending/processors/x", body={**target, "functionArn": "not-an-arn"}, claims=admin())
    assert status == 400 and body["success"] is False
    status, body = call("PUT", "/queues/email-sending/processors/x", body={**target, "permanentErrors": ["no spaces"]}, claims=admin())
    assert status == 400
