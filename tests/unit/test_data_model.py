"""The data model (docs/data-model.md): write-sharded key-only indexes merged on read, a read-free claim."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from functions.consumer.handler import handler as consumer
from shared.adapters import queues
from shared.adapters.job_repository import JobStore, shard_of
from shared.clock import now_ms
from shared.errors import Invalid
from shared.models import JobRef
from shared.settings import get_settings
from shared.status import JobStatus
from shared.worker import Delivery, Outcome
from tests.target_server import TargetServer
from tests.unit.api_events import admin, user
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event
from tests.unit.faults import failing
from tests.unit.scheduling import put_job
from tests.unit.test_api import call


def pages(path: str, claims: dict[str, str], limit: int, query: str = "") -> list[list[str]]:
    """Every page of a listing, following nextCursor, as lists of job ids."""
    out: list[list[str]] = []
    cursor: str | None = None
    while True:
        q = f"limit={limit}" + (f"&{query}" if query else "") + (f"&cursor={cursor}" if cursor else "")
        status, body = call("GET", path, claims=claims, query=q)
        assert status == 200, body
        out.append([j["jobId"] for j in body["data"]["jobs"]])
        cursor = body["data"].get("nextCursor")
        if not cursor:
            return out
        assert len(out) < 50, "the listing never ends"


def test_a_listing_merged_from_several_shards_comes_newest_first_page_after_page(stack: Stack) -> None:
    base = now_ms() - 100_000
    jobs = [put_job(stack, JobStatus.COMPLETED if i % 3 == 0 else JobStatus.WAITING, created_ms=base + i * 1000) for i in range(23)]
    assert len({shard_of(j.user_id, j.job_id, stack.store.shards) for j in jobs}) >= 4  # the jobs really are spread
    newest_first = [j.job_id for j in sorted(jobs, key=lambda j: j.created_at, reverse=True)]

    by_queue = pages("/queues/email-sending/jobs", admin(), 5)
    by_owner = pages("/jobs/user/alice", user("alice"), 5)
    completed = pages("/queues/email-sending/jobs", admin(), 3, "status=completed")

    for listing in (by_queue, by_owner):
        assert [len(p) for p in listing] == [5, 5, 5, 5, 3]
        assert [job_id for page in listing for job_id in page] == newest_first
    assert [job_id for page in completed for job_id in page] == [j.job_id for j in sorted(jobs, key=lambda j: j.created_at, reverse=True) if j.status is JobStatus.COMPLETED]


def test_a_status_no_index_keys_is_found_by_a_bounded_scan_that_still_pages_in_order(stack: Stack) -> None:
    base = now_ms() - 100_000
    jobs = [put_job(stack, JobStatus.COMPLETED if i % 2 else JobStatus.WAITING, created_ms=base + i * 1000) for i in range(20)]
    waiting = [j.job_id for j in sorted(jobs, key=lambda j: j.created_at, reverse=True) if j.status is JobStatus.WAITING]

    listing = pages("/queues/email-sending/jobs", admin(), 4, "status=waiting")

    assert [job_id for page in listing for job_id in page] == waiting
    assert all(len(page) <= 4 for page in listing)


def test_a_cursor_naming_a_shard_the_stack_does_not_have_is_refused(stack: Stack) -> None:
    wide = JobStore(stack.table_name, index_shards=16)
    for i in range(40):
        put_job(stack, JobStatus.COMPLETED, created_ms=now_ms() - i * 1000)
    _, cursor = wide.page_by_queue("email-sending", limit=30)
    assert cursor is not None

    with pytest.raises(Invalid):
        JobStore(stack.table_name, index_shards=2).page_by_queue("email-sending", limit=5, cursor=cursor)


def test_a_claim_is_one_conditional_write_and_no_read(stack: Stack) -> None:
    job = put_job(stack, JobStatus.WAITING, queue="email-sending")
    queues.send_job(stack.queues["email-sending"], JobRef.of(job))
    seen: dict[str, Any] = {}
    message = stack.receive("email-sending", wait=1)[0]

    def processor(context: Any) -> dict[str, bool]:
        seen["status"] = stack.store.require(job.user_id, job.job_id).status  # read by the test, after the claim
        return {"ok": True}

    delivery = Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], stack.queues["email-sending"])
    with failing("dynamodb", "GetItem", response=None) as reads, failing("dynamodb", "UpdateItem", response=None) as writes:
        outcome = stack.worker(lambda queue, j: processor).handle(delivery)

    assert outcome is Outcome.COMPLETED and seen["status"] is JobStatus.ACTIVE
    job_reads = [body for body in reads.seen if body["Key"]["pk"]["S"].startswith("JOB#")]
    assert len(job_reads) == 1  # the test's own read inside the processor; the consumer read no job (the queue's policy is cached)
    assert writes.hits == 2  # the claim and the completion
    done = stack.store.require(job.user_id, job.job_id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 1
    assert [(r.attempt, r.outcome) for r in done.history] == [(1, "completed")]


# ---- the claim check: data and results past a few KB live in S3 -------------------------------------
@pytest.fixture
def target(monkeypatch: pytest.MonkeyPatch) -> Iterator[TargetServer]:
    monkeypatch.setenv("JOBQ_ALLOW_LOOPBACK_HTTP_TARGETS", "true")  # as the local stack allows
    get_settings.cache_clear()
    with TargetServer() as server:
        yield server
    get_settings.cache_clear()


def _create_big(blob: str) -> str:
    status, body = call("POST", "/jobs", body={"queue": "email-sending", "type": "call", "data": {"blob": blob}}, claims=user("alice"))
    assert status == 201, body
    return str(body["data"]["jobId"])


def _delivery(stack: Stack, job_id: str) -> Delivery:
    (message,) = [m for m in stack.receive("email-sending", wait=1) if job_id in m["Body"]]
    return Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], stack.queues["email-sending"])


def test_a_4_mb_payload_and_result_round_trip_through_the_api_an_http_target_and_a_code_processor(stack: Stack, target: TargetServer) -> None:
    blob = os.urandom(2_000_000).hex()  # 4,000,000 characters of data
    status, _ = call("PUT", "/queues/email-sending/processors/call", body={"kind": "http", "url": f"{target.url}/ok", "timeoutSeconds": 10}, claims=admin())
    assert status in (200, 201)

    by_http = _create_big(blob)
    assert consumer(sqs_event(stack, "email-sending", stack.receive("email-sending", wait=1)), FakeLambdaContext()) == {"batchItemFailures": []}
    by_code = _create_big(blob)
    outcome = stack.worker(lambda queue, job: lambda context: {"reversed": context.data["blob"][::-1]}).handle(_delivery(stack, by_code))

    assert outcome is Outcome.COMPLETED
    assert [c.payload["data"]["blob"] == blob for c in target.calls] == [True]  # the target got the data whole
    _, job = call("GET", f"/jobs/{by_http}", claims=user("alice"))
    assert job["data"]["status"] == "completed" and job["data"]["data"] == {"blob": blob}
    assert job["data"]["omitted"] == ["result"] and job["data"]["result"] is None  # 8 MB would not fit one Lambda answer
    _, result = call("GET", f"/jobs/{by_http}/result", claims=user("alice"))
    assert result["data"] == {"echo": {"blob": blob}, "attempt": 1}
    _, result = call("GET", f"/jobs/{by_code}/result", claims=user("alice"))
    assert result["data"] == {"reversed": blob[::-1]}
    _, listing = call("GET", "/jobs/user/alice", claims=user("alice"))
    assert {j["jobId"]: j["omitted"] for j in listing["data"]["jobs"]} == {by_http: ["data", "result"], by_code: ["data", "result"]}
    items = [stack_item(stack, "alice", job_id) for job_id in (by_http, by_code)]
    assert all(len(json.dumps(item)) < 4096 for item in items)  # the job items stay small: the payloads are in S3


def test_data_past_5_mb_is_refused_and_nothing_is_stored(stack: Stack) -> None:
    status, body = call("POST", "/jobs", body={"queue": "email-sending", "type": "send-email", "data": {"to": "a@example.com", "subject": "s", "body": "x" * 5_000_000}}, claims=user("alice"))

    assert status == 413 and body["success"] is False
    assert stack.store.page_by_user("alice", limit=10)[0] == []


def stack_item(stack: Stack, user_id: str, job_id: str) -> dict[str, Any]:
    from shared.adapters import clients

    key = {"pk": {"S": f"JOB#{user_id}#{job_id}"}, "sk": {"S": "JOB"}}
    item: dict[str, Any] = clients.client("dynamodb").get_item(TableName=stack.table_name, Key=key)["Item"]
    return item
