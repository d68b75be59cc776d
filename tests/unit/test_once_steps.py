"""Once-only steps (``JobContext.once``): a step's effect is not repeated by the attempts after it."""

from __future__ import annotations

from typing import Any

import pytest

from infra.local.provision import Provisioner
from shared.adapters import clients, queues
from shared.adapters.job_repository import _job_key
from shared.adapters.once_steps import OnceSteps
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.jobs import Identity, JobService
from shared.status import JobStatus
from shared.worker import Delivery, JobContext, Outcome, RetryLater
from tests.unit.conftest import ROOT, STACK, Stack, arrange
from tests.unit.test_least_privilege import PARAMETERS, DynamoCalls, _denied

ALICE = Identity("alice")
RETRY_AT_ONCE = {"attempts": 3, "backoff": {"type": "fixed", "delay": 0}}


def create(stack: Stack, options: dict[str, Any] | None = None) -> str:
    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    data = {"to": "a@example.com", "subject": "s", "body": "b"}
    job, _ = jobs.create(JobCreate(queue="email-sending", type="send-email", data=data, options=options or RETRY_AT_ONCE), ALICE)
    return job.job_id


def run(stack: Stack, processor: Any) -> Outcome:
    """Deliver the queue's next message to a worker whose every job runs ``processor``."""
    (message,) = stack.receive("email-sending", max_messages=1)
    delivery = Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], stack.queues["email-sending"])
    try:
        return stack.worker(lambda queue, job: processor).handle(delivery)
    except RetryLater:
        return Outcome.RETRYING


def test_a_once_step_is_not_repeated_when_the_attempt_after_it_fails(stack: Stack) -> None:
    job_id = create(stack)
    charges: list[int] = []

    def charge_then_fail_once(job: JobContext) -> dict[str, Any]:
        with job.once("charge-card") as step:
            if not step.done:
                charges.append(job.attempt)
                step.result = {"chargeId": f"ch_{len(charges)}"}
        if job.attempt == 1:
            raise RuntimeError("the mail after the charge failed")
        return {"receipt": step.result}

    assert run(stack, charge_then_fail_once) is Outcome.RETRYING
    assert run(stack, charge_then_fail_once) is Outcome.COMPLETED

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.COMPLETED and job.attempts == 2
    assert charges == [1]
    assert job.result == {"receipt": {"chargeId": "ch_1"}}


def test_the_callable_form_returns_the_recorded_result_on_later_attempts(stack: Stack) -> None:
    job_id = create(stack)
    calls: list[int] = []

    def processor(job: JobContext) -> Any:
        receipt = job.once("charge-card", lambda: calls.append(job.attempt) or {"chargeId": "ch_9"})
        if job.attempt < 3:
            raise RuntimeError("later")
        return receipt

    for _ in range(3):
        run(stack, processor)

    assert calls == [1]
    assert stack.store.require("alice", job_id).result == {"chargeId": "ch_9"}


def test_a_step_whose_body_raised_runs_again_on_the_next_attempt(stack: Stack) -> None:
    job_id = create(stack)
    seen: list[tuple[int, bool]] = []

    def flaky_charge(job: JobContext) -> Any:
        with job.once("charge-card") as step:
            if not step.done:
                seen.append((job.attempt, step.uncertain))
                if job.attempt == 1:
                    raise RuntimeError("the card network timed out")
                step.result = "ch_2"
        return step.result

    run(stack, flaky_charge)
    run(stack, flaky_charge)

    assert seen == [(1, False), (2, False)]  # a body that raised did not happen: not uncertain
    assert stack.store.require("alice", job_id).result == "ch_2"


def test_after_a_consumer_died_inside_a_step_the_next_attempt_runs_it_marked_uncertain_with_the_same_key(stack: Stack) -> None:
    job_id = create(stack)
    job = stack.store.require("alice", job_id)
    # Attempt 1 started the step and its consumer died there: the step is "started", the job waits for attempt 2.
    OnceSteps(stack.table_name).start("alice", job_id, "charge-card", attempt=1, expires_at=2_000_000_000)
    arrange(stack, job, JobStatus.WAITING, {"attempts": 1})
    seen: list[tuple[bool, str]] = []

    def processor(job: JobContext) -> str:
        with job.once("charge-card") as step:
            if not step.done:
                seen.append((step.uncertain, step.key))
                step.result = "ch_checked"
        return str(step.result)

    assert run(stack, processor) is Outcome.COMPLETED
    assert seen == [(True, f"jobq:alice/{job_id}/charge-card")]


def test_a_step_is_a_small_item_beside_the_job_not_in_it(stack: Stack) -> None:
    job_id = create(stack)

    run(stack, lambda job: job.once("charge-card", lambda: {"chargeId": "ch_1"}))

    ddb = clients.client("dynamodb")
    key = _job_key("alice", job_id)
    step = ddb.get_item(TableName=stack.table_name, Key={**key, "sk": {"S": "ONCE#charge-card"}}, ConsistentRead=True)["Item"]
    assert step["state"]["S"] == "done" and step["result"]["S"] == '{"chargeId":"ch_1"}' and "expiresAt" in step
    job_item = ddb.get_item(TableName=stack.table_name, Key=key, ConsistentRead=True)["Item"]
    assert not any("once" in name.lower() or "charge" in name for name in job_item)


def test_a_steps_writes_stay_within_the_consumers_policy(stack: Stack) -> None:
    provisioned = Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, PARAMETERS)
    create(stack)

    with DynamoCalls() as calls:
        run(stack, lambda job: job.once("charge-card", lambda: 1))

    assert {"PutItem", "UpdateItem"} <= {action for action, _ in calls.calls}
    assert _denied(calls, provisioned.nested["EmailSendingQueue"].resources["ConsumerFunction"]) == []


@pytest.mark.parametrize("name", ["", "has space", "x" * 101, "a/b"])
def test_a_step_name_must_be_short_and_plain(stack: Stack, name: str) -> None:
    job_id = create(stack, {"attempts": 1})

    run(stack, lambda job: job.once(name, lambda: 1))

    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.FAILED and job.error and "step name" in job.error
