"""The local stack's own machinery: template evaluation, the SQS event source mapping
emulator and the API Gateway JWT authorizer emulation.

The emulators are the code under test here, so the Lambda handler and the ASGI app
behind them are small fakes. moto runs in server mode on a free port on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from infra.local.auth import ApiGatewayEmulator, api_for_function, render_claims
from infra.local.cfn import NO_VALUE, Evaluator, TemplateError, load_template, resolve_parameters
from infra.local.esm import EventSourceMapping, build_sqs_event, messages_to_delete
from infra.local.issuer import LocalIssuer, issuer_url
from infra.local.provision import EventSourceMappingSpec, FunctionSpec, ProvisionedStack, Provisioner
from infra.local.stack import LocalStack
from infra.local.token import mint_token

REPO = Path(__file__).resolve().parents[2]
ISSUER = issuer_url(8000)
REGION = "us-east-1"


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def provisioned(moto_endpoint: str) -> ProvisionedStack:
    stack_name = f"jobq-unit-{uuid.uuid4().hex[:6]}"
    return Provisioner(endpoint_url=moto_endpoint, region=REGION).provision(
        REPO / "template.yaml", stack_name, {"JwtIssuer": ISSUER, "JwtAudience": "jobq-local"}
    )


@pytest.fixture()
def sqs(moto_endpoint: str) -> Any:
    return boto3.client(
        "sqs", endpoint_url=moto_endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def eventually(predicate: Callable[[], bool], timeout: float = 8.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# ---- template evaluation ---------------------------------------------------------------------


def test_template_yields_the_three_queues_with_the_templates_concurrency(provisioned: ProvisionedStack) -> None:
    by_queue = {
        m.queue_arn.split(":")[-1].removeprefix(f"{provisioned.name}-"): m
        for m in provisioned.all_mappings()
        if m.function.handler == "functions.consumer.handler.handler"  # not the webhook deliveries' mapping
    }
    assert {q: m.maximum_concurrency for q, m in by_queue.items()} == {
        "email-sending": 10,
        "report-generation": 5,
        "video-processing": 2,
    }
    assert {q: m.batch_size for q, m in by_queue.items()} == {"email-sending": 10, "report-generation": 5, "video-processing": 1}
    assert {q: m.function.timeout for q, m in by_queue.items()} == {
        "email-sending": 30,
        "report-generation": 300,
        "video-processing": 900,
    }
    assert all(m.report_batch_item_failures for m in by_queue.values())
    assert {m.function.handler for m in by_queue.values()} == {"functions.consumer.handler.handler"}


def test_each_queue_publishes_a_parseable_parameter_that_matches_what_was_created(
    provisioned: ProvisionedStack, sqs: Any
) -> None:
    parameters = {
        name: json.loads(value)
        for name, value in provisioned.all_ssm_parameters().items()
        if name.startswith(f"/jobq/{provisioned.name}/queues/")
    }
    assert sorted(p["name"] for p in parameters.values()) == ["email-sending", "report-generation", "video-processing"]
    mapping_ids = {m.uuid for m in provisioned.all_mappings()}
    for config in parameters.values():
        attributes = sqs.get_queue_attributes(QueueUrl=config["queueUrl"], AttributeNames=["All"])["Attributes"]
        assert attributes["QueueArn"] == config["queueArn"]
        assert int(attributes["VisibilityTimeout"]) == config["visibilityTimeout"]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == config["dlqArn"]
        assert int(redrive["maxReceiveCount"]) == config["maxReceiveCount"] == 25
        assert config["eventSourceMappingId"] in mapping_ids
        assert config["consumerFunction"].endswith("-ConsumerFunction")
    video = next(p for p in parameters.values() if p["name"] == "video-processing")
    assert (video["defaultAttempts"], video["defaultBackoffType"], video["defaultBackoffDelay"]) == (2, "fixed", 30000)


def test_the_table_is_created_from_the_template_definition(provisioned: ProvisionedStack, moto_endpoint: str) -> None:
    ddb = boto3.client(
        "dynamodb", endpoint_url=moto_endpoint, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t"
    )
    table = ddb.describe_table(TableName=provisioned.outputs["JobsTableName"])["Table"]
    assert {i["IndexName"]: i["Projection"]["ProjectionType"] for i in table["GlobalSecondaryIndexes"]} == {"byOwner": "INCLUDE", "byQueue": "KEYS_ONLY", "byQueueState": "KEYS_ONLY"}
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    api_function = provisioned.function("ApiFunction")
    assert api_function.environment["JOBQ_TABLE_NAME"] == table["TableName"]
    assert api_function.environment["POWERTOOLS_SERVICE_NAME"] == "jobq-api"


def test_short_tags_and_intrinsics_evaluate_like_cloudformation(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        """
Parameters:
  Name: {Type: String, Default: demo}
  Policy: {Type: String, Default: ""}
  Audiences: {Type: CommaDelimitedList, Default: "a,b"}
Conditions:
  HasPolicy: !Not [!Equals [!Ref Policy, ""]]
Resources:
  Thing:
    Type: AWS::Test::Thing
    Properties:
      Literal: !Sub "${!NotAVar}-${Name}-${AWS::Region}"
      Attr: !GetAtt Other.Arn
      Policies:
        - fixed
        - !If [HasPolicy, !Ref Policy, !Ref AWS::NoValue]
      Joined: !Join [",", !Ref Audiences]
"""
    )
    template = load_template(path)
    evaluator = Evaluator(
        parameters=resolve_parameters(template, {}),
        pseudo={"AWS::Region": "us-east-1"},
        conditions=template["Conditions"],
        resolve_ref=lambda name: f"ref:{name}",
        resolve_getatt=lambda name, attr: f"{name}.{attr}",
    )
    props = evaluator.evaluate(template["Resources"]["Thing"]["Properties"])
    assert props == {
        "Literal": "${NotAVar}-demo-us-east-1",
        "Attr": "Other.Arn",
        "Policies": ["fixed"],
        "Joined": "a,b",
    }
    assert evaluator.evaluate({"Ref": "AWS::NoValue"}) is NO_VALUE


def test_queue_parameters_are_validated_like_create_stack() -> None:
    template = load_template(REPO / "infra" / "queue.yaml")
    required = {"StackName": "s", "QueueName": "q", "TableName": "t", "TableArn": "a", "QueuesParameterPath": "/p/"}
    required["DependenciesLayerArn"] = "l"
    required |= {
        "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:alarms",
        "OldestMessageAgeAlarmSeconds": "1800",
        "FailureRateAlarmPercent": "10",
        "FailureRateAlarmMinJobs": "10",
        "ConsumerErrorsAlarmThreshold": "0",
        "DurationAlarmPercent": "80",
        "ApiRoleName": "api",
        "SchedulerRoleName": "scheduler",
        "SchedulerFunctionRoleName": "scheduler-function",
        "HealthRoleName": "health",
        "EventsRoleName": "events",
        "ExecutionsRoleName": "executions",
    }
    with pytest.raises(TemplateError, match="MinValue"):
        resolve_parameters(template, {**required, "MaxConcurrency": "1"})  # Lambda's minimum is 2
    with pytest.raises(TemplateError, match="does not match"):
        resolve_parameters(template, {**required, "QueueName": "Bad_Name"})
    assert resolve_parameters(template, required)["MaxConcurrency"] == "2"


# ---- the event source mapping emulator --------------------------------------------------------


def _fake_function(timeout: int = 5) -> FunctionSpec:
    return FunctionSpec(
        logical_id="FakeConsumer",
        name="fake-consumer",
        arn=f"arn:aws:lambda:{REGION}:123456789012:function:fake-consumer",
        handler="fake.handler",
        timeout=timeout,
        memory_size=256,
        environment={},
        events={},
        stack_name="unit",
    )


class QueueUnderTest:
    """A fresh queue (visibility 1 s, so failures come back quickly) and a mapping on it."""

    def __init__(self, sqs: Any, endpoint: str) -> None:
        self.sqs = sqs
        self.endpoint = endpoint
        self.url = sqs.create_queue(QueueName=f"esm-{uuid.uuid4().hex[:10]}", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
        self.arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.mapping: EventSourceMapping | None = None

    def send(self, *bodies: str, **attributes: Any) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.url, MessageBody=body, **attributes)

    def start(
        self, handler: Callable[[dict[str, Any], Any], Any], *, batch_size: int = 10, concurrency: int = 2, enabled: bool = True
    ) -> EventSourceMapping:
        spec = EventSourceMappingSpec(
            uuid=str(uuid.uuid4()),
            logical_id="FakeConsumerJobs",
            function=_fake_function(),
            queue_arn=self.arn,
            batch_size=batch_size,
            maximum_batching_window_seconds=0,
            maximum_concurrency=concurrency,
            report_batch_item_failures=True,
            enabled=enabled,
        )
        self.mapping = EventSourceMapping(spec, handler, queue_url=self.url, endpoint_url=self.endpoint, region=REGION)
        self.mapping.start()
        return self.mapping

    def depth(self) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture(scope="module")
def stopping_mappings() -> Iterator[list[EventSourceMapping]]:
    # A poller finishes its current long poll (about 1 s) before it exits; waiting for
    # that after every test would add a second each, so they wind down together here.
    mappings: list[EventSourceMapping] = []
    yield mappings
    for mapping in mappings:
        mapping.join(timeout=3)


@pytest.fixture()
def queue(sqs: Any, moto_endpoint: str, stopping_mappings: list[EventSourceMapping]) -> Iterator[QueueUnderTest]:
    q = QueueUnderTest(sqs, moto_endpoint)
    yield q
    if q.mapping is not None:
        q.mapping.request_stop()
        stopping_mappings.append(q.mapping)


def test_successes_are_deleted_and_reported_failures_come_back(queue: QueueUnderTest) -> None:
    deliveries: list[tuple[str, str]] = []  # (body, ApproximateReceiveCount)
    lock = threading.Lock()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        with lock:
            for record in event["Records"]:
                count = record["attributes"]["ApproximateReceiveCount"]
                deliveries.append((record["body"], count))
                if record["body"].startswith("fail") and count == "1":
                    failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    queue.send("ok-1", "fail-2", "ok-3", "fail-4")
    queue.start(handler)

    assert eventually(lambda: queue.depth() == 0 and len(deliveries) == 6)
    assert sorted(deliveries) == [
        ("fail-2", "1"),
        ("fail-2", "2"),
        ("fail-4", "1"),
        ("fail-4", "2"),
        ("ok-1", "1"),
        ("ok-3", "1"),
    ]


def test_an_exception_keeps_the_whole_batch_until_its_visibility_timeout(queue: QueueUnderTest) -> None:
    calls: list[list[str]] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        calls.append(sorted(r["body"] for r in event["Records"]))
        if len(calls) == 1:
            raise RuntimeError("the consumer crashed")

    queue.send("a", "b", "c")
    raised_at = time.monotonic()
    queue.start(handler, batch_size=10)

    assert eventually(lambda: queue.depth() == 0)
    assert time.monotonic() - raised_at >= 1.0  # nothing came back before the 1 s visibility timeout
    delivered = [body for batch in calls for body in batch]
    assert sorted(delivered) == ["a", "a", "b", "b", "c", "c"]
    assert queue.mapping is not None and queue.mapping.stats.errors == 1


def test_an_invalid_partial_response_keeps_the_whole_batch(queue: QueueUnderTest) -> None:
    calls: list[int] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        if len(calls) == 1:
            return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}
        return {"batchItemFailures": []}

    queue.send("x", "y")
    queue.start(handler)
    assert eventually(lambda: queue.depth() == 0)
    assert sum(calls) == 4


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, ["m1", "m2"]),
        ({}, ["m1", "m2"]),
        ({"batchItemFailures": None}, ["m1", "m2"]),
        ({"batchItemFailures": []}, ["m1", "m2"]),
        ({"batchItemFailures": [{"itemIdentifier": "m2"}]}, ["m1"]),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, None),
        ({"batchItemFailures": [{"id": "m1"}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": "m3"}]}, None),
        ({"batchItemFailures": "m1"}, None),
        ("not an object", None),
    ],
)
def test_partial_batch_responses_follow_lambdas_rules(response: Any, expected: list[str] | None) -> None:
    assert messages_to_delete(response, ["m1", "m2"], report_batch_item_failures=True) == expected


def test_without_report_batch_item_failures_the_response_is_ignored() -> None:
    response = {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert messages_to_delete(response, ["m1"], report_batch_item_failures=False) == ["m1"]


def test_never_more_invocations_at_once_than_maximum_concurrency(queue: QueueUnderTest) -> None:
    running = 0
    peak = 0
    done: list[str] = []
    lock = threading.Lock()

    def handler(event: dict[str, Any], context: Any) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.25)
        with lock:
            running -= 1
            done.extend(r["body"] for r in event["Records"])

    queue.send(*[f"job-{i}" for i in range(8)])
    queue.start(handler, batch_size=1, concurrency=2)

    assert eventually(lambda: len(done) == 8)
    assert peak == 2
    assert queue.mapping is not None and queue.mapping.stats.max_in_flight == 2
    assert eventually(lambda: queue.depth() == 0)


def test_the_handler_gets_lambdas_sqs_event_and_a_context(queue: QueueUnderTest) -> None:
    seen: list[tuple[dict[str, Any], Any, int]] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        seen.append((event, context, context.get_remaining_time_in_millis()))

    queue.send("hello", MessageAttributes={"traceparent": {"DataType": "String", "StringValue": "00-abc"}})
    queue.start(handler)
    assert eventually(lambda: len(seen) == 1)
    event, context, remaining = seen[0]
    (record,) = event["Records"]
    assert set(record) >= {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["body"] == "hello"
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == ("aws:sqs", queue.arn, REGION)
    assert set(record["attributes"]) >= {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert record["messageAttributes"]["traceparent"] == {
        "stringValue": "00-abc",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert context.function_name == "fake-consumer"
    assert context.memory_limit_in_mb == "256"  # a string, as in the Python runtime
    assert context.invoked_function_arn.endswith(":function:fake-consumer")
    assert uuid.UUID(context.aws_request_id)
    assert 0 < remaining <= 5000


def test_binary_message_attributes_are_base64_in_the_event() -> None:
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "r",
        "Body": "b",
        "MD5OfBody": "x",
        "MessageAttributes": {"blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}},
    }
    record = build_sqs_event([message], queue_arn="arn:q", region=REGION)["Records"][0]
    assert record["messageAttributes"]["blob"] == {
        "binaryValue": "AAE=",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "Binary",
    }


def test_a_disabled_mapping_leaves_messages_in_the_queue_until_enabled(queue: QueueUnderTest) -> None:
    calls: list[str] = []
    mapping = queue.start(lambda event, context: calls.extend(r["body"] for r in event["Records"]), enabled=False)
    queue.send("paused")
    time.sleep(1.2)
    assert calls == []
    mapping.enabled = True
    assert eventually(lambda: calls == ["paused"])


def test_stopping_a_mapping_is_quick(queue: QueueUnderTest) -> None:
    mapping = queue.start(lambda event, context: None)
    time.sleep(0.3)  # the poller is inside a long poll
    began = time.monotonic()
    assert mapping.stop(timeout=3)
    assert time.monotonic() - began < 2.5


# ---- the API Gateway JWT authorizer emulation ----------------------------------------------


async def _echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A stand-in for the FastAPI app: returns what API Gateway put into the event."""
    event = scope.get("aws.event")
    body = json.dumps({"event": event, "has_context": scope.get("aws.context") is not None}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture()
def issuer(tmp_path: Path) -> LocalIssuer:
    return LocalIssuer.load(tmp_path / "state", issuer=ISSUER)


@pytest.fixture()
def api_client(provisioned: ProvisionedStack, issuer: LocalIssuer) -> TestClient:
    api = api_for_function(provisioned.all_http_apis())
    return TestClient(ApiGatewayEmulator(_echo_app, api=api, issuer=issuer), base_url="http://127.0.0.1:8000")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_public_routes_of_the_template_need_no_token(api_client: TestClient) -> None:
    for path in ("/health", "/openapi.json", "/docs"):
        response = api_client.get(path)
        assert response.status_code == 200, path
        request_context = response.json()["event"]["requestContext"]
        assert "authorizer" not in request_context
        assert request_context["routeKey"] == f"GET {path}"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": ""}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Basic YTpi"}]
)
def test_other_routes_without_a_valid_token_are_401_like_api_gateway(api_client: TestClient, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/jobs"), ("POST", "/health"), ("DELETE", "/queues/email-sending/jobs")):
        response = api_client.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.json() == {"message": "Unauthorized"}


def test_tokens_that_fail_api_gateways_checks_are_rejected(api_client: TestClient, issuer: LocalIssuer, tmp_path: Path) -> None:
    other_key = LocalIssuer.load(tmp_path / "other", issuer=ISSUER)
    rejected = {
        "expired": issuer.mint("alice", expires_in=-30),
        "wrong audience": issuer.mint("alice", claims={"aud": "someone-else"}),
        "wrong issuer": LocalIssuer(issuer.private_key, issuer="http://127.0.0.1:9/other").mint("alice"),
        "unknown key": other_key.mint("alice"),
        "not yet valid": issuer.mint("alice", claims={"nbf": int(time.time()) + 600}),
    }
    for reason, token in rejected.items():
        response = api_client.get("/jobs", headers=_auth(token))
        assert response.status_code == 401, reason


def test_claims_reach_the_app_as_api_gateway_passes_them(api_client: TestClient, issuer: LocalIssuer) -> None:
    token = issuer.mint("root", admin=True, groups=["ops"], claims={"email_verified": True, "score": 7})
    response = api_client.post("/jobs?x=1", headers=_auth(token), json={"queue": "email-sending"})
    assert response.status_code == 200
    event = response.json()["event"]
    jwt_context = event["requestContext"]["authorizer"]["jwt"]
    claims = jwt_context["claims"]
    assert jwt_context["scopes"] is None
    assert all(isinstance(v, str) for v in claims.values())
    assert claims["sub"] == "root"
    assert claims["cognito:groups"] == "[ops admin]"
    assert claims["email_verified"] == "true"
    assert claims["score"] == "7"
    assert claims["exp"].isdigit()
    assert claims["iss"] == ISSUER and claims["aud"] == "jobq-local"
    assert event["routeKey"] == "ANY /{proxy+}"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["queryStringParameters"] == {"x": "1"}
    assert response.json()["has_context"] is True
    assert response.headers["apigw-requestid"] == event["requestContext"]["requestId"]


def test_the_bearer_prefix_is_optional_as_on_api_gateway(api_client: TestClient, issuer: LocalIssuer) -> None:
    token = issuer.mint("alice")
    assert api_client.get("/jobs", headers={"Authorization": token}).status_code == 200
    response = api_client.get("/jobs", headers={"authorization": f"bearer {token}"})
    assert response.json()["event"]["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "alice"


def test_array_claims_are_rendered_bracketed_and_space_separated() -> None:
    assert render_claims({"cognito:groups": ["admin"], "roles": ["a", "b"], "n": 1, "none": None}) == {
        "cognito:groups": "[admin]",
        "roles": "[a b]",
        "n": "1",
    }


def test_the_issuer_publishes_its_jwks_and_minted_tokens_validate(api_client: TestClient, tmp_path: Path) -> None:
    jwks = api_client.get("/local-issuer/.well-known/jwks.json").json()
    assert jwks["keys"][0]["kty"] == "RSA" and jwks["keys"][0]["alg"] == "RS256"
    config = api_client.get("/local-issuer/.well-known/openid-configuration").json()
    assert config["issuer"] == ISSUER
    # mint_token() and the CLI use the same key file as the stack.
    token = mint_token("alice", admin=True, port=8000, state_dir=tmp_path / "state")
    claims = api_client.get("/jobs", headers=_auth(token)).json()["event"]["requestContext"]["authorizer"]["jwt"]["claims"]
    assert claims["cognito:groups"] == "[admin]"


# ---- the whole stack, in process --------------------------------------------------------------


def test_the_local_stack_wires_queues_consumers_and_api_from_the_template(tmp_path: Path) -> None:
    invocations: list[dict[str, Any]] = []
    before = os.environ.get("AWS_ENDPOINT_URL")

    def fake_consumer(event: dict[str, Any], context: Any) -> dict[str, Any]:
        invocations.append({"event": event, "function": context.function_name})
        return {"batchItemFailures": []}

    stack = LocalStack(
        api_port=0,
        stack_name=f"jobq-unit-{uuid.uuid4().hex[:6]}",
        state_dir=tmp_path,
        app_factory=lambda: _echo_app,
        handler_resolver=lambda handler: fake_consumer,
    )
    with stack:
        assert os.environ["AWS_ENDPOINT_URL"] == stack.aws_endpoint
        assert os.environ["JOBQ_ALLOW_LOOPBACK_HTTP_TARGETS"] == "true"
        assert os.environ["JOBQ_EMAIL_SENDER"] == "jobq@example.com"
        assert sorted(stack.queues) == ["email-sending", "report-generation", "video-processing"]
        # one mapping per job queue, and the webhook deliveries' (template.yaml's WebhookDeliveryFunction)
        assert sorted(stack.mappings) == sorted([*stack.queues, f"{stack.stack_name}-webhook-deliveries"])
        email = stack.queues["email-sending"]

        stack.mappings["report-generation"].enabled = False
        sqs = boto3.client("sqs")  # the environment points at moto
        sqs.send_message(QueueUrl=email.url, MessageBody='{"jobId": "j1"}')
        assert eventually(lambda: len(invocations) == 1)
        record = invocations[0]["event"]["Records"][0]
        assert record["eventSourceARN"] == email.arn
        assert invocations[0]["function"].endswith("EmailSendingQueue-ConsumerFunction")

        assert httpx.get(f"{stack.api_url}/health").status_code == 200
        assert httpx.get(f"{stack.api_url}/jobs").status_code == 401
        response = httpx.get(f"{stack.api_url}/jobs", headers=_auth(stack.mint_token("root", admin=True)))
        assert response.json()["event"]["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] == "[admin]"
        assert "jobq@example.com" in boto3.client("ses").list_identities()["Identities"]
        began = time.monotonic()
    assert time.monotonic() - began < 4
    assert os.environ.get("AWS_ENDPOINT_URL") == before
