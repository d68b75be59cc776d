"""Delayed jobs: up to 15 minutes an SQS delay, past that a one-time EventBridge Scheduler schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from shared.adapters import queues, scheduler
from shared.client_models import JobCreate
from shared.clock import now_ms, parse_iso
from shared.errors import Invalid, Unavailable
from shared.models import JobRef
from shared.settings import Settings
from shared.status import JobStatus
from tests.unit.conftest import Stack
from tests.unit.scheduling import ALICE, ROLE_ARN, Scheduling, scheduling_fixture  # noqa: F401 (the fixture)

EMAIL = {"to": "a@example.com", "subject": "Hi", "body": "Hello"}
MINUTE = 60_000


def request(**options: object) -> JobCreate:
    return JobCreate.model_validate({"queue": "email-sending", "type": "send-email", "data": EMAIL, "options": options})


def test_a_job_delayed_past_15_minutes_gets_a_one_time_schedule_that_sends_its_message(scheduling: Scheduling) -> None:
    job, created = scheduling.jobs.create(request(delay=20 * MINUTE), ALICE)

    assert created and job.status is JobStatus.DELAYED and job.delay == 20 * MINUTE
    schedule = scheduling.schedule(scheduler.delay_schedule_name(JobRef.of(job)))
    queue = scheduling.stack.queues["email-sending"]
    assert schedule["ScheduleExpression"] == scheduler.at_expression(parse_iso(job.run_at or ""))
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["Target"]["Arn"] == queue.queue_arn and schedule["Target"]["RoleArn"] == ROLE_ARN
    # the job's message, its group key (none) included: the consumer's flow gate needs no read
    assert json.loads(schedule["Target"]["Input"]) == {"jobId": job.job_id, "userId": "alice", "queue": "email-sending", "group": None}
    assert scheduling.stack.receive("email-sending") == []  # nothing on SQS until the schedule fires


def test_a_delay_of_15_minutes_or_less_stays_an_sqs_delay(scheduling: Scheduling) -> None:
    job, _ = scheduling.jobs.create(request(delay=15 * MINUTE), ALICE)

    assert job.status is JobStatus.DELAYED
    assert scheduling.schedule_names() == []
    attrs = queues.clients.client("sqs").get_queue_attributes(
        QueueUrl=scheduling.stack.queues["email-sending"].queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"


def test_run_at_is_a_delay_until_that_time(scheduling: Scheduling) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=5)
    later = datetime.now(UTC) + timedelta(hours=3)

    near, _ = scheduling.jobs.create(request(runAt=soon.isoformat()), ALICE)
    far, _ = scheduling.jobs.create(request(runAt=later.isoformat()), ALICE)

    assert near.status is JobStatus.DELAYED and abs(parse_iso(near.run_at or "") - int(soon.timestamp() * 1000)) < 1000
    assert far.status is JobStatus.DELAYED and scheduling.schedule_names() == [scheduler.delay_schedule_name(JobRef.of(far))]


def test_a_run_at_in_the_past_runs_now(scheduling: Scheduling) -> None:
    job, _ = scheduling.jobs.create(request(runAt="2020-01-01T00:00:00Z"), ALICE)

    assert job.status is JobStatus.WAITING and job.run_at is None
    assert len(scheduling.stack.receive("email-sending")) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": 1000, "runAt": "2030-01-01T00:00:00Z"}, "not both"),
        ({"runAt": "2999-01-01T00:00:00Z"}, "days ahead"),
        ({"delay": 400 * 86400 * 1000}, "at most"),
    ],
)
def test_impossible_delays_are_refused_with_what_is_wrong(options: dict, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        scheduler.resolve_delay(request(**options).options, now_ms(), Settings(table_name="t", queues_parameter_path="/q/"))


def test_a_run_at_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone offset"):
        request(runAt="2030-01-01T09:00:00")


def test_the_schedules_message_wakes_the_job_only_when_it_is_due(scheduling: Scheduling, stack: Stack) -> None:
    job, _ = scheduling.jobs.create(request(delay=30 * MINUTE), ALICE)
    body = scheduling.schedule(scheduler.delay_schedule_name(JobRef.of(job)))["Target"]["Input"]
    queue = stack.queues["email-sending"]

    # Scheduler delivers the Input to the queue when the schedule fires.
    queues.clients.client("sqs").send_message(QueueUrl=queue.queue_url, MessageBody=body)
    (message,) = stack.receive("email-sending")
    delivery = queues_delivery(message, queue)
    due = parse_iso(job.run_at or "")
    stack.worker(clock=lambda: due + 10).handle(delivery)

    done = stack.store.require(job.user_id, job.job_id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 1


def queues_delivery(message: dict, queue: object) -> object:
    from shared.worker import Delivery

    return Delivery(message_id=message["MessageId"], body=message["Body"], receipt_handle=message["ReceiptHandle"], queue=queue)  # type: ignore[arg-type]


def test_woken_early_the_job_goes_back_to_sleep(scheduling: Scheduling, stack: Stack) -> None:
    from shared.worker import RetryLater

    job, _ = scheduling.jobs.create(request(delay=30 * MINUTE), ALICE)
    queue = stack.queues["email-sending"]
    queues.send_job(queue, JobRef.of(job))
    (message,) = stack.receive("email-sending")

    with pytest.raises(RetryLater):
        stack.worker().handle(queues_delivery(message, queue))
    assert stack.store.require(job.user_id, job.job_id).status is JobStatus.DELAYED
    assert stack.receive("email-sending") == []  # asleep until runAt (30 minutes), not back at once


def test_cancelling_a_delayed_job_removes_its_schedule(scheduling: Scheduling) -> None:
    job, _ = scheduling.jobs.create(request(delay=2 * 3600_000), ALICE)
    assert scheduling.schedule_names() == [scheduler.delay_schedule_name(JobRef.of(job))]

    cancelled = scheduling.jobs.cancel(job.job_id, ALICE)

    assert cancelled.status is JobStatus.CANCELLED
    assert scheduling.schedule_names() == []
    assert scheduler.cancel_delayed(JobRef.of(job), settings=scheduling.jobs.settings) is False  # harmless when there is none (any more)


def test_when_scheduler_cannot_take_the_schedule_the_job_is_taken_back(scheduling: Scheduling, monkeypatch: pytest.MonkeyPatch) -> None:
    class Throttled:
        def create_schedule(self, **_: object) -> None:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "CreateSchedule")

    monkeypatch.setattr(scheduler, "_client", Throttled)
    with pytest.raises(Unavailable, match="ThrottlingException"):
        scheduling.jobs.create(request(delay=20 * MINUTE, jobId="not-kept"), ALICE)

    assert scheduling.stack.store.get("alice", "not-kept") is None


def test_creating_the_same_job_id_twice_schedules_once(scheduling: Scheduling) -> None:
    first, created = scheduling.jobs.create(request(delay=20 * MINUTE, jobId="once"), ALICE)
    again, created_again = scheduling.jobs.create(request(delay=20 * MINUTE, jobId="once"), ALICE)

    assert created and not created_again and again.job_id == first.job_id
    assert scheduling.schedule_names() == [scheduler.delay_schedule_name(JobRef("alice", "once"))]


def test_bulk_items_delayed_past_15_minutes_get_schedules(scheduling: Scheduling) -> None:
    item = {"queue": "email-sending", "type": "send-email", "data": EMAIL, "options": {"delay": 16 * MINUTE}}
    outcomes = scheduling.jobs.create_bulk([item, {**item, "options": {}}], ALICE)

    assert [o.status for o in outcomes] == [201, 201]
    assert scheduling.schedule_names() == [scheduler.delay_schedule_name(JobRef.of(outcomes[0].job))]  # type: ignore[arg-type]


def test_at_expressions_round_up_to_the_second() -> None:
    when = parse_iso("2030-01-02T03:04:05.001Z")
    assert scheduler.at_expression(when) == "at(2030-01-02T03:04:06)"
    assert scheduler.at_expression(parse_iso("2030-01-02T03:04:05.000Z")) == "at(2030-01-02T03:04:05)"


def test_schedule_names_hold_any_job_id_and_differ_per_owner() -> None:
    readable = scheduler.delay_schedule_name(JobRef("alice", "abc-123"))
    assert readable.startswith("delay-abc-123-") and len(readable) <= 64
    assert readable != scheduler.delay_schedule_name(JobRef("bob", "abc-123"))
    hashed = scheduler.delay_schedule_name(JobRef("alice", "repeat:nightly:20300101T070000Z"))
    assert hashed.startswith("delayh-") and len(hashed) <= 64
    assert scheduler.delay_schedule_name(JobRef("a", "x" * 100)) != scheduler.delay_schedule_name(JobRef("a", "x" * 101))

