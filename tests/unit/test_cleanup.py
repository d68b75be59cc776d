"""The CleanupFunction: each queue's retention (removeOnComplete / removeOnFail) by age and by count."""

from __future__ import annotations

import pytest

from functions.cleanup.handler import handler as cleanup_handler
from shared.adapters import policies, queues
from shared.adapters.reports import DynamoReportStore
from shared.clock import now_ms
from shared.models import QueueInfo, QueuePolicy, Retention
from shared.reports import read_last_cleanup_run
from shared.retention import Retention as Cleanup
from shared.retention import _Budget
from shared.status import JobStatus
from tests.unit.conftest import FakeLambdaContext, Stack, arrange
from tests.unit.scheduling import put_job
from tests.unit.stream_feed import StreamFeed

MINUTE = 60_000
DAY = 86_400_000
SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2030-01-01T00:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/jobq-CleanupFunctionRetention"],
    "detail": {},
}


@pytest.fixture
def retention(stack: Stack) -> Cleanup:
    policies.reset_cache()
    return Cleanup(stack.store, queues.directory(), stack.settings)


def retain(stack: Stack, *, complete: Retention | None = None, fail: Retention | None = None, queue: str = "email-sending") -> None:
    info = stack.queues[queue]
    policy = QueuePolicy.defaults_for(info)
    policy = policy.model_copy(update={k: v for k, v in (("remove_on_complete", complete), ("remove_on_fail", fail)) if v is not None})
    policies.put_policy(info, policy)


def finished(stack: Stack, status: JobStatus, count: int, *, age_ms: int = 0, queue: str = "email-sending") -> list[str]:
    """``count`` jobs finished ``age_ms`` ago, oldest first, one second apart."""
    base = now_ms() - age_ms - count * 1000
    return [put_job(stack, status, queue=queue, created_ms=base + i * 1000 - 5000, finished_ms=base + i * 1000).job_id for i in range(count)]


def existing(stack: Stack, ids: list[str]) -> list[str]:
    return [job_id for job_id in ids if stack.store.get("alice", job_id) is not None]


def test_retention_keeps_the_newest_n_completed_jobs(stack: Stack, retention: Cleanup) -> None:
    ids = finished(stack, JobStatus.COMPLETED, 5)
    retain(stack, complete=Retention(max_count=2))

    run = retention.clean()

    assert existing(stack, ids) == ids[-2:]
    assert run.removed["email-sending"]["completed"].by_count == 3 and run.total_removed == 3


def test_retention_removes_failed_jobs_older_than_the_max_age(stack: Stack, retention: Cleanup) -> None:
    old = finished(stack, JobStatus.FAILED, 2, age_ms=3 * DAY)
    recent = finished(stack, JobStatus.FAILED, 2, age_ms=MINUTE)
    retain(stack, fail=Retention(max_age_seconds=86400))

    run = retention.clean()

    assert existing(stack, old + recent) == recent
    assert run.removed["email-sending"]["failed"].by_age == 2


def test_age_counts_from_when_the_job_finished_not_when_it_was_created(stack: Stack, retention: Cleanup) -> None:
    job = put_job(stack, JobStatus.COMPLETED, created_ms=now_ms() - 5 * DAY, finished_ms=now_ms() - MINUTE)
    retain(stack, complete=Retention(max_age_seconds=86400))

    retention.clean()

    assert stack.store.get(job.user_id, job.job_id) is not None


def test_cancelled_jobs_follow_remove_on_fail_and_other_statuses_are_untouched(stack: Stack, retention: Cleanup) -> None:
    cancelled = finished(stack, JobStatus.CANCELLED, 3)
    waiting = [put_job(stack, JobStatus.WAITING, created_ms=now_ms() - 30 * DAY).job_id]
    completed = finished(stack, JobStatus.COMPLETED, 3)
    retain(stack, fail=Retention(max_count=1))

    retention.clean()

    assert existing(stack, cancelled) == cancelled[-1:]
    assert existing(stack, waiting + completed) == waiting + completed


def test_each_queue_keeps_its_own_retention(stack: Stack, retention: Cleanup) -> None:
    email = finished(stack, JobStatus.COMPLETED, 3)
    video = finished(stack, JobStatus.COMPLETED, 3, queue="video-processing")
    retain(stack, complete=Retention(max_count=0))

    retention.clean()

    assert existing(stack, email) == [] and existing(stack, video) == video


def test_a_job_retried_after_it_was_read_is_not_deleted(stack: Stack, retention: Cleanup) -> None:
    job = put_job(stack, JobStatus.FAILED, finished_ms=now_ms() - 3 * DAY)
    stale = stack.store.require(job.user_id, job.job_id)
    arrange(stack, stale, JobStatus.WAITING, {"attempts": 0})  # POST /jobs/{id}/retry meanwhile

    assert retention._delete([stale], _Budget(10, None)) == 0
    assert stack.store.require(job.user_id, job.job_id).status is JobStatus.WAITING


def test_a_run_stops_at_its_budget_and_says_so(stack: Stack, retention: Cleanup) -> None:
    ids = finished(stack, JobStatus.COMPLETED, 6)
    retain(stack, complete=Retention(max_count=0))

    run = retention.clean(max_deletes=4)

    assert run.incomplete and run.total_removed == 4
    assert existing(stack, ids) == ids[-2:]  # the oldest went first
    assert not retention.clean().incomplete and existing(stack, ids) == []


def test_counters_decide_whether_the_newest_n_are_read(stack: Stack, retention: Cleanup) -> None:
    feed = StreamFeed(stack.table_name)
    ids = finished(stack, JobStatus.COMPLETED, 4)
    feed.deliver()  # the EventsFunction counts them: 4 completed
    retain(stack, complete=Retention(max_count=3))

    retention.clean()
    feed.deliver()

    assert existing(stack, ids) == ids[1:]
    newest_first_reads: list[str] = []
    original = retention._page

    def spy(queue: QueueInfo, status: JobStatus, **kw: object) -> object:
        if kw.get("newest_first") and queue.name == "email-sending":
            newest_first_reads.append(status.value)
        return original(queue, status, **kw)  # type: ignore[arg-type]

    retention._page = spy  # type: ignore[method-assign,assignment]
    retention.clean()
    assert "completed" not in newest_first_reads  # the counters say 3 of at most 3: the newest 3 are not read


def test_the_cleanup_function_runs_on_the_rules_event_and_records_its_run(stack: Stack) -> None:
    ids = finished(stack, JobStatus.COMPLETED, 3)
    retain(stack, complete=Retention(max_count=1))

    result = cleanup_handler(SCHEDULED_EVENT, FakeLambdaContext(remaining_ms=900_000))

    assert result["totalRemoved"] == 2 and existing(stack, ids) == ids[-1:]
    last = read_last_cleanup_run(DynamoReportStore(stack.table_name))
    assert last is not None and last.total_removed == 2 and not last.incomplete
