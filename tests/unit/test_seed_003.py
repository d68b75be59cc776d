"""Seed 003 (a NestJS service registry): generic tasks run a registered service method.

``executeServiceMethod('Data Export', 'ExportService', 'exportResults', [results, 'csv', {includeHeaders: true}])``
is ``POST /jobs {"service": "ExportService", "method": "exportResults", "args": [...]}`` (or the
same under ``data`` with ``type: generic-task``); only what shared/catalog.py's SERVICES lists runs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.main import handler
from functions.consumer.handler import handler as consumer
from shared import catalog
from shared.adapters import clients
from shared.status import JobStatus
from tests.unit.api_events import http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event

QUEUE = "report-generation"  # the queue whose consumer runs generic-task
OWNER = "user_456"
RESULTS = [{"name": "Downtown Restaurant", "rating": 4.5}, {"name": "Uptown Diner", "rating": 4.1}]


def call(method: str, path: str, *, body: Any = None, owner: str = OWNER) -> tuple[int, Any]:
    response = handler(http_event(method, path, body=body, claims=user(owner)), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def run_consumer(stack: Stack) -> None:
    while messages := stack.receive(QUEUE):
        consumer(sqs_event(stack, QUEUE, messages), FakeLambdaContext())


def test_a_registered_service_method_runs_as_a_job(stack: Stack) -> None:
    body = {"service": "ExportService", "method": "exportResults", "args": [RESULTS, "csv", {"includeHeaders": True}], "name": "Data Export"}

    status, created = call("POST", "/jobs", body={**body, "options": {"attempts": 1}})

    assert status == 201, created
    job = created["data"]
    assert job["queue"] == QUEUE and job["type"] == "generic-task" and job["data"]["service"] == "ExportService"
    run_consumer(stack)
    done = call("GET", f"/jobs/{job['jobId']}")[1]["data"]
    assert done["status"] == "completed" and done["result"]["rows"] == 2 and done["result"]["format"] == "csv"
    csv_text = clients.client("s3").get_object(Bucket=done["result"]["bucket"], Key=done["result"]["key"])["Body"].read().decode()
    assert csv_text.splitlines() == ["name,rating", "Downtown Restaurant,4.5", "Uptown Diner,4.1"]


def test_the_same_task_under_data_with_its_type(stack: Stack) -> None:
    status, created = call(
        "POST", "/jobs", body={"queue": QUEUE, "type": "generic-task", "data": {"service": "TaskUtils", "method": "calculateSum", "args": [[1, 2, 3.5]]}}
    )
    assert status == 201, created
    run_consumer(stack)
    assert call("GET", f"/jobs/{created['data']['jobId']}")[1]["data"]["result"] == 6.5


def test_an_unknown_service_or_method_is_a_400_listing_what_is_registered(stack: Stack) -> None:
    status, body = call("POST", "/jobs", body={"service": "BillingService", "method": "charge", "args": []})
    assert status == 400
    message = body["error"]["message"]
    assert "service 'BillingService' is not registered" in message and "ExportService: exportResults" in message
    assert "TaskUtils: calculateSum, delay, processData" in message

    status, body = call("POST", "/jobs", body={"service": "ExportService", "method": "exportToCSV", "args": []})
    assert status == 400 and "method 'exportToCSV' of ExportService is not registered" in body["error"]["message"]
    assert stack.receive(QUEUE) == []  # nothing was enqueued


def test_a_task_with_wrong_fields_is_a_400_naming_them(stack: Stack) -> None:
    status, body = call("POST", "/jobs", body={"queue": QUEUE, "type": "generic-task", "data": {"service": 5, "args": "x", "extra": 1}})

    assert status == 400
    message = body["error"]["message"]
    assert "data.service: Input should be a valid string" in message and "data.method: Field required" in message
    assert "data.args: Input should be a valid list" in message and "data.extra: Extra inputs are not permitted" in message
    assert stack.receive(QUEUE) == []


def test_registering_a_service_is_one_line(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(catalog.SERVICES, "MathService", ("processors.services:TaskUtils", ("calculateSum",)))
    status, created = call("POST", "/jobs", body={"service": "MathService", "method": "calculateSum", "args": [[2, 2]]})
    assert status == 201, created
    run_consumer(stack)
    assert call("GET", f"/jobs/{created['data']['jobId']}")[1]["data"]["result"] == 4


def test_arguments_that_do_not_fit_the_method_fail_the_job_without_retries(stack: Stack) -> None:
    status, created = call("POST", "/jobs", body={"service": "TaskUtils", "method": "calculateSum", "args": [1, 2, 3], "options": {"attempts": 3}})
    assert status == 201
    run_consumer(stack)
    job = stack.store.require(OWNER, created["data"]["jobId"])
    assert job.status is JobStatus.FAILED and job.attempts == 1 and "calculateSum" in (job.error or "")


def test_a_task_that_reports_progress_gets_the_job(stack: Stack) -> None:
    status, created = call("POST", "/jobs", body={"service": "TaskUtils", "method": "delay", "args": [10]})
    assert status == 201, created
    run_consumer(stack)
    done = call("GET", f"/jobs/{created['data']['jobId']}")[1]["data"]
    assert done["status"] == "completed" and done["result"] == {"waited": 10} and done["progress"] == 100
