"""The queue admin API through its Lambda entry (Mangum), on moto, with the real consumer and store.

Pausing goes through boto3's real Lambda call to the local stack's Lambda API emulation
(AWS_ENDPOINT_URL_LAMBDA), which flips the emulated mapping: the same path as on AWS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from api.main import handler
from api.routes.queues import queue_service
from functions.consumer.handler import handler as consumer
from infra.local.esm import EventSourceMapping, MappingRegistry
from infra.local.lambda_api import LambdaApi
from infra.local.provision import EventSourceMappingSpec, FunctionSpec
from shared import stats
from shared.adapters import clients, counters, policies
from shared.clock import iso, now_ms, parse_iso
from shared.errors import Conflict, Unavailable
from shared.models import QueuePolicy
from shared.status import JobStatus
from tests.target_server import TargetServer
from tests.unit.api_events import admin, http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack, arrange, sqs_event
from tests.unit.stream_feed import StreamFeed

QUEUE = "email-sending"


@pytest.fixture(autouse=True)
def fresh_policy_cache() -> Iterator[None]:
    policies.reset_cache()
    yield
    policies.reset_cache()


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


@pytest.fixture
def feed(stack: Stack) -> StreamFeed:
    return StreamFeed(stack.table_name)


@pytest.fixture
def mappings(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[MappingRegistry]:
    """One emulated consumer mapping per queue (not polling), behind the Lambda API emulation."""
    with emulated_mappings(stack, monkeypatch) as registry:
        yield registry


@contextmanager
def emulated_mappings(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[MappingRegistry]:
    registry = MappingRegistry()
    for name, info in stack.queues.items():
        fn = FunctionSpec(name, f"jobq-{name}-consumer", f"arn:aws:lambda:us-east-1:123456789012:function:jobq-{name}", "x.y", 30, 256, {}, {}, "jobq")
        spec = EventSourceMappingSpec(info.event_source_mapping_id, "ConsumerFunctionJobs", fn, info.queue_arn, 10, 0, 2, True, True)
        registry.add(EventSourceMapping(spec, lambda e, c: None, queue_url=info.queue_url, endpoint_url="http://127.0.0.1:9", name=name))
    api = LambdaApi(registry).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", api.url)
    clients.reset()
    yield registry
    api.stop()
    clients.reset()


def call(method: str, path: str, *, claims: dict[str, str] | None = None, body: Any = None, query: str = "") -> tuple[int, dict[str, Any]]:
    response = handler(http_event(method, path, body=body, claims=claims or admin(), query=query), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def send_email(**options: Any) -> dict[str, Any]:
    return {"queue": QUEUE, "type": "send-email", "data": {"to": "a@example.com", "subject": "s", "body": "b"}, "options": options}


def create(body: dict[str, Any]) -> dict[str, Any]:
    status, out = call("POST", "/jobs", body=body, claims=user("alice"))
    assert status == 201, out
    return dict(out["data"])


def run_consumer(stack: Stack, queue: str = QUEUE) -> None:
    while messages := stack.receive(queue):
        consumer(sqs_event(stack, queue, messages), FakeLambdaContext())


def register(target: TargetServer, job_type: str, path: str) -> None:
    status, out = call("PUT", f"/queues/{QUEUE}/processors/{job_type}", body={"kind": "http", "url": f"{target.url}{path}", "timeoutSeconds": 2})
    assert status == 200, out


# ---- who may ------------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/queues", None),
    ("GET", f"/queues/{QUEUE}", None),
    ("PATCH", f"/queues/{QUEUE}", {"defaultAttempts": 2}),
    ("PATCH", f"/queues/{QUEUE}", {"defaultAttempts": "not a number"}),
    ("GET", f"/queues/{QUEUE}/jobs", None),
    ("POST", f"/queues/{QUEUE}/pause", None),
    ("POST", f"/queues/{QUEUE}/resume", None),
    ("POST", f"/queues/{QUEUE}/clean", {"olderThan": 0, "status": "completed"}),
    ("GET", f"/queues/{QUEUE}/metrics", None),
    ("GET", f"/queues/{QUEUE}/dead-letters", None),
    ("POST", f"/queues/{QUEUE}/dead-letters/redrive", {}),
    ("DELETE", f"/queues/{QUEUE}/dead-letters", None),
    ("GET", "/queues/no-such-queue", None),
]


def test_a_user_who_is_not_admin_gets_403_on_every_queue_route(aws_env: None) -> None:
    # Decided before the body is read and before any AWS call (no stack needed).
    for method, path, body in ROUTES:
        status, out = call(method, path, body=body, claims=user("alice"))
        assert (status, out["error"]["code"]) == (403, "FORBIDDEN"), (method, path, body)


def test_an_unknown_queue_is_a_404_naming_the_queues(stack: Stack) -> None:
    status, out = call("GET", "/queues/no-such-queue")
    assert status == 404
    assert out["error"]["message"] == "queue 'no-such-queue' not found; queues: email-sending, report-generation, video-processing"


# ---- live stats -----------------------------------------------------------------------------------------


def test_the_queue_list_shows_live_stats_depths_and_configuration(stack: Stack, feed: StreamFeed) -> None:
    create(send_email())
    create(send_email())
    feed.deliver()

    status, out = call("GET", "/queues")

    assert status == 200
    by_name = {q["name"]: q for q in out["data"]}
    assert sorted(by_name) == ["email-sending", "report-generation", "video-processing"]
    email = by_name[QUEUE]
    assert email["liveStats"] == {"waiting": 2, "active": 0, "delayed": 0, "completed": 0, "failed": 0, "cancelled": 0, "stalled": 0, "waiting-children": 0, "total": 2}
    assert email["isActive"] is True and email["paused"] is False
    assert email["queueDepth"]["visible"] == 2 and email["dlqDepth"] == 0
    assert email["healthStatus"] == "healthy" and email["oldestWaitingAge"] is not None
    assert email["processingRate"] == 0 and email["averageProcessingTime"] is None and email["lastProcessedAt"] is None
    config = email["configuration"]
    assert config["defaultAttempts"] == 5 and config["defaultBackoff"] == {"type": "exponential", "delay": 1000}
    assert config["batchSize"] == 10 and config["maxConcurrency"] == 10 and config["maxReceiveCount"] == 25
    assert config["processors"] == {"code": ["publish", "send-email"], "http": {}, "functions": {}}
    assert by_name["video-processing"]["configuration"]["defaultBackoff"] == {"type": "fixed", "delay": 30000}


def test_processed_jobs_show_in_rate_times_and_last_processed(stack: Stack, feed: StreamFeed) -> None:
    created = create(send_email())
    run_consumer(stack)
    feed.deliver()

    _, out = call("GET", f"/queues/{QUEUE}")

    queue = out["data"]
    job = call("GET", f"/jobs/{created['jobId']}", query="userId=alice")[1]["data"]
    assert queue["liveStats"]["completed"] == 1 and queue["liveStats"]["total"] == 1
    assert queue["processingRate"] == pytest.approx(1 / 60, abs=0.001)
    assert queue["averageProcessingTime"] == job["processingTime"]
    assert queue["lastProcessedAt"] == job["completedAt"]


def test_the_queue_jobs_are_listed_by_status_newest_first(stack: Stack) -> None:
    first, second = create(send_email()), create(send_email())
    create(send_email(delay=60_000))

    status, out = call("GET", f"/queues/{QUEUE}/jobs", query="status=waiting&limit=10")

    assert status == 200
    assert [j["jobId"] for j in out["data"]["jobs"]] == [second["jobId"], first["jobId"]]
    assert call("GET", f"/queues/{QUEUE}/jobs", query="status=nope")[0] == 400


# ---- runtime policy ---------------------------------------------------------------------------------------


def test_patch_changes_the_defaults_of_new_jobs_at_once(stack: Stack) -> None:
    status, out = call("PATCH", f"/queues/{QUEUE}", body={"defaultAttempts": 7, "defaultBackoff": {"type": "fixed", "delay": 500}})

    assert status == 200
    assert out["data"]["defaultAttempts"] == 7 and out["data"]["defaultBackoff"] == {"type": "fixed", "delay": 500}
    job = create(send_email())
    assert job["maxAttempts"] == 7 and job["backoff"] == {"type": "fixed", "delay": 500}
    assert create(send_email(attempts=2))["maxAttempts"] == 2  # a job's own options still win
    assert call("GET", f"/queues/{QUEUE}")[1]["data"]["configuration"]["defaultAttempts"] == 7
    assert create({**send_email(), "queue": "report-generation", "type": "generate-report"})["maxAttempts"] == 3


def test_patch_sets_retention_and_keeps_what_it_does_not_name(stack: Stack) -> None:
    call("PATCH", f"/queues/{QUEUE}", body={"defaultAttempts": 4})

    status, out = call("PATCH", f"/queues/{QUEUE}", body={"removeOnComplete": {"maxAgeSeconds": 3600, "maxCount": 100}})

    assert status == 200
    assert out["data"]["retention"]["removeOnComplete"] == {"maxAgeSeconds": 3600, "maxCount": 100}
    assert out["data"]["removeOnComplete"] == 100  # seed 000: keep the newest N
    assert out["data"]["defaultAttempts"] == 4
    policy = policies.get_policy(stack.queues[QUEUE])
    assert policy.remove_on_complete.max_count == 100 and policy.remove_on_fail.max_age_seconds == 14 * 86400


PATCH_REJECTED = [
    ({}, 400),
    ({"paused": True}, 400),
    ({"defaultAttempts": 0}, 400),
    ({"defaultAttempts": 21}, 400),
    ({"defaultBackoff": {"type": "linear", "delay": 1}}, 400),
    ({"removeOnComplete": {"maxAgeSeconds": 5}}, 400),
    ({"processors": {"hook": {"kind": "http", "url": "http://example.com/x"}}}, 400),
    ({"processors": {"bad type!": None}}, 400),
    ({"processors": {"send-email": None}}, 409),
    ({"processors": {"send-email": {"kind": "http", "url": "https://example.com/x"}}}, 409),
]


def test_patch_rejects_what_it_cannot_apply_and_changes_nothing(stack: Stack) -> None:
    for body, status in PATCH_REJECTED:
        got, out = call("PATCH", f"/queues/{QUEUE}", body=body)
        assert got == status, (body, out)
    configuration = call("GET", f"/queues/{QUEUE}")[1]["data"]["configuration"]
    assert configuration["defaultAttempts"] == 5 and configuration["processors"]["http"] == {}


def test_patch_adds_and_removes_http_targets(stack: Stack) -> None:
    hook = {"kind": "http", "url": "https://worker.example.com/jobs", "timeoutSeconds": 5}
    status, out = call("PATCH", f"/queues/{QUEUE}", body={"processors": {"hook": hook}})
    assert status == 200 and out["data"]["processors"]["http"]["hook"].items() >= hook.items()
    create({**send_email(), "type": "hook"})

    status, out = call("PATCH", f"/queues/{QUEUE}", body={"processors": {"hook": None}})

    assert status == 200 and out["data"]["processors"]["http"] == {}
    assert call("POST", "/jobs", body={**send_email(), "type": "hook"}, claims=user("alice"))[0] == 400


def test_a_policy_change_reaches_other_containers_within_the_cache_time(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = stack.queues[QUEUE]
    assert policies.get_policy(queue).default_attempts == 5  # read and cached by this container
    changed = QueuePolicy.defaults_for(queue).model_copy(update={"default_attempts": 9})
    # Another container's write: straight to the table, this container's cache is not told.
    clients.client("dynamodb").put_item(
        TableName=stack.table_name,
        Item={"pk": {"S": f"QUEUE#{QUEUE}"}, "sk": {"S": "POLICY"}, "policy": {"S": changed.model_dump_json(by_alias=True)}, "version": {"N": "1"}},
    )

    assert policies.get_policy(queue).default_attempts == 5  # within policy_cache_seconds
    monkeypatch.setattr(stack.settings, "policy_cache_seconds", 0)  # ... and once it has passed
    assert policies.get_policy(queue).default_attempts == 9


def test_concurrent_policy_writes_do_not_lose_each_other(stack: Stack) -> None:
    queue = stack.queues[QUEUE]
    _, version = policies.read_policy(queue)
    policies.update_policy(queue, lambda p: p.model_copy(update={"default_attempts": 8}))

    with pytest.raises(Conflict):
        policies.put_policy(queue, QueuePolicy.defaults_for(queue), expected_version=version)
    assert policies.read_policy(queue)[0].default_attempts == 8


# ---- pause and resume ---------------------------------------------------------------------------------------


def test_pause_disables_the_consumer_mapping_and_resume_enables_it(stack: Stack, mappings: MappingRegistry) -> None:
    status, out = call("POST", f"/queues/{QUEUE}/pause")

    assert status == 200
    assert out["data"] == {"name": QUEUE, "paused": True, "isActive": False, "consumerState": "Disabled"}
    assert mappings[QUEUE].enabled is False and mappings["video-processing"].enabled is True
    queue = call("GET", f"/queues/{QUEUE}")[1]["data"]
    assert queue["isActive"] is False and queue["consumerState"] == "Disabled" and queue["configuration"]["paused"] is True
    create(send_email())  # a paused queue still accepts jobs
    assert call("POST", f"/queues/{QUEUE}/pause")[1]["data"]["paused"] is True  # pausing twice is fine

    status, out = call("POST", f"/queues/{QUEUE}/resume")

    assert status == 200 and out["data"] == {"name": QUEUE, "paused": False, "isActive": True, "consumerState": "Enabled"}
    assert mappings[QUEUE].enabled is True


def test_pause_fails_cleanly_when_the_mapping_cannot_be_switched(stack: Stack, mappings: MappingRegistry) -> None:
    unknown = stack.queues[QUEUE].model_copy(update={"event_source_mapping_id": "00000000-0000-0000-0000-000000000000"})

    with pytest.raises(Unavailable):
        queue_service()._switch(unknown, paused=True)

    assert mappings[QUEUE].enabled is True
    assert policies.get_policy(stack.queues[QUEUE]).paused is False


# ---- clean ---------------------------------------------------------------------------------------------------


def test_clean_removes_exactly_the_finished_jobs_older_than_the_cutoff(stack: Stack, feed: StreamFeed) -> None:
    done = [create(send_email())["jobId"] for _ in range(3)]
    run_consumer(stack)
    waiting = create(send_email())["jobId"]
    feed.deliver()

    assert call("POST", f"/queues/{QUEUE}/clean", body={"olderThan": 60_000, "status": "completed"})[1]["data"] == {
        "removed": 0, "jobIds": [], "hasMore": False,
    }
    status, first = call("POST", f"/queues/{QUEUE}/clean", body={"olderThan": 0, "status": "completed", "limit": 2})
    _, second = call("POST", f"/queues/{QUEUE}/clean", body={"olderThan": 0, "status": "completed", "limit": 10})

    assert status == 200
    assert first["data"]["removed"] == 2 and first["data"]["hasMore"] is True
    assert second["data"]["removed"] == 1 and second["data"]["hasMore"] is False
    assert sorted(first["data"]["jobIds"] + second["data"]["jobIds"]) == sorted(done)
    assert all(stack.store.get("alice", job_id) is None for job_id in done)
    assert stack.store.require("alice", waiting).status is JobStatus.WAITING
    feed.deliver()
    assert counters.read_counts(QUEUE) == {**dict.fromkeys(stats.COUNT_NAMES, 0), "waiting": 1, "total": 1}


def test_clean_validates_its_request(stack: Stack) -> None:
    for body in ({"olderThan": -1, "status": "completed"}, {"olderThan": 0, "status": "waiting"}, {"olderThan": 0, "status": "failed", "limit": 0}):
        assert call("POST", f"/queues/{QUEUE}/clean", body=body)[0] == 400


# ---- metrics ---------------------------------------------------------------------------------------------------


def test_metrics_are_a_series_of_the_buckets(stack: Stack, feed: StreamFeed) -> None:
    ids = [create(send_email())["jobId"], create(send_email())["jobId"]]
    run_consumer(stack)
    feed.deliver()
    minutes = [iso(stats.bucket_start(parse_iso(stack.store.require("alice", i).completed_at or ""), "minute")) for i in ids]

    status, out = call("GET", f"/queues/{QUEUE}/metrics", query="hours=1")

    assert status == 200
    data = out["data"]
    assert data["resolution"] == "minute" and len(data["points"]) == 60
    assert data["points"][-1]["timestamp"] == iso(stats.bucket_start(now_ms(), "minute"))
    by_minute = {p["timestamp"]: p for p in data["points"]}
    assert sum(by_minute[m]["completed"] for m in set(minutes)) == 2
    assert sum(p["completed"] for p in data["points"]) == 2 and sum(p["created"] for p in data["points"]) == 2
    assert data["totals"]["completed"] == 2 and data["totals"]["failureRate"] == 0.0
    assert data["totals"]["averageProcessingTime"] is not None and data["totals"]["p95ProcessingTime"] is not None

    _, day = call("GET", f"/queues/{QUEUE}/metrics", query="hours=24")
    assert day["data"]["resolution"] == "hour" and len(day["data"]["points"]) == 24
    assert sum(p["completed"] for p in day["data"]["points"]) == 2
    assert call("GET", f"/queues/{QUEUE}/metrics", query="hours=100&resolution=minute")[0] == 400
    assert call("GET", f"/queues/{QUEUE}/metrics", query="hours=0")[0] == 400


# ---- dead letters -------------------------------------------------------------------------------------------------


def fail_jobs(stack: Stack, target: TargetServer, count: int) -> list[str]:
    register(target, "flaky", "/always/500")
    ids = [create({**send_email(attempts=1), "type": "flaky"})["jobId"] for _ in range(count)]
    run_consumer(stack)
    assert all(stack.store.require("alice", i).status is JobStatus.FAILED for i in ids)
    return ids


def test_dead_letters_are_listed_with_their_jobs_and_stay_in_the_dlq(stack: Stack, target: TargetServer) -> None:
    (job_id,) = fail_jobs(stack, target, 1)

    status, out = call("GET", f"/queues/{QUEUE}/dead-letters")

    assert status == 200
    (letter,) = out["data"]["deadLetters"]
    assert letter["jobId"] == job_id and "500" in letter["reason"] and letter["sentAt"]
    assert letter["job"]["status"] == "failed" and letter["job"]["attempts"] == 1
    assert out["data"]["approximateTotal"] == 1
    assert len(call("GET", f"/queues/{QUEUE}/dead-letters")[1]["data"]["deadLetters"]) == 1  # listing took nothing


def test_redriving_listed_jobs_runs_them_again_with_fresh_attempts(stack: Stack, target: TargetServer) -> None:
    first, second = fail_jobs(stack, target, 2)
    register(target, "flaky", "/ok")

    status, out = call("POST", f"/queues/{QUEUE}/dead-letters/redrive", body={"jobIds": [first, "never-existed"]})

    assert status == 200
    assert out["data"]["redriven"] == [first] and out["data"]["notFound"] == ["never-existed"] and out["data"]["remaining"] == 1
    job = stack.store.require("alice", first)
    assert job.status is JobStatus.WAITING and job.attempts == 0 and job.error is None
    run_consumer(stack)
    job = stack.store.require("alice", first)
    assert job.status is JobStatus.COMPLETED and job.attempts == 1
    assert [h.outcome for h in job.history] == ["failed", "completed"]
    assert stack.store.require("alice", second).status is JobStatus.FAILED
    letters = call("GET", f"/queues/{QUEUE}/dead-letters")[1]["data"]["deadLetters"]
    assert [d["jobId"] for d in letters] == [second]


def test_redriving_everything_moves_failed_jobs_back_and_drops_stale_messages(stack: Stack, target: TargetServer) -> None:
    failed = fail_jobs(stack, target, 2)
    completed = create(send_email())["jobId"]
    run_consumer(stack)
    dlq = stack.queues[QUEUE].dlq_url
    sqs = clients.client("sqs")
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"jobId": completed, "userId": "alice", "queue": QUEUE}))
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"jobId": "gone", "userId": "alice", "queue": QUEUE}))

    status, out = call("POST", f"/queues/{QUEUE}/dead-letters/redrive")

    assert status == 200
    assert sorted(out["data"]["redriven"]) == sorted(failed)
    assert sorted(s["reason"] for s in out["data"]["skipped"]) == ["the job is completed", "the job no longer exists"]
    assert out["data"]["remaining"] == 0
    assert all(stack.store.require("alice", i).status is JobStatus.WAITING for i in failed)
    assert sorted(json.loads(m["Body"])["jobId"] for m in stack.receive(QUEUE)) == sorted(failed)


def test_purging_dead_letters_empties_the_dlq_and_fails_jobs_that_claim_to_run(stack: Stack, target: TargetServer) -> None:
    (failed,) = fail_jobs(stack, target, 1)
    crashed = create(send_email())["jobId"]
    job = stack.store.require("alice", crashed)
    arrange(stack, job, JobStatus.ACTIVE, {"attempts": 1, "lease_until": now_ms() - 1000, "lease_token": "t"})
    clients.client("sqs").send_message(QueueUrl=stack.queues[QUEUE].dlq_url, MessageBody=json.dumps({"jobId": crashed, "userId": "alice", "queue": QUEUE}))

    status, out = call("DELETE", f"/queues/{QUEUE}/dead-letters")

    assert status == 200
    assert out["data"] == {"purged": 2, "markedFailed": [crashed], "remaining": 0}
    assert stack.store.require("alice", crashed).status is JobStatus.FAILED
    assert "purged" in (stack.store.require("alice", crashed).error or "")
    assert stack.store.require("alice", failed).status is JobStatus.FAILED
    assert call("GET", f"/queues/{QUEUE}/dead-letters")[1]["data"]["deadLetters"] == []
