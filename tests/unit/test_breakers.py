"""Circuit breakers per target: the real consumer handler, store and SQS (moto), a real HTTP target on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions.consumer.handler import handler
from shared.adapters import queues
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.jobs import Identity, JobService
from shared.models import BreakerSettings, HttpTarget
from shared.status import JobStatus
from tests.target_server import TargetServer
from tests.unit.api_events import admin, http_event
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event

ADMIN = Identity("root", is_admin=True)
ALICE = Identity("alice")
BREAKER = BreakerSettings(failure_rate=0.5, minimum_attempts=3, window_seconds=60, cooldown_seconds=3)
RETRY_AT_ONCE = {"attempts": 5, "backoff": {"type": "fixed", "delay": 0}}


@pytest.fixture(autouse=True)
def short_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every consumer reads the breaker's state at each claim, and a manual hold lasts a second."""
    from shared import breakers

    monkeypatch.setenv("JOBQ_BREAKER_CACHE_SECONDS", "0")
    monkeypatch.setattr(breakers, "MANUAL_HOLD_SECONDS", 1)


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def jobs(stack: Stack) -> JobService:
    return JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)


def point(stack: Stack, target: TargetServer, path: str, breaker: BreakerSettings = BREAKER) -> None:
    """(Re-)register type "pay" at ``path``: the breaker belongs to the queue and type, so it stays."""
    jobs(stack).targets.put("email-sending", "pay", HttpTarget(url=f"{target.url}{path}", timeout_seconds=1, breaker=breaker), ADMIN)


def create(stack: Stack, count: int) -> list[str]:
    return [jobs(stack).create(JobCreate(queue="email-sending", type="pay", data={"n": n}, options=RETRY_AT_ONCE), ALICE)[0].job_id for n in range(count)]


def deliver(stack: Stack) -> dict[str, Any]:
    messages = stack.receive("email-sending")
    assert messages, "expected messages on the queue"
    return handler(sqs_event(stack, "email-sending", messages), FakeLambdaContext())


def call(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    from api.main import handler as api_handler

    response = api_handler(http_event(method, path, **kwargs), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def breaker(stack: Stack) -> dict[str, Any]:
    status, body = call("GET", "/queues/email-sending/breakers", claims=admin())
    assert status == 200, body
    (only,) = body["data"]
    return dict(only)


def test_a_breaker_opens_under_a_failing_target_and_holds_its_jobs_without_spending_attempts(
    stack: Stack, target: TargetServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # A cooldown longer than the batch takes on a loaded machine: no probe starts within it.
    point(stack, target, "/always/503", BREAKER.model_copy(update={"cooldown_seconds": 60}))
    ids = create(stack, 5)

    deliver(stack)

    attempts = sorted(stack.store.require("alice", job_id).attempts for job_id in ids)
    assert attempts == [0, 0, 1, 1, 1]  # three failures opened it; the other two were not claimed
    assert len(target.calls) == 3
    held = [stack.store.require("alice", job_id) for job_id in ids if stack.store.require("alice", job_id).attempts == 0]
    assert all(job.status is JobStatus.WAITING for job in held)
    state = breaker(stack)
    assert state["state"] == "open" and state["openUntil"] and "3 of 3 attempts failed" in state["reason"]
    assert '"BreakerOpened"' in capsys.readouterr().out  # the metric


def test_after_the_cooldown_one_probe_tests_the_target_and_its_success_closes_the_breaker(stack: Stack, target: TargetServer) -> None:
    point(stack, target, "/always/503")
    ids = create(stack, 5)
    deliver(stack)
    assert breaker(stack)["state"] == "open"
    point(stack, target, "/ok")  # the target recovers
    time.sleep(3.2)  # the cooldown, and the held messages' visibility

    deliver(stack)

    assert breaker(stack)["state"] == "closed" and breaker(stack)["reason"] == "the probe succeeded"
    finished = [stack.store.require("alice", job_id) for job_id in ids]
    assert all(job.status is JobStatus.COMPLETED for job in finished)
    assert sorted(job.attempts for job in finished) == [1, 1, 2, 2, 2]  # the held jobs spent no attempt while open


def test_a_failed_probe_opens_the_breaker_again(stack: Stack, target: TargetServer) -> None:
    point(stack, target, "/always/503")
    ids = create(stack, 5)
    deliver(stack)
    time.sleep(3.2)

    deliver(stack)

    state = breaker(stack)
    assert state["state"] == "open" and state["reason"].startswith("the probe failed")
    assert len(target.calls) == 4  # three that opened it, one probe
    assert sum(stack.store.require("alice", job_id).attempts for job_id in ids) == 4


def test_an_admin_opens_a_breaker_by_hand_and_its_jobs_wait_until_it_is_closed(stack: Stack, target: TargetServer) -> None:
    point(stack, target, "/ok")
    assert call("POST", "/queues/email-sending/breakers/pay/open", claims={"sub": "alice"})[0] == 403
    status, body = call("POST", "/queues/email-sending/breakers/pay/open", claims=admin())
    assert status == 200 and body["data"]["state"] == "open" and body["data"]["manual"] is True
    (job_id,) = create(stack, 1)

    response = deliver(stack)

    assert len(response["batchItemFailures"]) == 1
    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.WAITING and job.attempts == 0 and target.calls == []
    status, body = call("POST", "/queues/email-sending/breakers/pay/close", claims=admin())
    assert status == 200 and body["data"]["state"] == "closed"
    time.sleep(1.1)  # the manual hold's visibility (shortened here)
    deliver(stack)
    assert stack.store.require("alice", job_id).status is JobStatus.COMPLETED


def test_a_target_without_a_breaker_never_holds_a_job(stack: Stack, target: TargetServer) -> None:
    jobs(stack).targets.put("email-sending", "plain", HttpTarget(url=f"{target.url}/always/503", timeout_seconds=1), ADMIN)
    ids = [jobs(stack).create(JobCreate(queue="email-sending", type="plain", data={}, options=RETRY_AT_ONCE), ALICE)[0].job_id for _ in range(5)]

    deliver(stack)

    assert all(stack.store.require("alice", job_id).attempts == 1 for job_id in ids)
    assert call("GET", "/queues/email-sending/breakers", claims=admin())[1]["data"] == []


def test_forcing_a_breaker_of_a_type_without_one_is_a_404(stack: Stack, target: TargetServer) -> None:
    status, body = call("POST", "/queues/email-sending/breakers/send-email/open", claims=admin())
    assert status == 404 and "no target with a circuit breaker" in body["error"]["message"]


def test_a_breakers_reads_and_writes_stay_within_the_consumers_policy(stack: Stack, target: TargetServer) -> None:
    from infra.local.provision import Provisioner
    from tests.unit.conftest import ROOT, STACK
    from tests.unit.test_least_privilege import PARAMETERS, DynamoCalls, _allowed, _denied, _statements_of

    consumer = Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, PARAMETERS).nested["EmailSendingQueue"].resources["ConsumerFunction"]
    point(stack, target, "/always/503")
    create(stack, 5)

    with DynamoCalls() as calls:
        deliver(stack)

    assert any(keys == ["BREAKER#email-sending#pay"] for _, keys in calls.calls)
    assert _denied(calls, consumer) == []
    assert not _allowed(list(_statements_of(consumer)), "UpdateItem", ["BREAKER#video-processing#pay"])  # not another queue's


def test_an_open_breaker_shows_in_the_queues_health_and_health_detailed(stack: Stack, target: TargetServer) -> None:
    from functions.health.handler import handler as health_handler
    from shared.adapters import policies
    from tests.unit.test_health_function import EVENT, detailed

    policies.reset_cache()
    point(stack, target, "/ok")
    call("POST", "/queues/email-sending/breakers/pay/open", claims=admin())

    report = health_handler(EVENT, FakeLambdaContext(remaining_ms=120_000))

    email = report["queues"]["email-sending"]
    assert email["status"] == "warning" and email["breakers"] == {"pay": "open"}
    assert any(r.startswith("the circuit breaker of pay is open: opened by root") for r in email["reasons"])
    assert any("circuit breaker of pay" in r for r in detailed()[1]["data"]["reasons"])
