"""Unit fixtures: AWS in process (moto), provisioned from template.yaml itself."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from infra.local import moto_fixes
from infra.local.provision import Provisioner
from processors.registry import ProcessorRegistry
from shared.adapters import clients, configuration, queues
from shared.adapters.job_repository import JobStore, to_item
from shared.catalog import ProcessorCatalog
from shared.models import Job, QueueInfo
from shared.settings import Settings, get_settings
from shared.status import JobStatus
from shared.worker import Worker

# moto's DynamoDB takes no lock: without these fixes (the local stack's too) a conditional write or a
# transaction is not isolated from another thread's, as DynamoDB's are, and the tests of limits under
# concurrency would depend on which test file happened to apply them first in the process.
moto_fixes.apply()

STACK = "jobq"  # as samconfig.toml deploys it, so the ARNs in events/ match
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    table_name: str
    queues: dict[str, QueueInfo]
    settings: Settings
    store: JobStore

    def worker(self, resolve: Any = None, **kwargs: Any) -> Worker:
        resolve = resolve or ProcessorRegistry(ProcessorCatalog(self.store, 0)).resolve
        return Worker(self.store, self.settings, resolve, **kwargs)

    def receive(self, queue: str, *, dlq: bool = False, wait: int = 0, max_messages: int = 10) -> list[dict[str, Any]]:
        info = self.queues[queue]
        out = clients.client("sqs").receive_message(
            QueueUrl=info.dlq_url if dlq else info.queue_url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return out.get("Messages", [])


@pytest.fixture(autouse=True)
def required_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two settings every function is deployed with (template.yaml); tests of pure rules read settings too."""
    for name, value in {"JOBQ_TABLE_NAME": f"{STACK}-table-not-provisioned", "JOBQ_QUEUES_PARAMETER_PATH": f"/jobq/{STACK}/queues/"}.items():
        if name not in os.environ:
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    # What a composition root does at import: tests that call an adapter without one give it the settings.
    configuration.use_settings(get_settings)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with in_moto(monkeypatch):
        yield


@contextmanager
def in_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """AWS in process, with the environment the functions are deployed with (any fixture scope)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "JOBQ_TABLE_NAME": f"{STACK}-table-not-provisioned",  # the stack fixture sets the real one
        "JOBQ_QUEUES_PARAMETER_PATH": f"/jobq/{STACK}/queues/",
        "JOBQ_ALLOW_LOOPBACK_HTTP_TARGETS": "true",
        "JOBQ_QUEUE_CACHE_SECONDS": "0",
        "JOBQ_TARGET_CACHE_SECONDS": "0",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "jobq",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    _forget_cached_clients()
    with mock_aws():
        yield
    _forget_cached_clients()


def _forget_cached_clients() -> None:
    get_settings.cache_clear()
    clients.reset()
    queues.reset()
    from api import deps

    deps.job_service.cache_clear()
    deps.flow_service.cache_clear()
    deps.report_store.cache_clear()
    deps.cursor_signer.cache_clear()
    from api import access

    access.audit_log.cache_clear()
    deps.schedule_service.cache_clear()
    from functions import composition

    composition.reset()  # the functions' services: worker, flows, schedules, health sweep, retention, executions


@pytest.fixture
def stack(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Stack:
    return provision(monkeypatch)


def provision(monkeypatch: pytest.MonkeyPatch) -> Stack:
    """template.yaml's resources in moto (inside ``in_moto``), the settings pointing at them."""
    # The local stack's provisioner, on template.yaml itself: no second copy of the resources.
    provisioned = Provisioner(endpoint_url=None).provision(  # type: ignore[arg-type] - None: moto in process
        ROOT / "template.yaml", STACK, {"JwtIssuer": "https://issuer.example.com", "JwtAudience": "jobq"}
    )
    table_name = provisioned.resources["JobsTable"].ref
    bucket = provisioned.resources["ReportsBucket"].ref
    monkeypatch.setenv("JOBQ_TABLE_NAME", table_name)
    monkeypatch.setenv("JOBQ_REPORTS_BUCKET", bucket)
    monkeypatch.setenv("JOBQ_PAYLOAD_BUCKET", bucket)
    clients.client("ses").verify_email_identity(EmailAddress=get_settings().email_sender)
    get_settings.cache_clear()
    settings = get_settings()
    directory = queues.directory()
    return Stack(
        table_name=table_name,
        queues=directory.all(),
        settings=settings,
        store=JobStore(table_name),
    )


def sqs_event(stack: Stack, queue: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping would send for these received messages."""
    info = stack.queues[queue]
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": info.queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


class FakeLambdaContext:
    function_name = "jobq-consumer"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:jobq-consumer"
    memory_limit_in_mb = 256
    aws_request_id = "req-1"
    log_group_name = "/aws/lambda/jobq-consumer"
    log_stream_name = "stream"

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


def dumps(value: Any) -> str:
    return json.dumps(value)


def arrange(stack: Stack, job: Job, status: JobStatus, changes: dict[str, Any]) -> Job:
    """Put a stored job in a state for a test (a whole-item put, as if the lifecycle had got it there)."""
    moved = Job.model_validate({**job.model_dump(), **changes, "status": status, "version": job.version + 1})
    clients.client("dynamodb").put_item(TableName=stack.table_name, Item=to_item(moved))
    return moved
