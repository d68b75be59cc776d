"""The whole job API (listing, cancel, retry, progress, logs, idempotency, dedup, bulk) through Mangum."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from functions.consumer.handler import handler as consumer
from shared.status import JobStatus
from shared.worker import Delivery, JobContext, Outcome, RetryLater
from tests.unit.api_events import admin, user
from tests.unit.conftest import FakeLambdaContext, Stack, arrange, sqs_event
from tests.unit.test_api import call, send_email


def create(owner: str, **options: Any) -> dict[str, Any]:
    status, body = call("POST", "/jobs", body=send_email(**options), claims=user(owner))
    assert status in (200, 201), body
    return body["data"]


def run_queue(stack: Stack, queue: str = "email-sending") -> dict[str, Any]:
    return consumer(sqs_event(stack, queue, stack.receive(queue)), FakeLambdaContext())


# ---- listing ---------------------------------------------------------------------------------
def test_a_user_lists_their_jobs_newest_first_in_pages(stack: Stack) -> None:
    ids = [create("alice")["jobId"] for _ in range(5)]
    create("bob")

    status, first = call("GET", "/jobs/user/alice", claims=user("alice"), query="limit=2")
    assert status == 200
    assert [j["jobId"] for j in first["data"]["jobs"]] == ids[::-1][:2]
    cursor = first["data"]["nextCursor"]
    seen = [j["jobId"] for j in first["data"]["jobs"]]
    while cursor:
        _, page = call("GET", "/jobs/user/alice", claims=user("alice"), query=f"limit=2&cursor={cursor}")
        seen += [j["jobId"] for j in page["data"]["jobs"]]
        cursor = page["data"]["nextCursor"]
    assert seen == ids[::-1]


def test_listing_filters_by_status_and_queue(stack: Stack) -> None:
    first = create("alice")["jobId"]
    create("alice")
    call("DELETE", f"/jobs/{first}", claims=user("alice"))

    _, cancelled = call("GET", "/jobs/user/alice", claims=user("alice"), query="status=cancelled")
    assert [j["jobId"] for j in cancelled["data"]["jobs"]] == [first]
    _, other_queue = call("GET", "/jobs/user/alice", claims=user("alice"), query="queue=report-generation")
    assert other_queue["data"]["jobs"] == []
    _, both = call("GET", "/jobs/user/alice", claims=user("alice"), query="status=waiting&queue=email-sending")
    assert len(both["data"]["jobs"]) == 1


def test_a_user_may_not_list_another_users_jobs_but_an_admin_may(stack: Stack) -> None:
    create("alice")
    assert call("GET", "/jobs/user/alice", claims=user("bob"))[0] == 403
    assert len(call("GET", "/jobs/user/alice", claims=admin())[1]["data"]["jobs"]) == 1


def test_admins_list_a_queue_by_status(stack: Stack) -> None:
    create("alice")
    create("bob")
    assert call("GET", "/jobs", claims=user("alice"), query="queue=email-sending")[0] == 403
    _, body = call("GET", "/jobs", claims=admin(), query="queue=email-sending&status=waiting")
    assert {j["userId"] for j in body["data"]["jobs"]} == {"alice", "bob"}
    assert call("GET", "/jobs", claims=admin(), query="queue=nope")[0] == 400


def test_a_bad_cursor_or_status_is_a_400(stack: Stack) -> None:
    assert call("GET", "/jobs/user/alice", claims=user("alice"), query="cursor=garbage!")[0] == 400
    assert call("GET", "/jobs/user/alice", claims=user("alice"), query="status=sleeping")[0] == 400
    assert call("GET", "/jobs/user/alice", claims=user("alice"), query="limit=1000")[0] == 400


# ---- cancel ------------------------------------------------------------------------------------
def test_a_cancelled_waiting_job_is_never_processed(stack: Stack) -> None:
    job_id = create("alice")["jobId"]

    status, body = call("DELETE", f"/jobs/{job_id}", claims=user("alice"))
    run_queue(stack)

    assert status == 200 and body["data"]["status"] == "cancelled"
    assert stack.store.require("alice", job_id).status is JobStatus.CANCELLED
    assert call("DELETE", f"/jobs/{job_id}", claims=user("alice"))[0] == 409
    assert call("DELETE", f"/jobs/{job_id}", claims=user("bob"))[0] == 404


def test_a_running_job_stops_at_its_next_progress_report_and_ends_cancelled(stack: Stack) -> None:
    job_id = create("alice")["jobId"]
    message = stack.receive("email-sending")[0]
    delivery = Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], stack.queues["email-sending"])
    started, cancel_done = threading.Event(), threading.Event()
    steps: list[int] = []

    def slow(job: JobContext) -> dict[str, str]:
        for step in range(100):
            job.progress(step, f"step {step}")
            steps.append(step)
            if step == 1:
                started.set()
                cancel_done.wait(5)
        return {"finished": "all"}

    outcome: list[Outcome] = []
    runner = threading.Thread(target=lambda: outcome.append(stack.worker(resolve=lambda _q, _j: slow).handle(delivery)))
    runner.start()
    assert started.wait(5)
    status, body = call("DELETE", f"/jobs/{job_id}", claims=user("alice"))
    cancel_done.set()
    runner.join(5)

    assert status == 202 and body["data"]["status"] == "active" and body["data"]["cancelRequested"] is True
    assert outcome == [Outcome.CANCELLED]
    assert steps == [0, 1]
    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.CANCELLED and job.history[-1].outcome == "cancelled"


def test_a_finished_job_cannot_be_cancelled(stack: Stack) -> None:
    job_id = create("alice")["jobId"]
    run_queue(stack)
    status, body = call("DELETE", f"/jobs/{job_id}", claims=user("alice"))
    assert status == 409 and "completed" in body["error"]["message"]


# ---- retry -------------------------------------------------------------------------------------
def test_a_failed_job_is_retried_with_fresh_attempts_and_keeps_its_history(stack: Stack) -> None:
    job_id = create("alice", attempts=1, jobId="will-fail")["jobId"]
    job = stack.store.require("alice", job_id)
    job = arrange(stack, job, JobStatus.ACTIVE, {"attempts": 1, "history": [{"attempt": 1, "startedAt": "2026-01-01T00:00:00.000Z"}]})
    failed_attempt = {"attempt": 1, "startedAt": "2026-01-01T00:00:00.000Z", "endedAt": "2026-01-01T00:00:01.000Z", "outcome": "failed", "error": "boom"}
    arrange(stack, job, JobStatus.FAILED, {"error": "boom", "history": [failed_attempt]})
    stack.receive("email-sending")  # drop the first message: the job already failed

    status, body = call("POST", f"/jobs/{job_id}/retry", claims=user("alice"))
    assert status == 200 and body["data"]["status"] == "waiting" and body["data"]["attempts"] == 0
    assert body["data"]["retries"] == 1 and body["data"]["error"] is None
    run_queue(stack)

    done = stack.store.require("alice", job_id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 1
    assert [(h.attempt, h.outcome) for h in done.history] == [(1, "failed"), (1, "completed")]
    assert call("POST", f"/jobs/{job_id}/retry", claims=user("alice"))[0] == 409


# ---- progress and logs ---------------------------------------------------------------------------
def test_progress_and_log_lines_are_visible_and_paged(stack: Stack) -> None:
    job_id = create("alice")["jobId"]
    message = stack.receive("email-sending")[0]
    delivery = Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], stack.queues["email-sending"])
    seen: dict[str, Any] = {}

    def reporting(job: JobContext) -> None:
        for n in range(3):
            job.log(f"line {n}")
        job.progress({"sent": 3, "of": 4}, "almost")
        seen["job"] = call("GET", f"/jobs/{job_id}", claims=user("alice"))[1]["data"]

    stack.worker(resolve=lambda _q, _j: reporting).handle(delivery)

    assert seen["job"]["progress"] == {"sent": 3, "of": 4} and seen["job"]["progressMessage"] == "almost"
    _, first = call("GET", f"/jobs/{job_id}/logs", claims=user("alice"), query="limit=2")
    _, second = call("GET", f"/jobs/{job_id}/logs", claims=user("alice"), query=f"limit=2&cursor={first['data']['nextCursor']}")
    lines = [line["message"] for line in first["data"]["lines"] + second["data"]["lines"]]
    assert lines == ["line 0", "line 1", "line 2"] and first["data"]["lines"][0]["attempt"] == 1
    assert call("GET", f"/jobs/{job_id}/logs", claims=user("bob"))[0] == 404


def test_progress_out_of_range_is_refused(stack: Stack) -> None:
    job_id = create("alice")["jobId"]
    message = stack.receive("email-sending")[0]
    delivery = Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], stack.queues["email-sending"])

    def bad(job: JobContext) -> None:
        job.progress(150)

    with pytest.raises(RetryLater):
        stack.worker(resolve=lambda _q, _j: bad).handle(delivery)
    assert "between 0 and 100" in (stack.store.require("alice", job_id).error or "")


# ---- idempotency and deduplication ---------------------------------------------------------------
def test_an_idempotency_key_returns_the_same_job_for_the_same_body(stack: Stack) -> None:
    headers = {"idempotency-key": "order-7"}
    first = call("POST", "/jobs", body=send_email(), claims=user("alice"), headers=headers)
    again = call("POST", "/jobs", body=send_email(), claims=user("alice"), headers=headers)
    other = call("POST", "/jobs", body={**send_email(), "data": {"to": "x@example.com", "subject": "s", "body": "b"}}, claims=user("alice"), headers=headers)

    assert first[0] == 201 and again[0] == 200
    assert again[1]["data"]["jobId"] == first[1]["data"]["jobId"]
    assert other[0] == 409 and "different request body" in other[1]["error"]["message"]
    assert len(stack.receive("email-sending")) == 1
    # keys are per user
    assert call("POST", "/jobs", body=send_email(), claims=user("bob"), headers=headers)[0] == 201


def test_a_deduplication_key_returns_the_live_job(stack: Stack) -> None:
    dedup = {"key": "user-42-digest", "ttlSeconds": 60}
    first = create("alice", deduplication=dedup)
    second = create("alice", deduplication=dedup)
    assert second["jobId"] == first["jobId"]


def test_without_ttl_a_deduplication_key_holds_until_the_job_finishes(stack: Stack) -> None:
    dedup = {"key": "nightly"}
    first = create("alice", deduplication=dedup)
    assert create("alice", deduplication=dedup)["jobId"] == first["jobId"]
    run_queue(stack)
    assert stack.store.require("alice", first["jobId"]).status is JobStatus.COMPLETED
    assert create("alice", deduplication=dedup)["jobId"] != first["jobId"]


# ---- bulk -------------------------------------------------------------------------------------------
def test_bulk_creates_each_item_on_its_own(stack: Stack) -> None:
    items = [send_email() for _ in range(30)] + [{**send_email(), "queue": "nope"}, {"queue": "email-sending"}]

    status, body = call("POST", "/jobs/bulk", body={"jobs": items}, claims=user("alice"))

    assert status == 200
    data = body["data"]
    assert data["created"] == 30 and data["failed"] == 2
    assert [r["status"] for r in data["results"][-2:]] == [400, 400]
    assert "unknown queue" in data["results"][30]["error"]["message"]
    assert "type" in data["results"][31]["error"]["message"]
    created = {r["job"]["jobId"] for r in data["results"] if r["success"]}
    received: set[str] = set()
    for _ in range(6):
        received |= {json.loads(m["Body"])["jobId"] for m in stack.receive("email-sending")}
    assert received == created


def test_bulk_refuses_more_than_100_jobs(stack: Stack) -> None:
    status, body = call("POST", "/jobs/bulk", body={"jobs": [send_email()] * 101}, claims=user("alice"))
    assert status == 400 and "at most 100" in body["error"]["message"]


def test_the_openapi_document_lists_every_job_route_with_examples(stack: Stack) -> None:
    _, spec = call("GET", "/openapi.json")
    assert {"/jobs", "/jobs/bulk", "/jobs/user/{user_id}", "/jobs/{job_id}", "/jobs/{job_id}/retry", "/jobs/{job_id}/logs"} <= set(spec["paths"])
    assert set(spec["paths"]["/jobs/{job_id}"]) == {"get", "delete"}
    assert spec["components"]["schemas"]["JobCreate"]["examples"]




def test_the_docs_work_behind_a_named_stage(stack: Stack) -> None:
    from api.main import handler as api_handler
    from tests.unit.api_events import http_event

    def staged(path: str) -> dict[str, Any]:
        event = http_event("GET", f"/prod{path}")
        event["requestContext"]["stage"] = "prod"
        return api_handler(event, FakeLambdaContext())

    docs = staged("/docs")
    assert docs["statusCode"] == 200 and "/prod/openapi.json" in docs["body"]
    spec = staged("/openapi.json")
    assert spec["statusCode"] == 200 and "/jobs/bulk" in json.loads(spec["body"])["paths"]
