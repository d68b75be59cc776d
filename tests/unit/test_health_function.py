"""The HealthFunction on its rule's event, and GET /health/detailed with what it last found."""

from __future__ import annotations

import json
from typing import Any

from api.main import handler as api_handler
from functions import composition
from functions.health.handler import handler as health_handler
from shared.adapters import clients, policies, queues
from shared.clock import now_ms
from shared.models import JobRef
from shared.settings import get_settings
from shared.status import JobStatus
from tests.unit.api_events import admin, http_event, user
from tests.unit.conftest import STACK, FakeLambdaContext, Stack
from tests.unit.scheduling import Scheduling, put_job, scheduling_fixture  # noqa: F401 (the fixture)

EVENT = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2030-01-01T00:05:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/jobq-HealthFunctionHealth"],
    "detail": {},
}


def detailed(*, as_admin: bool = True) -> tuple[int, Any]:
    claims = admin() if as_admin else user("alice")
    response = api_handler(http_event("GET", "/health/detailed", claims=claims), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def test_the_health_function_recovers_and_reports_on_its_rules_event(stack: Stack) -> None:
    policies.reset_cache()
    stalled = put_job(stack, JobStatus.ACTIVE, attempts=1, lease_until=now_ms() - 60_000, lease_token="gone")
    orphan = put_job(stack, JobStatus.WAITING, created_ms=now_ms() - 600_000)

    report = health_handler(EVENT, FakeLambdaContext(remaining_ms=120_000))

    email = report["queues"]["email-sending"]
    assert email["recovery"]["stalledRetried"] == 1 and email["recovery"]["orphansEnqueued"] == 1
    assert email["status"] == "warning" and any("stalled" in r for r in email["reasons"])
    woken = sorted(json.loads(m["Body"])["jobId"] for m in stack.receive("email-sending"))
    assert woken == sorted([stalled.job_id, orphan.job_id])
    assert set(report["queues"]) == set(stack.queues)


def test_health_detailed_is_for_admins(scheduling: Scheduling) -> None:
    status, body = detailed(as_admin=False)
    assert status == 403 and body["error"]["code"] == "FORBIDDEN"


def test_health_detailed_before_the_first_run_says_so(scheduling: Scheduling) -> None:
    status, body = detailed()

    assert status == 200
    data = body["data"]
    assert data["status"] == "degraded" and "the HealthFunction has not reported yet" in data["reasons"]
    assert {name: check["status"] for name, check in data["checks"].items()} == {"dynamodb": "up", "sqs": "up", "scheduler": "up"}


def test_health_detailed_shows_each_queue_as_last_checked(scheduling: Scheduling, stack: Stack) -> None:
    policies.reset_cache()
    health_handler(EVENT, FakeLambdaContext())
    status, body = detailed()
    assert status == 200 and body["data"]["status"] == "healthy" and body["data"]["reasons"] == []
    assert set(body["data"]["queues"]) == set(stack.queues)
    assert body["data"]["maintenance"]["health"]["status"] == "healthy"

    queues.send_to_dead_letters(stack.queues["video-processing"], queues.message_body(JobRef("alice", "x"), "video-processing"), reason="boom")
    health_handler(EVENT, FakeLambdaContext())
    data = detailed()[1]["data"]
    assert data["status"] == "degraded" and data["queues"]["video-processing"]["status"] == "warning"
    assert data["reasons"] == ["video-processing: the dead-letter queue holds 1 message"]


def test_a_failed_schedule_firing_is_reported_by_the_health_sweep(scheduling: Scheduling, stack: Stack, monkeypatch: Any) -> None:
    """What Lambda leaves in the on-failure destination after three failed invocations shows in the health report."""
    sqs = clients.client("sqs")
    url = sqs.get_queue_url(QueueName=f"{STACK}-scheduler-failed-firings")["QueueUrl"]
    monkeypatch.setenv("JOBQ_SCHEDULE_DEAD_LETTERS_URL", url)
    get_settings.cache_clear()
    composition.health_sweep.cache_clear()
    policies.reset_cache()
    record = {"requestContext": {"condition": "RetriesExhausted"}, "requestPayload": {"jobq": "schedule-firing", "schedule": "nightly"}}
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))

    report = health_handler(EVENT, FakeLambdaContext())

    assert report["failedScheduleFirings"] == 1 and report["status"] == "warning"
    data = detailed()[1]["data"]
    assert data["status"] == "degraded"
    assert "scheduler: 1 schedule firing failed and wait in the failed-firings queue" in data["reasons"]
