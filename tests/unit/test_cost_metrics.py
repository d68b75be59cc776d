"""Cost per job type and per user in the queue's metrics, and slow attempts in its health.

Jobs run through the real service, consumer and store (moto); the table's stream is fed to the
real EventsFunction, which adds each closed attempt's recorded usage (history[].usage) to the
metric buckets (per type) and to one item per user and hour.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from api.main import handler as api_handler
from functions.consumer.handler import handler as consumer
from shared import stats, stats_models
from shared.adapters import counters, policies, queues
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.clock import iso, now_ms
from shared.health import HealthSweep
from shared.jobs import Identity, JobService
from shared.models import HttpTarget
from tests.target_server import TargetServer
from tests.unit.api_events import admin, http_event
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event
from tests.unit.stream_feed import StreamFeed

QUEUE = "email-sending"


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def run_consumer(stack: Stack) -> None:
    while messages := stack.receive(QUEUE):
        consumer(sqs_event(stack, QUEUE, messages), FakeLambdaContext())


def metrics() -> dict[str, Any]:
    response = api_handler(http_event("GET", f"/queues/{QUEUE}/metrics", claims=admin()), FakeLambdaContext())
    assert response["statusCode"] == 200, response["body"]
    data: dict[str, Any] = json.loads(response["body"])["data"]
    return data


def test_the_queue_metrics_show_what_each_job_type_and_each_user_cost(stack: Stack, target: TargetServer) -> None:
    feed = StreamFeed(stack.table_name)
    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    jobs.targets.put(QUEUE, "resize", HttpTarget(url=f"{target.url}/ok"), Identity("root", is_admin=True))
    for user, job_type in (("alice", "resize"), ("alice", "resize"), ("bob", "resize"), ("bob", "send-email")):
        data = {"to": "a@example.com", "subject": "s", "body": "b"} if job_type == "send-email" else {"n": 1}
        jobs.create(JobCreate(queue=QUEUE, type=job_type, data=data), Identity(user))
    run_consumer(stack)
    feed.deliver()

    found = metrics()

    by_type, by_user = found["costByType"], found["costByUser"]
    assert set(by_type) == {"resize", "send-email"}
    assert by_type["resize"]["attempts"] == 3 and by_type["send-email"]["attempts"] == 1
    assert by_type["resize"]["costNanoUsd"] > 0 and by_type["resize"]["averageDurationMs"] is not None
    assert set(by_user) == {"alice", "bob"} and by_user["alice"]["attempts"] == 2 and by_user["bob"]["attempts"] == 2
    assert sum(u["costNanoUsd"] for u in by_user.values()) == sum(t["costNanoUsd"] for t in by_type.values())
    # what the jobs themselves recorded, added up
    recorded = sum(r.usage.cost_nano_usd for j in stack.store.page_by_queue(QUEUE, None, limit=10)[0] for r in j.history if r.usage)
    assert sum(t["costNanoUsd"] for t in by_type.values()) == recorded


def attempt_record(job_id: str, seq: int, duration_ms: int) -> dict[str, Any]:
    """The stream record of an attempt that completed after ``duration_ms`` (only what the buckets read)."""
    at = iso(now_ms())
    usage = {"M": {"durationMs": {"N": str(duration_ms)}, "costNanoUsd": {"N": "100"}}}
    record = {"M": {"attempt": {"N": "1"}, "startedAt": {"S": at}, "outcome": {"S": "completed"}, "usage": usage}}

    def image(status: str) -> dict[str, Any]:
        return {
            "pk": {"S": f"JOB#u1#{job_id}"}, "sk": {"S": "JOB"}, "queue": {"S": QUEUE}, "type": {"S": "render"},
            "userId": {"S": "u1"}, "status": {"S": status}, "updatedAt": {"S": at}, "completedAt": {"S": at},
            "processingTime": {"N": str(duration_ms)}, "history": {"L": [record]},
        }  # fmt: skip

    change = {
        "Keys": {"pk": {"S": f"JOB#u1#{job_id}"}, "sk": {"S": "JOB"}},
        "SequenceNumber": str(seq),
        "ApproximateCreationDateTime": now_ms() // 1000,
        "OldImage": image("active"),
        "NewImage": image("completed"),
    }
    return {"eventID": f"e-{job_id}-{seq}", "eventName": "MODIFY", "eventSource": "aws:dynamodb", "dynamodb": change}


def test_attempts_over_twice_their_types_average_are_counted_and_reported_in_the_queues_health(stack: Stack) -> None:
    policies.reset_cache()
    records = [attempt_record(f"j{i}", i, 100) for i in range(9)] + [attempt_record("slow", 99, 5000)]
    counters.apply_stream_records(records)

    health = HealthSweep(stack.store, queues.directory(), stack.settings).check_queue(stack.queues[QUEUE])

    assert health.slow_attempts == {"render": 1}
    assert health.status == "warning"
    assert any(r.startswith("1 attempts of render took over twice its average (590 ms)") for r in health.reasons)
    assert metrics()["costByType"]["render"] == {
        "attempts": 10, "costNanoUsd": 1000, "costUsd": 1e-06, "averageDurationMs": 590.0, "slowAttempts": 1,
    }  # fmt: skip


def test_a_type_whose_attempts_take_alike_has_no_slow_attempts() -> None:
    even = stats_models.TypeFigures(attempts=4, duration_sum_ms=4 * 120, histogram=tuple(4 if i == stats.histogram_bin(120) else 0 for i in range(stats_models.BINS)))

    assert even.slow_attempts() == 0 and stats_models.TypeFigures().slow_attempts() == 0
