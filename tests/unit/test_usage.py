"""Each attempt records what it used and cost, and a job shows it (GET /jobs/{id})."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from api.main import handler as api_handler
from functions.consumer.handler import handler
from shared.adapters import queues
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.jobs import Identity, JobService
from shared.models import HttpTarget
from shared.usage import PRICE_PER_GB_SECOND_USD, PRICE_PER_REQUEST_USD
from tests.target_server import TargetServer
from tests.unit.api_events import http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event

ADMIN = Identity("root", is_admin=True)
ALICE = Identity("alice")


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def test_every_attempt_shows_its_duration_memory_and_lambda_cost(stack: Stack, target: TargetServer) -> None:
    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    jobs.targets.put("email-sending", "slow", HttpTarget(url=f"{target.url}/fail-times/1", timeout_seconds=2), ADMIN)
    job, _ = jobs.create(JobCreate(queue="email-sending", type="slow", data={}, options={"attempts": 2, "backoff": {"type": "fixed", "delay": 0}}), ALICE)
    other, _ = jobs.create(JobCreate(queue="email-sending", type="slow", data={}, options={"attempts": 1}), ALICE)

    handler(sqs_event(stack, "email-sending", stack.receive("email-sending")), FakeLambdaContext())  # a batch of two: 1st attempts
    handler(sqs_event(stack, "email-sending", stack.receive("email-sending")), FakeLambdaContext())  # the retry, alone

    response = api_handler(http_event("GET", f"/jobs/{job.job_id}", claims=user("alice")), FakeLambdaContext())
    shown = json.loads(response["body"])["data"]
    assert shown["status"] == "completed" and [h["outcome"] for h in shown["history"]] == ["retrying", "completed"]
    first, second = (h["usage"] for h in shown["history"])
    for usage in (first, second):
        assert usage["memorySizeMb"] == FakeLambdaContext.memory_limit_in_mb and usage["peakMemoryMb"] > 0 and usage["durationMs"] >= 0
    def nano(duration_ms: int, share: int) -> int:
        return round((duration_ms / 1000 * 256 / 1024 * PRICE_PER_GB_SECOND_USD + PRICE_PER_REQUEST_USD / share) * 1e9)

    assert first["costNanoUsd"] == nano(first["durationMs"], 2)  # the batch of two shared one request
    assert second["costNanoUsd"] == nano(second["durationMs"], 1)
    assert stack.store.require("alice", other.job_id).history[0].usage is not None
