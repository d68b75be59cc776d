"""The local stack's DynamoDB stream event source mapping and Lambda API emulation.

The emulators are the code under test, so the handlers behind them are small fakes; moto
runs in server mode on a free port, as in the local stack.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from infra.local import moto_fixes
from infra.local.esm import EventSourceMapping, MappingRegistry
from infra.local.lambda_api import LambdaApi
from infra.local.provision import EventSourceMappingSpec, FunctionSpec
from infra.local.streams import StreamEventSourceMapping, StreamMappingSpec, build_stream_event, matches_filters, stream_mappings
from tests.unit.stream_feed import template_stream_event

REGION = "us-east-1"
JOB_FILTER = ({"dynamodb": {"Keys": {"sk": {"S": ["JOB"]}}}},)
FUNCTION = FunctionSpec("EventsFunction", "jobq-events", "arn:aws:lambda:us-east-1:123456789012:function:jobq-events", "x.y", 60, 256, {}, {}, "jobq")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def table(endpoint: str) -> tuple[str, str]:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    description = client(endpoint, "dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    return name, description["LatestStreamArn"]


def spec(stream_arn: str, **overrides: Any) -> StreamMappingSpec:
    values: dict[str, Any] = {
        "logical_id": "EventsFunctionJobChanges",
        "function": FUNCTION,
        "stream_arn": stream_arn,
        "batch_size": 2,
        "maximum_batching_window_seconds": 0,
        "starting_position": "TRIM_HORIZON",
        "maximum_retry_attempts": -1,
        "filters": JOB_FILTER,
        "report_batch_item_failures": False,
        "on_failure_arn": None,
        "enabled": True,
    }
    return StreamMappingSpec(**{**values, **overrides})


def put(endpoint: str, table: str, pk: str, sk: str = "JOB", **attrs: str) -> None:
    item = {"pk": {"S": pk}, "sk": {"S": sk}, **{k: {"S": v} for k, v in attrs.items()}}
    client(endpoint, "dynamodb").put_item(TableName=table, Item=item)


class Recorder:
    """A fake EventsFunction: records every event; fails the first ``fail`` invocations."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        with self.lock:
            self.events.append(event)
            if self.fail > 0:
                self.fail -= 1
                raise RuntimeError("boom")


def eventually(check: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


# ---- filters and the event --------------------------------------------------------------------------------


def test_filter_patterns_match_as_lambda_filters_do() -> None:
    record = {"eventName": "MODIFY", "dynamodb": {"Keys": {"pk": {"S": "JOB#1"}, "sk": {"S": "JOB"}}}}
    assert matches_filters(record, ())
    assert matches_filters(record, JOB_FILTER)
    assert not matches_filters({"dynamodb": {"Keys": {"pk": {"S": "QUEUE#a"}, "sk": {"S": "STATS"}}}}, JOB_FILTER)
    assert matches_filters(record, ({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "JOB#"}]}}}},))
    assert matches_filters(record, ({"eventName": [{"anything-but": ["REMOVE"]}]},))
    assert not matches_filters(record, ({"eventName": ["INSERT"]}, {"userIdentity": [{"exists": True}]}))
    assert matches_filters(record, ({"eventName": ["INSERT"]}, {"userIdentity": [{"exists": False}]}))


def test_the_event_has_lambdas_shape() -> None:
    raw = {
        "eventID": "e1",
        "eventName": "INSERT",
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 11, 24, 1, 0, 0, tzinfo=UTC),
            "Keys": {"pk": {"S": "JOB#1"}, "sk": {"S": "JOB"}},
            "NewImage": {"pk": {"S": "JOB#1"}, "blob": {"B": b"\x00\x01"}},
            "SequenceNumber": "100",
            "SizeBytes": 10,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }

    (record,) = build_stream_event([raw], stream_arn="arn:stream", region=REGION)["Records"]

    assert record["eventSourceARN"] == "arn:stream" and record["eventVersion"] == "1.1"
    assert record["dynamodb"]["ApproximateCreationDateTime"] == 1795482000
    assert record["dynamodb"]["NewImage"]["blob"] == {"B": "AAE="}
    json.dumps(record)  # what Lambda sends is JSON


def test_the_template_declares_one_stream_mapping_the_local_stack_can_drive() -> None:
    props = template_stream_event()
    fn = FunctionSpec("EventsFunction", "f", "arn", "functions.events.handler.handler", 60, 256, {}, {"JobChanges": {"Type": "DynamoDB", "Properties": {**props, "Stream": "arn:s"}}}, "s")

    (mapping,) = stream_mappings([fn])

    assert mapping.batch_size == props["BatchSize"] and mapping.starting_position == "TRIM_HORIZON"
    assert mapping.filters == JOB_FILTER and mapping.maximum_retry_attempts == props["MaximumRetryAttempts"]
    assert mapping.tumbling_window_seconds == props["TumblingWindowInSeconds"] > 0  # so that Lambda names the shard


# ---- the poller -------------------------------------------------------------------------------------------


def test_job_records_reach_the_handler_in_batches_and_others_are_filtered_out(endpoint: str, table: tuple[str, str]) -> None:
    name, stream_arn = table
    for i in range(5):
        put(endpoint, name, f"JOB#{i}", status="waiting")
    put(endpoint, name, "QUEUE#a", "STATS")
    recorder = Recorder()
    mapping = StreamEventSourceMapping(spec(stream_arn), recorder, endpoint_url=endpoint, idle_seconds=0.05)
    mapping.start()
    try:
        assert mapping.wait_caught_up(10)
    finally:
        mapping.stop()

    keys = [r["dynamodb"]["Keys"]["pk"]["S"] for e in recorder.events for r in e["Records"]]
    assert keys == [f"JOB#{i}" for i in range(5)]
    assert all(len(e["Records"]) <= 2 for e in recorder.events)
    assert all(r["eventSourceARN"] == stream_arn for e in recorder.events for r in e["Records"])
    assert mapping.stats.filtered_out == 1


def test_a_failing_batch_is_retried_as_the_same_batch(endpoint: str, table: tuple[str, str]) -> None:
    name, stream_arn = table
    put(endpoint, name, "JOB#1")
    put(endpoint, name, "JOB#2")
    recorder = Recorder(fail=2)
    mapping = StreamEventSourceMapping(spec(stream_arn), recorder, endpoint_url=endpoint, idle_seconds=0.05, retry_seconds=0.05)
    mapping.start()
    try:
        assert eventually(lambda: len(recorder.events) >= 3)
    finally:
        mapping.stop()

    ids = [[r["eventID"] for r in e["Records"]] for e in recorder.events[:3]]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 2
    assert mapping.stats.errors == 2 and mapping.stats.invocations == 1


def test_a_tumbling_window_event_names_its_shard_and_an_answer_without_state_fails_the_batch(endpoint: str, table: tuple[str, str]) -> None:
    name, stream_arn = table
    put(endpoint, name, "JOB#1")
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any] | None:
        events.append(event)
        return None if len(events) == 1 else {"state": {}}  # Lambda wants ``state`` back with a window

    shard = client(endpoint, "dynamodbstreams").describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    mapping = StreamEventSourceMapping(
        spec(stream_arn, tumbling_window_seconds=60), handler, endpoint_url=endpoint, idle_seconds=0.05, retry_seconds=0.05
    )
    mapping.start()
    try:
        assert eventually(lambda: len(events) >= 2)
    finally:
        mapping.stop()

    assert len(events) == 2 and mapping.stats.errors == 1  # the first answer had no state: retried
    assert all(e["shardId"] == shard and e["state"] == {} and e["isFinalInvokeForWindow"] is False for e in events)
    assert events[0]["window"]["end"] > events[0]["window"]["start"]


def test_a_batch_that_keeps_failing_goes_to_the_on_failure_queue(endpoint: str, table: tuple[str, str]) -> None:
    name, stream_arn = table
    sqs = client(endpoint, "sqs")
    url = sqs.create_queue(QueueName=f"failed-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    put(endpoint, name, "JOB#1")
    put(endpoint, name, "JOB#2")
    put(endpoint, name, "JOB#3")
    recorder = Recorder(fail=2)
    mapping = StreamEventSourceMapping(
        spec(stream_arn, maximum_retry_attempts=1, on_failure_arn=arn), recorder, endpoint_url=endpoint, idle_seconds=0.05, retry_seconds=0.05
    )
    mapping.start()
    try:
        assert eventually(lambda: mapping.stats.invocations == 1)  # the next batch went through
    finally:
        mapping.stop()

    (message,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    failure = json.loads(message["Body"])
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["DDBStreamBatchInfo"]["batchSize"] == 2 and failure["DDBStreamBatchInfo"]["streamArn"] == stream_arn
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in recorder.events[-1]["Records"]] == ["JOB#3"]


def test_reported_item_failures_are_retried_from_the_lowest_one(endpoint: str, table: tuple[str, str]) -> None:
    name, stream_arn = table
    for i in range(3):
        put(endpoint, name, f"JOB#{i}")
    calls: list[list[str]] = []

    def partial(event: dict[str, Any], context: Any) -> dict[str, Any]:
        keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]]
        calls.append(keys)
        if len(calls) == 1:
            return {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["dynamodb"]["SequenceNumber"]}]}
        return {"batchItemFailures": []}

    mapping = StreamEventSourceMapping(
        spec(stream_arn, batch_size=3, report_batch_item_failures=True), partial, endpoint_url=endpoint, idle_seconds=0.05, retry_seconds=0.05
    )
    mapping.start()
    try:
        assert eventually(lambda: len(calls) >= 2)
    finally:
        mapping.stop()

    assert calls[:2] == [["JOB#0", "JOB#1", "JOB#2"], ["JOB#1", "JOB#2"]]


# ---- the Lambda API ------------------------------------------------------------------------------------------


@pytest.fixture
def lambda_api(endpoint: str) -> Iterator[tuple[LambdaApi, EventSourceMapping]]:
    mapping_spec = EventSourceMappingSpec(str(uuid.uuid4()), "ConsumerFunctionJobs", FUNCTION, "arn:aws:sqs:us-east-1:123456789012:q", 10, 0, 5, True, True)
    mapping = EventSourceMapping(mapping_spec, lambda e, c: None, queue_url=f"{endpoint}/123456789012/q", endpoint_url=endpoint)
    registry = MappingRegistry()
    registry.add(mapping)
    api = LambdaApi(registry).start()
    yield api, mapping
    api.stop()


def test_update_event_source_mapping_switches_the_emulated_mapping(lambda_api: tuple[LambdaApi, EventSourceMapping]) -> None:
    api, mapping = lambda_api
    lam = client(api.url, "lambda")

    assert lam.get_event_source_mapping(UUID=mapping.spec.uuid)["State"] == "Enabled"
    out = lam.update_event_source_mapping(UUID=mapping.spec.uuid, Enabled=False)

    assert out["State"] == "Disabled" and out["UUID"] == mapping.spec.uuid and out["BatchSize"] == 10
    assert out["ScalingConfig"] == {"MaximumConcurrency": 5}
    assert mapping.enabled is False
    assert lam.update_event_source_mapping(UUID=mapping.spec.uuid, Enabled=True)["State"] == "Enabled" and mapping.enabled


def test_the_lambda_api_answers_unknown_mappings_as_lambda_does(lambda_api: tuple[LambdaApi, EventSourceMapping]) -> None:
    api, _ = lambda_api
    lam = client(api.url, "lambda")

    with pytest.raises(ClientError) as err:
        lam.update_event_source_mapping(UUID=str(uuid.uuid4()), Enabled=False)

    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


# ---- moto's DynamoDB, as the local stack runs it ---------------------------------------------------------


def stream_records(endpoint: str, stream_arn: str) -> list[dict[str, Any]]:
    streams = client(endpoint, "dynamodbstreams")
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return list(streams.get_records(ShardIterator=iterator, Limit=1000)["Records"])


def test_a_failed_transaction_leaves_no_trace_and_undoes_no_one_else(
    endpoint: str, table: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_fixes.apply()
    from moto.dynamodb.models import DynamoDBBackend

    name, stream_arn = table
    ddb = client(endpoint, "dynamodb")
    put(endpoint, name, "MARKER", "APPLIED")
    put(endpoint, name, "QUEUE#a", "STATS", note="before")
    update_item = DynamoDBBackend.update_item
    writer = threading.Thread(target=put, args=(endpoint, name, "JOB#other"))

    def update_while_another_client_writes(self: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        out = update_item(self, table_name, key, *args, **kwargs)
        if key.get("pk") == {"S": "QUEUE#a"}:  # mid-transaction: another client writes
            writer.start()
            writer.join(0.3)  # unpatched moto lets it land now, and then its rollback undoes it
        return out

    monkeypatch.setattr(DynamoDBBackend, "update_item", update_while_another_client_writes)
    with pytest.raises(ClientError) as err:
        ddb.transact_write_items(
            TransactItems=[
                {"Update": {"TableName": name, "Key": {"pk": {"S": "QUEUE#a"}, "sk": {"S": "STATS"}}, "UpdateExpression": "SET note = :n", "ExpressionAttributeValues": {":n": {"S": "after"}}}},
                {"Put": {"TableName": name, "Item": {"pk": {"S": "MARKER"}, "sk": {"S": "APPLIED"}}, "ConditionExpression": "attribute_not_exists(pk)"}},
            ]
        )

    writer.join()
    assert err.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert ddb.get_item(TableName=name, Key={"pk": {"S": "QUEUE#a"}, "sk": {"S": "STATS"}})["Item"]["note"] == {"S": "before"}
    assert "Item" in ddb.get_item(TableName=name, Key={"pk": {"S": "JOB#other"}, "sk": {"S": "JOB"}})
    records = stream_records(endpoint, stream_arn)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in records] == ["MARKER", "QUEUE#a", "JOB#other"]  # not the update
    sequence = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequence == sorted(set(sequence))


def test_a_transaction_does_not_copy_the_table() -> None:
    moto_fixes.apply()
    from moto.dynamodb import models

    sentinel = object.__new__(models.Table)
    assert models.copy.deepcopy(sentinel) is sentinel  # type: ignore[attr-defined]
    assert models.copy.deepcopy({"a": [1]}) == {"a": [1]}  # type: ignore[attr-defined]


def test_shard_iterators_expire_as_in_dynamodb_streams(endpoint: str, table: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    moto_fixes.apply()
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    _, stream_arn = table
    streams = client(endpoint, "dynamodbstreams")
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert streams.get_records(ShardIterator=iterator)["Records"] == streams.get_records(ShardIterator=iterator)["Records"]  # reusable while young

    def kept() -> int:
        return sum(len(b.shard_iterators) for regions in dynamodbstreams_backends.values() for b in regions.values())

    before = kept()
    monkeypatch.setattr(moto_fixes, "ITERATOR_LIFETIME_SECONDS", 0)
    monkeypatch.setattr(moto_fixes, "SWEEP_EVERY_SECONDS", 0)
    for _ in range(50):
        iterator = streams.get_records(ShardIterator=iterator)["NextShardIterator"]

    assert kept() <= before + 1  # not one more per poll: the expired ones are gone


def sqs_queue(endpoint: str) -> tuple[Any, str]:
    sqs = client(endpoint, "sqs")
    return sqs, sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]


def send(sqs: Any, url: str, n: int, **entry: Any) -> None:
    for start in range(0, n, 10):
        entries = [{"Id": str(i), "MessageBody": f"m{start + i}", "MessageGroupId": "alice", **entry} for i in range(min(10, n - start))]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def test_a_send_to_a_deep_queue_looks_at_none_of_its_messages(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    moto_fixes.apply()
    from moto.sqs.models import Message

    sqs, url = sqs_queue(endpoint)
    send(sqs, url, 300)
    looked: list[int] = []
    visible = Message.visible

    def counted(message: Any) -> bool:
        looked.append(1)
        return bool(visible.fget(message))  # type: ignore[attr-defined]

    monkeypatch.setattr(Message, "visible", property(counted))
    send(sqs, url, 20)

    assert looked == []  # unpatched moto reads every message's visibility on every send: a backlog costs O(n^2) to build
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"] == {"ApproximateNumberOfMessages": "320"}


def test_a_queues_counts_and_visibility_hold_with_the_cheaper_clock(endpoint: str) -> None:
    moto_fixes.apply()
    sqs, url = sqs_queue(endpoint)
    send(sqs, url, 2)
    send(sqs, url, 1, DelaySeconds=60)

    [first] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)["Messages"]
    [second] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)["Messages"]  # not the delayed one
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    assert {first["Body"], second["Body"]} == {"m0", "m1"}
    assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"], counts["ApproximateNumberOfMessagesDelayed"]) == ("0", "2", "1")
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages") is None
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
    [again] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert again["MessageId"] == first["MessageId"]
