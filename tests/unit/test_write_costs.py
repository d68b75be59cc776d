"""What a job's writes cost, billed as DynamoDB does (infra/local/meter.py's arithmetic on template.yaml's
jobs table): a job with 1 KB of typical JSON data costs one unit a write of its item, progress reports and
log lines touch no index, and compressed data and results read back exactly as sent."""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.consumer.handler import handler as consumer
from infra.local.cfn import load_template
from infra.local.meter import TableSpec, item_size
from shared import lifecycle
from shared.adapters import clients, queues
from shared.adapters.job_repository import _job_key, _job_pk, from_item, readable_record
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.clock import now_ms
from shared.jobs import Identity, JobService
from shared.models import QueuePolicy
from shared.worker import Delivery, Outcome
from tests.target_server import TargetServer
from tests.unit.api_events import admin, user
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event
from tests.unit.test_api import call

REPO = Path(__file__).resolve().parents[2]


def jobs_table() -> TableSpec:
    props = load_template(REPO / "template.yaml")["Resources"]["JobsTable"]["Properties"]
    return TableSpec.from_definition("JobsTable", props)


def raw_job(stack: Stack, user_id: str, job_id: str) -> dict[str, Any]:
    item: dict[str, Any] = clients.client("dynamodb").get_item(TableName=stack.table_name, Key=_job_key(user_id, job_id), ConsistentRead=True)["Item"]
    return item


WORDS = ["invoice", "order", "customer", "shipment", "payment", "refund", "account", "region", "warehouse", "alpha", "bravo", "delta", "north", "south", "report"]


def data_of(size: int, seed: int = 7) -> dict[str, Any]:
    """Typical JSON of ``size`` bytes: seeded pseudo-random records (ids, names, numbers, a nested object,
    words), which zlib shrinks ~1.5-2x (bench/cost_per_job.py makes its data the same way)."""
    rng = random.Random(seed)
    data: dict[str, Any] = {"records": []}
    while len(json.dumps(data, separators=(",", ":"))) < size:
        data["records"].append({
            "id": f"{rng.getrandbits(64):016x}", "name": f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()}",
            "amount": round(rng.uniform(0, 10_000), 2), "qty": rng.randrange(1, 500), "active": rng.random() < 0.7,
            "address": {"city": rng.choice(WORDS).title(), "zip": f"{rng.randrange(100_000):05d}"},
            "note": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 8))),
        })  # fmt: skip
    data["records"].pop()
    data["pad"] = ""
    data["pad"] = "x" * (size - len(json.dumps(data, separators=(",", ":"))))
    assert len(json.dumps(data, separators=(",", ":"))) == size
    return data


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def noise_of(size: int) -> dict[str, str]:
    """JSON of ``size`` bytes that zlib barely shrinks (random printable characters)."""
    alphabet = string.ascii_letters + string.digits + "!#$%&()*+,-./:;<=>?@[]^_{|}~"
    return {"k": "".join(random.Random(size).choices(alphabet, k=size - len('{"k":""}')))}


@pytest.mark.parametrize(("data", "table_units"), [(data_of(256), 1), (data_of(1024), 1), (noise_of(1500), 2)])
def test_a_progress_report_and_a_log_line_touch_no_index(stack: Stack, data: dict[str, Any], table_units: int) -> None:
    service = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    job, _ = service.create(JobCreate(queue="email-sending", type="send-email", data=data), Identity("ann"))
    claimed = stack.store.claim("ann", job.job_id, now=now_ms(), lease_ms=30_000, token="lease-1", max_history=25)
    table = jobs_table()

    before = raw_job(stack, "ann", job.job_id)
    stack.store.apply(lifecycle.progress(claimed, token="lease-1", value={"step": 3, "of": 10}, message="halfway", now=now_ms()))
    after = raw_job(stack, "ann", job.job_id)

    # The job item only, billed by its whole size (its data included, compressed: a progress item of its own is not built)
    assert table.write_cost(before, after) == {"table": table_units}

    stack.store.append_log("ann", job.job_id, "fetched 3 of 10 pages", at_ms=now_ms(), attempt=1, expires_at=now_ms() // 1000 + 3600)
    (line,) = clients.client("dynamodb").query(
        TableName=stack.table_name,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :log)",
        ExpressionAttributeValues={":pk": {"S": _job_pk("ann", job.job_id)}, ":log": {"S": "LOG#"}},
    )["Items"]
    assert table.write_cost(None, line) == {"table": 1}  # an item of its own, whatever the job's size


@pytest.mark.parametrize("data_bytes", [256, 1024])
def test_a_job_with_1_kb_of_json_data_costs_one_unit_for_each_of_its_writes(stack: Stack, data_bytes: int) -> None:
    """Create, claim and completion each bill the whole job item. Its own attributes are ~400 B (short names,
    ids and createdAt derived from the keys, timestamps as numbers, defaults left out) and 1 KB of typical
    JSON is stored compressed (~550 B), so the item stays within 1 KB through all three, quota hold included."""
    service = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    job, _ = service.create(JobCreate(queue="email-sending", type="send-email", data=data_of(data_bytes)), Identity("ann"))
    table = jobs_table()
    created = raw_job(stack, "ann", job.job_id)
    claimed = stack.store.claim("ann", job.job_id, now=now_ms(), lease_ms=30_000, token="0123456789abcdef0123456789abcdef", max_history=25)
    active = raw_job(stack, "ann", job.job_id)
    done = stack.store.apply(
        lifecycle.complete(claimed, token=claimed.lease_token, result={"ok": True}, processing_ms=120, now=now_ms(), policy=QueuePolicy())
    )
    completed = raw_job(stack, "ann", job.job_id)

    assert done.backoff == job.backoff and done.data == data_of(data_bytes)  # read back the same
    assert "B" in created["d"] if data_bytes == 1024 else True  # stored compressed
    assert max(item_size(i) for i in (created, active, completed)) <= 1024
    assert table.write_cost(None, created) == {"table": 1, "byOwner": 1, "byQueue": 1}
    assert table.write_cost(created, active) == {"table": 1}
    assert table.write_cost(active, completed) == {"table": 1, "byQueueState": 1}


def test_the_job_item_reads_back_as_the_job_the_api_shows(stack: Stack) -> None:
    """Short names, derived ids and numeric timestamps are the item's business: what a client reads is unchanged."""
    status, created = call("POST", "/jobs", body={"queue": "email-sending", "type": "send-email", "data": data_of(1024), "options": {"jobId": "inv-42"}}, claims=user("a#b%23c"))
    assert status == 201, created
    item = raw_job(stack, "a#b%23c", "inv-42")
    _, shown = call("GET", "/jobs/inv-42", claims=user("a#b%23c"))
    listed, _ = stack.store.page_by_user("a#b%23c", limit=10)

    assert not {"jobId", "userId", "createdAt", "status", "data"} & set(item)  # derived or spelled short
    assert shown["data"] == created["data"]
    assert shown["data"]["userId"] == "a#b%23c" and shown["data"]["jobId"] == "inv-42" and shown["data"]["data"] == data_of(1024)
    assert [(j.job_id, j.user_id, j.created_at) for j in listed] == [("inv-42", "a#b%23c", created["data"]["createdAt"])]


def _delivery(stack: Stack, job_id: str) -> Delivery:
    (message,) = [m for m in stack.receive("email-sending", wait=1) if job_id in m["Body"]]
    return Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], stack.queues["email-sending"])


def test_compressed_data_and_results_round_trip_through_the_api_an_http_target_and_a_code_processor(stack: Stack, target: TargetServer) -> None:
    data = data_of(2000)  # under the 2 KiB claim-check threshold: inline, compressed
    status, _ = call("PUT", "/queues/email-sending/processors/call", body={"kind": "http", "url": f"{target.url}/ok", "timeoutSeconds": 10}, claims=admin())
    assert status in (200, 201)

    _, by_http = call("POST", "/jobs", body={"queue": "email-sending", "type": "call", "data": data}, claims=user("alice"))
    assert consumer(sqs_event(stack, "email-sending", stack.receive("email-sending", wait=1)), FakeLambdaContext()) == {"batchItemFailures": []}
    _, by_code = call("POST", "/jobs", body={"queue": "email-sending", "type": "call", "data": data}, claims=user("alice"))
    code_id = by_code["data"]["jobId"]
    outcome = stack.worker(lambda queue, job: lambda context: {"records": context.data["records"][::-1], "n": 1.5}).handle(_delivery(stack, code_id))

    assert outcome is Outcome.COMPLETED
    assert [c.payload["data"] == data for c in target.calls] == [True]  # the target got the data as sent
    http_id = by_http["data"]["jobId"]
    for job_id, result in ((http_id, {"echo": data, "attempt": 1}), (code_id, {"records": data["records"][::-1], "n": 1.5})):
        item = raw_job(stack, "alice", job_id)
        assert "B" in item["d"] and "B" in item["r"] and "dataRef" not in item and "resultRef" not in item  # inline, compressed
        _, job = call("GET", f"/jobs/{job_id}", claims=user("alice"))
        assert job["data"]["status"] == "completed" and job["data"]["data"] == data and job["data"]["result"] == result
        _, alone = call("GET", f"/jobs/{job_id}/result", claims=user("alice"))
        assert alone["data"] == result
    _, listing = call("GET", "/jobs/user/alice", claims=user("alice"))
    assert all(j["data"] == data for j in listing["data"]["jobs"]) and len(listing["data"]["jobs"]) == 2


@pytest.mark.parametrize("data", [{"to": "a@example.com"}, noise_of(120)])
def test_data_that_compression_would_not_shrink_enough_is_stored_as_text(stack: Stack, data: dict[str, str]) -> None:
    status, created = call("POST", "/jobs", body={"queue": "email-sending", "type": "send-email", "data": data}, claims=user("alice"))
    assert status == 201

    item = raw_job(stack, "alice", created["data"]["jobId"])
    _, shown = call("GET", f"/jobs/{created['data']['jobId']}", claims=user("alice"))

    assert "S" in item["d"] and shown["data"]["data"] == data


def test_a_stream_event_of_a_compressed_job_reads_as_the_job(stack: Stack) -> None:
    """Lambda's stream events carry Binary attributes as base64 text; the EventsFunction's readers get long names."""
    data = data_of(1024)
    status, created = call("POST", "/jobs", body={"queue": "email-sending", "type": "send-email", "data": data}, claims=user("alice"))
    assert status == 201
    item = raw_job(stack, "alice", created["data"]["jobId"])
    as_lambda_sends = {**item, "d": {"B": base64.b64encode(item["d"]["B"]).decode()}}

    record = readable_record({"eventName": "INSERT", "dynamodb": {"Keys": {"pk": item["pk"], "sk": item["sk"]}, "NewImage": as_lambda_sends}})
    image = record["dynamodb"]["NewImage"]

    assert from_item(as_lambda_sends).data == data
    assert json.loads(image["data"]["S"]) == data
    assert (image["status"], image["userId"], image["jobId"]) == ({"S": "waiting"}, {"S": "alice"}, {"S": created["data"]["jobId"]})
    assert image["createdAt"] == {"S": created["data"]["createdAt"]} and image["updatedAt"] == {"S": created["data"]["updatedAt"]}
