"""Webhooks on moto: queued from the stream, POSTed signed to a receiver on 127.0.0.1, retried, recorded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from functions.realtime import services
from functions.realtime.stream import handler as stream_handler
from functions.realtime.webhooks import handler as webhook_handler
from shared.adapters import clients, queues
from shared.adapters.job_repository import to_item
from shared.adapters.webhooks import DynamoDeliveryLog
from shared.client_models import JobCreate
from shared.errors import Invalid
from shared.jobs import Identity, JobService
from shared.models import Job
from shared.settings import get_settings
from shared.status import JobStatus
from shared.webhooks import sign, verify
from tests.unit.conftest import STACK, FakeLambdaContext, Stack
from tests.webhook_receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


@dataclass
class Hooks:
    stack: Stack
    receiver: WebhookReceiver
    queue_url: str
    log: DynamoDeliveryLog

    def job(self, job_id: str, url: str, **webhook: Any) -> Job:
        from shared.catalog import ProcessorCatalog

        jobs = JobService(self.stack.store, queues.directory(), ProcessorCatalog(self.stack.store, 0), self.stack.settings)
        request = JobCreate(queue="email-sending", type="send-email", data={"to": "a@example.com", "subject": "Hi", "body": "Hello"},
                            options={"jobId": job_id, "webhook": {"url": url, **webhook}})
        job, _ = jobs.create(request, Identity("alice"))
        return job

    def complete(self, job: Job) -> tuple[Job, Job]:
        active = job.model_copy(update={"status": JobStatus.ACTIVE, "attempts": 1, "version": job.version + 1})
        done = active.model_copy(update={"status": JobStatus.COMPLETED, "result": {"sent": True}, "version": active.version + 1})
        return active, done

    def stream(self, *changes: tuple[Job | None, Job]) -> dict[str, Any]:
        records = []
        for n, (old, new) in enumerate(changes):
            images: dict[str, Any] = {"Keys": {"pk": {"S": "JOB#x"}, "sk": {"S": "JOB"}}, "NewImage": to_item(new), "SequenceNumber": str(n)}
            if old is not None:
                images["OldImage"] = to_item(old)
            records.append({"eventID": f"e{n}", "eventName": "MODIFY", "dynamodb": images})
        return stream_handler({"Records": records}, FakeLambdaContext())

    def queued(self) -> list[dict[str, Any]]:
        out = clients.client("sqs").receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=30)
        return out.get("Messages", [])

    def deliver(self, messages: list[dict[str, Any]], *, receive_count: int | None = None) -> dict[str, Any]:
        event = {"Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {**m.get("Attributes", {}), **({"ApproximateReceiveCount": str(receive_count)} if receive_count else {})},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{STACK}-webhook-deliveries",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]}
        return webhook_handler(event, FakeLambdaContext())

    def secret(self) -> str:
        return clients.client("secretsmanager").get_secret_value(SecretId=f"jobq/{STACK}/webhooks/email-sending")["SecretString"]


@pytest.fixture
def hooks(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hooks]:
    tables = clients.client("dynamodb").list_tables()["TableNames"]
    realtime_table = next(t for t in tables if t.endswith("RealtimeTable"))
    queue_url = clients.client("sqs").get_queue_url(QueueName=f"{STACK}-webhook-deliveries")["QueueUrl"]
    with WebhookReceiver() as receiver:
        for name, value in {
            "JOBQ_REALTIME_TABLE_NAME": realtime_table,
            "JOBQ_WEBHOOK_QUEUE_URL": queue_url,
            "JOBQ_WEBSOCKET_ENDPOINT": "ws://127.0.0.1:9/live",  # no subscribers in these tests: never called
            "JOBQ_WEBHOOK_BACKOFF_MS": "4000",
            "JOBQ_WEBHOOK_MAX_ATTEMPTS": "5",
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        services.reset()
        yield Hooks(stack, receiver, queue_url, DynamoDeliveryLog(realtime_table))
    services.reset()
    get_settings.cache_clear()


def test_a_signature_verifies_only_with_the_secret_the_body_and_a_fresh_timestamp() -> None:
    body = b'{"type":"job:completed"}'
    signature = sign("s3cret", 1_800_000_000, body)
    assert verify("s3cret", "1800000000", body, signature, now_s=1_800_000_100)
    assert not verify("other", "1800000000", body, signature, now_s=1_800_000_100)
    assert not verify("s3cret", "1800000000", body + b" ", signature, now_s=1_800_000_100)
    assert not verify("s3cret", "1800000001", body, signature, now_s=1_800_000_100)  # the timestamp is signed too
    assert not verify("s3cret", "1800000000", body, signature, now_s=1_800_001_000)  # too old: a replay


def test_the_webhook_delivery_sample_event_is_posted_signed(hooks: Hooks) -> None:
    event = json.loads((EVENTS / "sqs-webhook-delivery.json").read_text())
    body = json.loads(event["Records"][0]["body"])
    body["url"] = f"{hooks.receiver.url}/ok"  # the sample's https://hooks.example.com, here on 127.0.0.1
    event["Records"][0]["body"] = json.dumps(body)

    assert webhook_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}

    [post] = hooks.receiver.posts()
    assert json.loads(post.body) == body["event"]
    assert post.headers["x-jobq-delivery"] == body["delivery_id"] and post.headers["x-jobq-event"] == "job:completed"
    assert verify(hooks.secret(), post.headers["x-jobq-timestamp"], post.body, post.headers["x-jobq-signature"], now_s=int(time.time()))
    [record] = hooks.log.deliveries("user-123", "job-123")
    assert record["status"] == "delivered" and record["httpStatus"] == 200


def test_an_ending_read_twice_from_the_stream_is_posted_once(hooks: Hooks) -> None:
    job = hooks.job("twice", f"{hooks.receiver.url}/ok")
    active, done = hooks.complete(job)

    assert hooks.stream((job, active), (active, done))["webhooks"] == 1  # endings only, by default
    hooks.stream((active, done))  # Lambda retried the batch
    messages = hooks.queued()
    assert len(messages) == 2 and len({json.loads(m["Body"])["delivery_id"] for m in messages}) == 1

    assert hooks.deliver(messages) == {"batchItemFailures": []}

    assert len(hooks.receiver.posts()) == 1
    [record] = hooks.log.deliveries("alice", "twice")
    assert record["status"] == "delivered" and record["attempts"] == 1


def test_a_failed_delivery_waits_out_its_backoff_and_says_so_on_the_job(hooks: Hooks) -> None:
    job = hooks.job("down", f"{hooks.receiver.url}/always/503")
    active, done = hooks.complete(job)
    hooks.stream((job, active), (active, done))
    messages = hooks.queued()

    result = hooks.deliver(messages)

    assert result == {"batchItemFailures": [{"itemIdentifier": messages[0]["MessageId"]}]}
    [record] = hooks.log.deliveries("alice", "down")
    assert record["status"] == "retrying" and record["attempts"] == 1 and record["httpStatus"] == 503
    assert record["nextAttemptAt"] > record["lastAttemptAt"]
    # its visibility is the backoff (4 s doubling, half of it jittered): not back at once
    assert clients.client("sqs").receive_message(QueueUrl=hooks.queue_url, VisibilityTimeout=0).get("Messages") is None


def test_the_last_failed_attempt_is_recorded_failed_and_left_to_the_dlq(hooks: Hooks) -> None:
    job = hooks.job("gone", f"{hooks.receiver.url}/always/500")
    hooks.stream(hooks.complete(job))
    messages = hooks.queued()

    result = hooks.deliver(messages, receive_count=5)  # JOBQ_WEBHOOK_MAX_ATTEMPTS

    assert len(result["batchItemFailures"]) == 1  # not acknowledged: the redrive policy moves it to the DLQ
    [record] = hooks.log.deliveries("alice", "gone")
    assert record["status"] == "failed" and record["attempts"] == 5


def test_a_delivery_to_an_address_outside_the_rules_is_not_sent(hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    job = hooks.job("moved", f"{hooks.receiver.url}/ok")
    hooks.stream(hooks.complete(job))
    messages = hooks.queued()
    monkeypatch.setenv("JOBQ_ALLOW_LOOPBACK_HTTP_TARGETS", "false")  # as on AWS: https only
    get_settings.cache_clear()
    services.reset()

    assert hooks.deliver(messages) == {"batchItemFailures": []}

    assert hooks.receiver.posts() == []
    [record] = hooks.log.deliveries("alice", "moved")
    assert record["status"] == "failed" and "https" in record["error"]


def test_progress_webhooks_are_opt_in_and_coalesced(hooks: Hooks) -> None:
    job = hooks.job("chatty", f"{hooks.receiver.url}/ok", events=["job:progress", "job:completed"])
    active, done = hooks.complete(job)
    from shared.clock import iso

    start = int(time.time() * 1000)
    reports = [active.model_copy(update={"progress": n, "version": active.version + n, "updated_at": iso(start + n)}) for n in range(1, 51)]
    changes = [(active, reports[0]), *zip(reports, reports[1:], strict=False)]

    queued = hooks.stream(*changes)["webhooks"]

    assert queued == 1  # 50 reports within 50 ms: the first now, the latest held (then superseded by the ending)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://example.com/hook", "file:///etc/passwd"])
def test_a_jobs_webhook_must_be_https_on_aws(stack: Stack, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    import shared.models
    from shared.catalog import ProcessorCatalog

    monkeypatch.setenv("JOBQ_ALLOW_LOOPBACK_HTTP_TARGETS", "false")
    monkeypatch.setattr(shared.models, "_resolve", lambda host, port: ["93.184.215.14"])  # DNS, faked: no network in tests
    get_settings.cache_clear()
    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), get_settings())
    with pytest.raises((Invalid, ValueError)):
        jobs.create(JobCreate(queue="email-sending", type="send-email", data={}, options={"webhook": {"url": url}}), Identity("alice"))
    job, _ = jobs.create(
        JobCreate(queue="email-sending", type="send-email", data={"to": "a@example.com", "subject": "s", "body": "b"},
                  options={"webhook": {"url": "https://hooks.example.com/jobq"}}),
        Identity("alice"),
    )
    assert stack.store.require("alice", job.job_id).webhook.url == "https://hooks.example.com/jobq"


def test_the_delivery_functions_cold_start_loads_neither_the_batch_utility_nor_the_websocket_side() -> None:
    code = (
        "import sys, functions.realtime.webhooks; "
        "print(','.join(m for m in ('aws_lambda_powertools.utilities.batch', 'jwt', 'shared.realtime_auth', "
        "'shared.adapters.realtime', 'fastapi') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
