"""The HealthFunction's work: stalled jobs recovered, orphans enqueued, queue health from the seed's thresholds."""

from __future__ import annotations

import json

import pytest

from shared.adapters import policies, queues
from shared.adapters.reports import DynamoReportStore
from shared.clock import now_ms
from shared.health import HealthSweep, assess
from shared.models import JobRef, QueuePolicy
from shared.reports import read_health
from shared.settings import Settings
from shared.status import JobStatus
from shared.worker import Delivery
from tests.unit.conftest import Stack
from tests.unit.scheduling import put_job

MINUTE = 60_000


@pytest.fixture
def sweep(stack: Stack) -> HealthSweep:
    policies.reset_cache()
    return HealthSweep(stack.store, queues.directory(), stack.settings)


def run_consumer(stack: Stack, queue: str = "email-sending", messages: list | None = None) -> None:
    info = stack.queues[queue]
    for message in stack.receive(queue) if messages is None else messages:
        delivery = Delivery(message_id=message["MessageId"], body=message["Body"], receipt_handle=message["ReceiptHandle"], queue=info)
        stack.worker().handle(delivery)


# ---- stalled jobs ---------------------------------------------------------------------------------
def test_a_stalled_job_is_re_enqueued_and_its_next_attempt_completes_it(stack: Stack, sweep: HealthSweep) -> None:
    job = put_job(stack, JobStatus.ACTIVE, attempts=1, max_attempts=3, lease_until=now_ms() - MINUTE, lease_token="dead-worker")

    recovery = sweep.recover_stalled(stack.queues["email-sending"])

    assert recovery.stalled_retried == 1
    stalled = stack.store.require(job.user_id, job.job_id)
    assert stalled.status is JobStatus.STALLED and stalled.lease_token is None
    assert stalled.history[-1].outcome == "stalled" and "lease expired" in (stalled.history[-1].error or "")
    run_consumer(stack)
    done = stack.store.require(job.user_id, job.job_id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    assert [h.outcome for h in done.history] == ["stalled", "completed"]


def test_a_stalled_job_out_of_attempts_fails_with_its_message_in_the_dlq(stack: Stack, sweep: HealthSweep) -> None:
    job = put_job(stack, JobStatus.ACTIVE, attempts=2, max_attempts=2, lease_until=now_ms() - MINUTE, lease_token="dead")

    recovery = sweep.recover_stalled(stack.queues["email-sending"])

    failed = stack.store.require(job.user_id, job.job_id)
    assert recovery.stalled_failed == 1 and failed.status is JobStatus.FAILED
    assert "final attempt" in (failed.error or "")
    (dead,) = stack.receive("email-sending", dlq=True)
    assert json.loads(dead["Body"])["jobId"] == job.job_id
    assert "lease expired" in dead["MessageAttributes"]["jobqFailureReason"]["StringValue"]
    assert stack.receive("email-sending") == []


def test_a_stalled_job_whose_cancel_was_requested_ends_cancelled(stack: Stack, sweep: HealthSweep) -> None:
    job = put_job(stack, JobStatus.ACTIVE, attempts=1, lease_until=now_ms() - MINUTE, lease_token="dead", cancel_requested=True)

    assert sweep.recover_stalled(stack.queues["email-sending"]).stalled_cancelled == 1
    assert stack.store.require(job.user_id, job.job_id).status is JobStatus.CANCELLED


def test_a_running_job_within_its_lease_is_left_alone(stack: Stack, sweep: HealthSweep) -> None:
    job = put_job(stack, JobStatus.ACTIVE, attempts=1, lease_until=now_ms() + 10 * MINUTE, lease_token="alive")

    assert sweep.recover_stalled(stack.queues["email-sending"]).stalled_retried == 0
    assert stack.store.require(job.user_id, job.job_id).status is JobStatus.ACTIVE
    assert stack.receive("email-sending") == []


def test_a_stalled_job_whose_wake_up_was_lost_is_sent_again(stack: Stack, sweep: HealthSweep) -> None:
    job = put_job(stack, JobStatus.STALLED, attempts=1, updated_ms=now_ms() - 10 * MINUTE)

    assert sweep.recover_stalled(stack.queues["email-sending"]).stalled_resent == 1
    (message,) = stack.receive("email-sending")
    assert json.loads(message["Body"]) == {"jobId": job.job_id, "userId": job.user_id, "queue": "email-sending", "group": None}


def test_a_wake_up_the_sweep_sends_carries_the_jobs_route_so_keep_last_if_active_holds(stack: Stack, sweep: HealthSweep) -> None:
    # Without the keepLastIfActive key in the message, a queue without groups would claim the job unread,
    # beside the active job of the same key.
    job = put_job(stack, JobStatus.WAITING, created_ms=now_ms() - 10 * MINUTE, exclusive_key="k-digest", group="acme", priority=5)

    assert sweep.wake_orphans(stack.queues["email-sending"]) == (1, 0)
    (message,) = stack.receive("email-sending")
    body = json.loads(message["Body"])
    assert (body["jobId"], body["exclusive"], body["group"], body["priority"]) == (job.job_id, "k-digest", "acme", 5)
    assert queues.exclusive_of_body(message["Body"]) == "k-digest"


# ---- orphans ------------------------------------------------------------------------------------------
def test_a_job_stored_but_never_enqueued_is_enqueued_once(stack: Stack, sweep: HealthSweep) -> None:
    orphan = put_job(stack, JobStatus.WAITING, created_ms=now_ms() - 10 * MINUTE)
    fresh = put_job(stack, JobStatus.WAITING)  # its message may be on its way: within the grace
    queue = stack.queues["email-sending"]

    assert sweep.wake_orphans(queue) == (1, 0)
    assert sweep.wake_orphans(queue) == (0, 0)  # not again on the next run

    (message,) = stack.receive("email-sending")
    assert json.loads(message["Body"])["jobId"] == orphan.job_id != fresh.job_id
    run_consumer(stack, messages=[message])
    assert stack.store.require(orphan.user_id, orphan.job_id).status is JobStatus.COMPLETED


def test_an_orphan_older_than_a_runs_page_is_woken_on_a_later_run(stack: Stack) -> None:
    # A run reads one page of the queue's entries (here 2 x SCAN_FACTOR = 10); the next goes on from there.
    settings = stack.settings.replace(maintenance_batch=2)
    sweep = HealthSweep(stack.store, queues.directory(), settings)
    orphan = put_job(stack, JobStatus.WAITING, created_ms=now_ms() - 30 * MINUTE)
    for i in range(40):  # newer, finished: a run that always began at the newest would never reach the orphan
        put_job(stack, JobStatus.COMPLETED, created_ms=now_ms() - 20 * MINUTE + i * 1000)
    queue = stack.queues["email-sending"]

    woken = [sweep.wake_orphans(queue)[0] for _ in range(8)]

    assert sum(woken) == 1, woken
    (message,) = stack.receive("email-sending")
    assert json.loads(message["Body"])["jobId"] == orphan.job_id


def test_a_stalled_job_older_than_a_runs_pages_is_recovered_on_a_later_run(stack: Stack) -> None:
    # A run reads at most 20 pages (here 5 entries each); the next run goes on where it stopped.
    settings = stack.settings.replace(maintenance_batch=1)
    sweep = HealthSweep(stack.store, queues.directory(), settings)
    stalled = put_job(stack, JobStatus.ACTIVE, created_ms=now_ms() - 30 * MINUTE, attempts=1, lease_until=now_ms() - MINUTE, lease_token="dead")
    for i in range(130):
        put_job(stack, JobStatus.COMPLETED, created_ms=now_ms() - 20 * MINUTE + i * 1000)
    queue = stack.queues["email-sending"]

    retried = [sweep.recover_stalled(queue).stalled_retried for _ in range(3)]

    assert sum(retried) == 1, retried
    assert stack.store.require(stalled.user_id, stalled.job_id).status is JobStatus.STALLED


def test_a_delayed_job_long_overdue_is_woken(stack: Stack, sweep: HealthSweep) -> None:
    from shared.clock import iso

    overdue = put_job(stack, JobStatus.DELAYED, created_ms=now_ms() - 60 * MINUTE, run_at=iso(now_ms() - 30 * MINUTE), delay=30 * MINUTE)
    put_job(stack, JobStatus.DELAYED, created_ms=now_ms() - MINUTE, run_at=iso(now_ms() + 60 * MINUTE), delay=61 * MINUTE)

    assert sweep.wake_orphans(stack.queues["email-sending"]) == (0, 1)
    (message,) = stack.receive("email-sending")
    assert json.loads(message["Body"])["jobId"] == overdue.job_id


def test_a_paused_queue_is_not_swept(stack: Stack, sweep: HealthSweep) -> None:
    queue = stack.queues["email-sending"]
    policies.put_policy(queue, QueuePolicy.defaults_for(queue).model_copy(update={"paused": True}))
    put_job(stack, JobStatus.WAITING, created_ms=now_ms() - 10 * MINUTE)

    health = sweep.check_queue(queue)

    assert health.recovery.orphans_enqueued == 0 and health.paused
    assert stack.receive("email-sending") == []


# ---- health ------------------------------------------------------------------------------------------
SETTINGS = Settings(table_name="jobq-test", queues_parameter_path="/jobq/test/queues/")


@pytest.mark.parametrize(
    ("facts", "status", "reason"),
    [
        ({}, "healthy", None),
        ({"failure_rate": 0.25, "finished_last_hour": 40}, "error", "failure rate 25%"),
        ({"failure_rate": 0.5, "finished_last_hour": 4}, "healthy", None),  # too few to judge
        ({"waiting": 150}, "warning", "150 jobs waiting"),
        ({"dlq_depth": 3}, "warning", "dead-letter queue holds 3 messages"),
        ({"oldest_waiting_age_ms": 10 * MINUTE}, "warning", "has waited 10 min"),
        ({"oldest_waiting_age_ms": 45 * MINUTE}, "error", "has waited 45 min"),
        ({"stalled": 2}, "warning", "2 stalled jobs"),
        ({"waiting": 500, "oldest_waiting_age_ms": 90 * MINUTE, "paused": True}, "healthy", None),
    ],
)
def test_health_follows_the_seeds_thresholds(facts: dict, status: str, reason: str | None) -> None:
    given = {"waiting": 0, "failure_rate": 0.0, "finished_last_hour": 0, "dlq_depth": 0, "oldest_waiting_age_ms": None, "stalled": 0,
             "paused": False, **facts}
    found, reasons = assess(settings=SETTINGS, **given)
    assert found == status
    assert (reason is None and reasons == []) or any(reason in r for r in reasons)


def test_a_queue_with_dead_letters_is_stored_as_warning(stack: Stack, sweep: HealthSweep, capsys: pytest.CaptureFixture[str]) -> None:
    queue = stack.queues["email-sending"]
    queues.send_to_dead_letters(queue, queues.message_body(JobRef("alice", "x"), "email-sending"), reason="boom")

    health = sweep.check_queue(queue)

    assert health.status == "warning" and health.dlq_depth == 1
    stored = read_health(DynamoReportStore(stack.table_name), "email-sending")
    assert stored is not None and stored.status == "warning" and stored.reasons == health.reasons
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert any(m.get("queue") == "email-sending" and m.get("QueueHealth") == [1.0] and m.get("DeadLetterDepth") == [1.0] for m in metrics)


def test_a_health_run_covers_every_queue(stack: Stack, sweep: HealthSweep) -> None:
    run = sweep.check_health()

    assert sorted(run.queues) == sorted(stack.queues) and run.status == "healthy" and run.errors == {}
