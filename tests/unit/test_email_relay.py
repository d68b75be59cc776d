"""The send-email example is no open relay: it sends only to the recipients the stack allows.

The processor fails a job for any other recipient at once (a permanent failure that says
why, nothing sent); SES's own policy (ses:Recipients) allows the same list, so a processor
bug could not send elsewhere either.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from functions.consumer.handler import handler
from infra.local.provision import Provisioner
from shared.adapters import queues
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.jobs import Identity, JobService
from shared.models import Job
from shared.settings import get_settings
from shared.status import JobStatus
from tests.unit.conftest import ROOT, STACK, FakeLambdaContext, Stack, sqs_event

ALICE = Identity("alice")
PARAMETERS = {"JwtIssuer": "https://issuer.example.com", "JwtAudience": "jobq"}


def _send(stack: Stack, to: Any) -> Job:
    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    job, _ = jobs.create(JobCreate(queue="email-sending", type="send-email", data={"to": to, "subject": "Hi", "body": "Hello"}), ALICE)
    handler(sqs_event(stack, "email-sending", stack.receive("email-sending")), FakeLambdaContext())
    return jobs.get(job.job_id, ALICE)


def _sent() -> int:
    return int(boto3.client("ses").get_send_quota()["SentLast24Hours"])


def test_a_recipient_in_the_senders_domain_gets_the_mail(stack: Stack) -> None:
    job = _send(stack, "bob@example.com")  # the sender is jobq@example.com

    assert job.status is JobStatus.COMPLETED and _sent() == 1


def test_a_recipient_outside_the_allowed_list_fails_the_job_at_once_and_nothing_is_sent(stack: Stack) -> None:
    job = _send(stack, "victim@elsewhere.org")

    assert job.status is JobStatus.FAILED and job.attempts == 1
    assert "recipient victim@elsewhere.org is not allowed" in (job.error or "") and "*@example.com" in (job.error or "")
    assert _sent() == 0


@pytest.mark.parametrize("to", ["a@example.com, b@elsewhere.org", "a@example.com;b@elsewhere.org", ["a@example.com"], "Bob <a@example.com>"])
def test_only_one_plain_address_is_accepted(stack: Stack, to: Any) -> None:
    job = _send(stack, to)

    assert job.status is JobStatus.FAILED and "one email address" in (job.error or "") and _sent() == 0


def test_the_allowed_list_replaces_the_senders_domain(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQ_EMAIL_ALLOWED_RECIPIENTS", "*@partner.example.org,ops@other.example.net")
    get_settings.cache_clear()
    boto3.client("ses").verify_email_identity(EmailAddress=get_settings().email_sender)

    assert _send(stack, "ops@other.example.net").status is JobStatus.COMPLETED
    assert _send(stack, "anyone@partner.example.org").status is JobStatus.COMPLETED
    assert _send(stack, "bob@example.com").status is JobStatus.FAILED


@pytest.mark.parametrize(
    "given,expected",
    [({}, ["*@example.com"]), ({"EmailAllowedRecipients": "*@partner.example.org,ops@other.example.net"}, ["*@partner.example.org", "ops@other.example.net"])],
)
def test_ses_is_allowed_the_same_recipients_as_the_processor(aws_env: None, given: dict[str, str], expected: list[str]) -> None:
    stack = Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, {**PARAMETERS, **given})

    (statement,) = stack.resources["EmailProcessorPolicy"].properties["PolicyDocument"]["Statement"]
    assert statement["Condition"]["ForAllValues:StringLike"]["ses:Recipients"] == expected
    consumer = stack.nested["EmailSendingQueue"].resources["ConsumerFunction"].properties
    assert consumer["Environment"]["Variables"]["JOBQ_EMAIL_ALLOWED_RECIPIENTS"] == ",".join(expected)
