"""Every file in events/ fed to its handler, as `sam local invoke -e` would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.main import handler as api_handler
from functions.consumer.handler import handler as consumer_handler
from shared.adapters import counters, queues
from shared.client_models import JobCreate
from shared.jobs import Identity, JobService
from shared.status import JobStatus
from tests.unit.conftest import FakeLambdaContext, Stack
from tests.unit.scheduling import Scheduling, scheduling_fixture  # noqa: F401 (the fixture)
from tests.unit.stream_feed import StreamFeed

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def create(stack: Stack, job_id: str, user_id: str) -> None:
    from shared.catalog import ProcessorCatalog

    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    request = JobCreate(
        queue="email-sending", type="send-email", data={"to": "a@example.com", "subject": "Hi", "body": "Hello"}, options={"jobId": job_id}
    )
    jobs.create(request, Identity(user_id))


def test_every_event_file_has_a_test() -> None:
    assert sorted(p.name for p in EVENTS.glob("*.json")) == [
        "api-create-job.json",
        "api-get-job.json",
        "api-health.json",
        "dynamodb-stream-jobs.json",
        "eventbridge-cleanup.json",
        "eventbridge-execution-status-change.json",  # tests/unit/test_state_machine_targets.py
        "eventbridge-health.json",
        "scheduler-firing.json",
        "sqs-email-sending.json",
        "sqs-webhook-delivery.json",  # tests/unit/test_webhooks.py
        # fed to the live-events handlers in tests/unit/test_realtime.py
        "websocket-connect.json",
        "websocket-disconnect.json",
        "websocket-subscribe.json",
    ]


def test_sqs_email_sending_event_completes_its_jobs(stack: Stack) -> None:
    event = load("sqs-email-sending.json")
    job_ids = [json.loads(r["body"])["jobId"] for r in event["Records"]]
    for job_id in job_ids:
        create(stack, job_id, "user-123")

    assert consumer_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}

    for job_id in job_ids:
        job = stack.store.require("user-123", job_id)
        assert job.status is JobStatus.COMPLETED
        assert job.result["to"] == "a@example.com" and job.result["messageId"]


def test_api_create_job_event_creates_a_job(stack: Stack) -> None:
    response = api_handler(load("api-create-job.json"), FakeLambdaContext())

    assert response["statusCode"] == 201
    job = json.loads(response["body"])["data"]
    assert job["userId"] == "user-123" and job["status"] == "waiting"
    assert stack.store.require("user-123", job["jobId"]).type == "send-email"


def test_api_get_job_event_returns_the_job(stack: Stack) -> None:
    create(stack, "job-123", "user-123")

    response = api_handler(load("api-get-job.json"), FakeLambdaContext())

    assert response["statusCode"] == 200
    assert json.loads(response["body"])["data"]["jobId"] == "job-123"


def test_api_health_event_answers_healthy(stack: Stack) -> None:
    from api.routes import health

    health._cached = None
    response = api_handler(load("api-health.json"), FakeLambdaContext())

    assert response["statusCode"] == 200
    assert json.loads(response["body"])["status"] == "healthy"  # seed 000: no envelope


def test_scheduler_firing_event_creates_the_firings_job(scheduling: Scheduling) -> None:
    from functions.scheduler.handler import handler as scheduler_handler
    from shared.schedules import ScheduleCreate

    event = load("scheduler-firing.json")
    scheduling.schedules.create(
        ScheduleCreate(name="nightly-report", queue="report-generation", type="generate-report",
                       data={"reportType": "daily", "rows": [{"day": "2026-11-23", "total": 42}]}, cron="0 2 * * *", timezone="America/New_York"),
        Identity("root", is_admin=True),
    )

    result = scheduler_handler(event, FakeLambdaContext())

    assert result["outcome"] == "created"
    job = scheduling.stack.store.require("root", result["jobId"])
    assert job.queue == "report-generation" and job.status is JobStatus.WAITING


def test_eventbridge_cleanup_event_runs_the_retention(scheduling: Scheduling) -> None:
    from functions.cleanup.handler import handler as cleanup_handler

    result = cleanup_handler(load("eventbridge-cleanup.json"), FakeLambdaContext())
    assert result["incomplete"] is False and result["errors"] == {} and result["totalRemoved"] == 0


def test_eventbridge_health_event_checks_every_queue(scheduling: Scheduling) -> None:
    from functions.health.handler import handler as health_handler

    result = health_handler(load("eventbridge-health.json"), FakeLambdaContext())
    assert result["status"] == "healthy"
    assert set(result["queues"]) == {"email-sending", "report-generation", "video-processing"}


def test_dynamodb_stream_event_updates_the_queue_counters_once(stack: Stack) -> None:
    from functions.events.handler import handler as events_handler

    event = load("dynamodb-stream-jobs.json")

    events_handler(event, FakeLambdaContext())
    events_handler(event, FakeLambdaContext())  # Lambda retries a batch as it was: counted once

    counts = counters.read_counts("email-sending")
    assert (counts["waiting"], counts["completed"], counts["total"]) == (1, 1, 1)
    minute = counters.read_buckets("email-sending", since_ms=1795485600000 - 60_000, resolution="minute", until_ms=1795485720000)
    assert sum(b.completed for b in minute) == 1


def test_with_enqueue_from_stream_the_api_sends_no_message_and_the_stream_enqueues_the_job(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.deps import job_service
    from api.main import handler as api_handler
    from shared.settings import get_settings
    from tests.unit.api_events import http_event, user

    monkeypatch.setenv("JOBQ_ENQUEUE_FROM_STREAM", "true")
    get_settings.cache_clear()
    job_service.cache_clear()
    feed = StreamFeed(stack.table_name)
    body = {"queue": "email-sending", "type": "send-email", "data": {"to": "a@example.com", "subject": "s", "body": "b"}, "options": {"jobId": "boxed"}}

    created = api_handler(http_event("POST", "/jobs", body=body, claims=user("ann")), FakeLambdaContext())

    assert created["statusCode"] == 201
    assert stack.receive("email-sending") == []  # the API wrote the job item only
    feed.deliver()
    (message,) = stack.receive("email-sending")
    assert json.loads(message["Body"])["jobId"] == "boxed" and json.loads(message["Body"])["userId"] == "ann"
    get_settings.cache_clear()
    job_service.cache_clear()
