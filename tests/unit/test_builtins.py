"""Built-in processors doing their work on moto (SNS, S3), a real HTTP server on 127.0.0.1 and the local Lambda API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from functions.consumer.handler import handler
from infra.local.esm import MappingRegistry
from infra.local.functions import LocalFunctions, function_arn
from infra.local.lambda_api import LambdaApi
from shared.adapters import clients, lambda_functions, queues
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.jobs import Identity, JobService
from shared.models import Job
from shared.settings import get_settings
from shared.status import JobStatus
from tests.target_server import TargetServer
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event

ALICE = Identity("alice")
ONCE = {"attempts": 3, "backoff": {"type": "fixed", "delay": 0}}


def run(stack: Stack, queue: str, job_type: str, data: dict[str, Any], options: dict[str, Any] | None = None) -> Job:
    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), get_settings())
    job, _ = jobs.create(JobCreate(queue=queue, type=job_type, data=data, options=options or {"attempts": 1}), ALICE)
    handler(sqs_event(stack, queue, stack.receive(queue)), FakeLambdaContext())
    return stack.store.require("alice", job.job_id)


# ---- publish ----------------------------------------------------------------------------------------
@pytest.fixture
def topic(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A topic the stack allows, with an SQS queue subscribed to see what was published."""
    sns, sqs = clients.client("sns"), clients.client("sqs")
    arn = sns.create_topic(Name="orders")["TopicArn"]
    inbox = sqs.create_queue(QueueName="orders-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"})
    monkeypatch.setenv("JOBQ_PUBLISH_TOPIC_ARNS", arn)
    get_settings.cache_clear()
    return arn, inbox


def test_publish_sends_the_message_to_an_allowed_topic(stack: Stack, topic: tuple[str, str]) -> None:
    arn, inbox = topic

    job = run(stack, "email-sending", "publish", {"topicArn": arn, "message": {"order": 42}, "subject": "order"})

    assert job.status is JobStatus.COMPLETED and job.result["topicArn"] == arn and job.result["messageId"]
    received = clients.client("sqs").receive_message(QueueUrl=inbox, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in received] == [{"order": 42}]


def test_publish_to_a_topic_not_listed_fails_at_once(stack: Stack, topic: tuple[str, str]) -> None:
    other = clients.client("sns").create_topic(Name="elsewhere")["TopicArn"]

    job = run(stack, "email-sending", "publish", {"topicArn": other, "message": "hi"}, ONCE)

    assert job.status is JobStatus.FAILED and job.attempts == 1 and "PublishTopicArns" in (job.error or "")


# ---- export -----------------------------------------------------------------------------------------
def _object(stack: Stack, key: str) -> bytes:
    return bytes(clients.client("s3").get_object(Bucket=get_settings().reports_bucket, Key=key)["Body"].read())


def test_export_turns_rows_into_a_csv_in_s3_with_a_download_url_valid_for_the_time_asked(stack: Stack) -> None:
    rows = [{"lead": "a", "score": 3}, {"lead": "b", "score": 5, "tags": ["x"]}]

    job = run(stack, "report-generation", "export", {"format": "csv", "rows": rows, "expiresIn": 600})

    assert job.status is JobStatus.COMPLETED, job.error
    result = job.result
    assert result["key"] == f"exports/alice/{job.job_id}.csv" and result["rows"] == 2
    assert _object(stack, result["key"]).decode().splitlines() == ["lead,score,tags", "a,3,", 'b,5,"[""x""]"']
    query = parse_qs(urlsplit(result["url"]).query)
    assert query["X-Amz-Expires"] == ["600"] and urlsplit(result["url"]).path.endswith(result["key"])


def test_export_reads_a_json_lines_file_from_the_owners_uploads_into_json(stack: Stack) -> None:
    bucket = get_settings().reports_bucket
    clients.client("s3").put_object(Bucket=bucket, Key="uploads/alice/leads.jsonl", Body=b'{"lead":"a"}\n{"lead":"b"}\n')

    job = run(stack, "report-generation", "export", {"format": "json", "file": "uploads/alice/leads.jsonl", "columns": ["lead"]})

    assert job.status is JobStatus.COMPLETED, job.error
    assert json.loads(_object(stack, job.result["key"])) == [{"lead": "a"}, {"lead": "b"}]


def test_export_turns_a_csv_upload_into_json(stack: Stack) -> None:
    bucket = get_settings().reports_bucket
    clients.client("s3").put_object(Bucket=bucket, Key="uploads/alice/leads.csv", Body=b"lead,score\na,3\nb,5\n")

    job = run(stack, "report-generation", "export", {"format": "json", "file": "uploads/alice/leads.csv"})

    assert job.status is JobStatus.COMPLETED, job.error
    assert json.loads(_object(stack, job.result["key"])) == [{"lead": "a", "score": "3"}, {"lead": "b", "score": "5"}]


@pytest.mark.parametrize("data", [{"file": "uploads/bob/leads.jsonl"}, {"file": "uploads/alice/missing.jsonl"}, {"file": "uploads/alice/../bob/x"}, {"rows": "nope"}, {"rows": [], "expiresIn": 10}])
def test_export_refuses_another_users_files_and_bad_input_at_once(stack: Stack, data: dict[str, Any]) -> None:
    job = run(stack, "report-generation", "export", data, ONCE)

    assert job.status is JobStatus.FAILED and job.attempts == 1


# ---- http-request -----------------------------------------------------------------------------------
@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def test_http_request_calls_the_url_with_the_jobs_method_headers_and_body(stack: Stack, target: TargetServer) -> None:
    data = {"url": f"{target.url}/ok", "method": "post", "headers": {"X-Trace": "t-1"}, "body": {"n": 1}}

    job = run(stack, "report-generation", "http-request", data)

    assert job.status is JobStatus.COMPLETED, job.error
    assert job.result["status"] == 200 and job.result["body"] == {"echo": None, "attempt": None}  # the server echoes a job's fields
    (sent,) = target.calls
    assert sent.payload == {"n": 1}


def test_http_request_follows_the_address_rules_of_http_targets(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQ_ALLOW_LOOPBACK_HTTP_TARGETS", "false")
    get_settings.cache_clear()

    job = run(stack, "report-generation", "http-request", {"url": "https://169.254.169.254/latest/meta-data/"}, ONCE)

    assert job.status is JobStatus.FAILED and job.attempts == 1 and "may not be called" in (job.error or "")


def test_http_request_may_not_set_the_host_header(stack: Stack, target: TargetServer) -> None:
    job = run(stack, "report-generation", "http-request", {"url": f"{target.url}/ok", "headers": {"Host": "internal"}}, ONCE)

    assert job.status is JobStatus.FAILED and target.calls == []


# ---- invoke -----------------------------------------------------------------------------------------
@pytest.fixture
def lambda_api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaApi]:
    api = LambdaApi(MappingRegistry(), functions=LocalFunctions({})).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", api.url)
    monkeypatch.setenv("JOBQ_LAMBDA_TARGET_ARNS", ",".join(api.functions.arns("us-east-1")))
    get_settings.cache_clear()
    lambda_functions.reset()
    yield api
    api.stop()
    lambda_functions.reset()


def test_invoke_runs_a_listed_function_with_the_jobs_payload_as_a_generic_task(stack: Stack, lambda_api: LambdaApi) -> None:
    data = {"functionArn": function_arn("jobq-local-echo", "us-east-1"), "payload": {"data": {"service": "ExportService", "method": "exportResults"}}}

    job = run(stack, "report-generation", "invoke", data)

    assert job.status is JobStatus.COMPLETED, job.error
    assert job.result["echo"] == {"service": "ExportService", "method": "exportResults"}


def test_invoke_refuses_a_function_not_listed(stack: Stack, lambda_api: LambdaApi) -> None:
    job = run(stack, "report-generation", "invoke", {"functionArn": function_arn("someone-else", "us-east-1")}, ONCE)

    assert job.status is JobStatus.FAILED and "LambdaTargetArns" in (job.error or "") and lambda_api.invocations == 0
