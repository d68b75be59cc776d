"""The local stack's /_local/ controls (infra/local/control.py) and direct access to its moto, for the
scheduling and maintenance integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx

from shared.adapters.job_repository import to_item
from shared.models import Job
from tests.integration.conftest import STACK_NAME, LocalStackProcess


def aws(stack: LocalStackProcess, service: str) -> Any:
    return boto3.client(
        service, endpoint_url=stack.aws_endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def schedule_names(stack: LocalStackProcess) -> list[str]:
    return sorted(s["Name"] for s in aws(stack, "scheduler").list_schedules(GroupName=STACK_NAME)["Schedules"])


def put_job(stack: LocalStackProcess, job: Job) -> None:
    """A job item written straight into the table (a crash left it so), never enqueued."""
    table = f"{STACK_NAME}-JobsTable"
    aws(stack, "dynamodb").put_item(TableName=table, Item=to_item(job))


def control(stack: LocalStackProcess, path: str, body: dict[str, Any] | None = None) -> Any:
    response = httpx.post(f"{stack.api_url}/_local/{path}", json=body or {}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@contextmanager
def clock_moved(stack: LocalStackProcess, seconds: float) -> Iterator[None]:
    """Move the local stack's clock forward, and back to real time afterwards."""
    control(stack, "clock", {"advanceSeconds": seconds})
    try:
        yield
    finally:
        control(stack, "clock", {"offsetSeconds": 0})


def wait_until(predicate: Callable[[], object], *, timeout: float, interval: float = 0.3) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(interval)
