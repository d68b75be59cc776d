"""The API through its Lambda entry (Mangum), with events shaped as API Gateway sends them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.main import handler
from tests.unit.api_events import admin, http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack


def call(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = handler(http_event(method, path, **kwargs), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def send_email(**options: Any) -> dict[str, Any]:
    return {"queue": "email-sending", "type": "send-email", "data": {"to": "a@example.com", "subject": "s", "body": "b"}, "options": options}


def test_creating_a_job_stores_it_waiting_and_enqueues_it(stack: Stack) -> None:
    status, body = call("POST", "/jobs", body=send_email(attempts=4), claims=user("alice"))

    assert status == 201 and body["success"] is True
    job = body["data"]
    assert job["status"] == "waiting" and job["userId"] == "alice" and job["maxAttempts"] == 4
    assert job["jobId"] and job["createdAt"] and job["attempts"] == 0
    messages = stack.receive("email-sending")
    assert [json.loads(m["Body"])["jobId"] for m in messages] == [job["jobId"]]


def test_a_job_takes_its_queue_defaults(stack: Stack) -> None:
    _, body = call("POST", "/jobs", body=send_email(), claims=user("alice"))
    assert body["data"]["maxAttempts"] == stack.queues["email-sending"].default_attempts
    assert body["data"]["backoff"] == {"type": "exponential", "delay": 1000}


def test_only_the_owner_or_an_admin_naming_the_owner_sees_a_job(stack: Stack) -> None:
    _, created = call("POST", "/jobs", body=send_email(), claims=user("alice"))
    job_id = created["data"]["jobId"]

    assert call("GET", f"/jobs/{job_id}", claims=user("alice"))[0] == 200
    status, body = call("GET", f"/jobs/{job_id}", claims=user("bob"))
    assert status == 404 and body == {"success": False, "error": {"code": "NOT_FOUND", "message": f"job {job_id} not found"}}
    assert call("GET", f"/jobs/{job_id}", claims=user("bob"), query="userId=alice")[0] == 404
    assert call("GET", f"/jobs/{job_id}", claims=admin())[0] == 404  # the admin's own namespace
    assert call("GET", f"/jobs/{job_id}", claims=admin(), query="userId=alice")[1]["data"]["jobId"] == job_id


def test_a_client_supplied_user_header_is_ignored(stack: Stack) -> None:
    _, created = call("POST", "/jobs", body=send_email(), claims=user("alice"))
    status, _ = call("GET", f"/jobs/{created['data']['jobId']}", claims=user("bob"), headers={"x-user-id": "alice"})
    assert status == 404


def test_without_authorizer_claims_the_api_answers_401(stack: Stack) -> None:
    status, body = call("POST", "/jobs", body=send_email())
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"


def test_an_unknown_queue_is_a_400_naming_the_valid_ones(stack: Stack) -> None:
    status, body = call("POST", "/jobs", body={**send_email(), "queue": "nope"}, claims=user("alice"))
    assert status == 400
    assert body["error"]["message"] == "unknown queue 'nope'; valid queues: email-sending, report-generation, video-processing"


def test_a_type_without_processor_is_a_400_naming_the_valid_ones(stack: Stack) -> None:
    status, body = call("POST", "/jobs", body={**send_email(), "type": "fax"}, claims=user("alice"))
    assert status == 400
    assert "valid types: publish, send-email" in body["error"]["message"]


def test_oversized_data_is_a_413_and_nothing_is_enqueued(stack: Stack) -> None:
    big = {**send_email(), "data": {"blob": "x" * (stack.settings.max_data_bytes + 1)}}
    status, body = call("POST", "/jobs", body=big, claims=user("alice"))
    assert status == 413 and body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert stack.receive("email-sending") == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"attempts": 0}, "options.attempts"),
        ({"attempts": 21}, "options.attempts"),
        ({"delay": -1}, "options.delay"),
        ({"backoff": {"type": "linear", "delay": 10}}, "options.backoff.type"),
        ({"jobId": "has spaces"}, "options.jobId"),
        ({"colour": "red"}, "options.colour"),
    ],
)
def test_invalid_options_are_a_400_saying_which_field(stack: Stack, options: dict[str, Any], field: str) -> None:
    status, body = call("POST", "/jobs", body=send_email(**options), claims=user("alice"))
    assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR"
    assert field in body["error"]["message"]


def test_a_body_that_is_not_json_is_a_400(stack: Stack) -> None:
    status, body = call("POST", "/jobs", body="{not json", claims=user("alice"))
    assert status == 400 and body["success"] is False


def test_an_existing_job_id_returns_the_existing_job_with_200(stack: Stack) -> None:
    first = call("POST", "/jobs", body=send_email(jobId="order-42-mail"), claims=user("alice"))
    second = call("POST", "/jobs", body=send_email(jobId="order-42-mail"), claims=user("alice"))

    assert first[0] == 201 and second[0] == 200
    assert second[1]["data"]["createdAt"] == first[1]["data"]["createdAt"]
    assert len(stack.receive("email-sending")) == 1
    # someone else's same id is another job: bob's own
    status, body = call("POST", "/jobs", body=send_email(jobId="order-42-mail"), claims=user("bob"))
    assert status == 201 and body["data"]["userId"] == "bob"


def test_registering_an_http_target_needs_admin_and_a_valid_url(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    target = {"kind": "http", "url": "https://worker.example.com/jobs", "timeoutSeconds": 10}
    assert call("PUT", "/queues/email-sending/processors/webhook", body=target, claims=user("alice"))[0] == 403
    status, body = call("PUT", "/queues/email-sending/processors/webhook", body=target, claims=admin())
    assert status == 200 and body["data"]["url"] == target["url"]
    # now the type is accepted
    assert call("POST", "/jobs", body={**send_email(), "type": "webhook"}, claims=user("alice"))[0] == 201

    status, body = call("PUT", "/queues/email-sending/processors/x", body={**target, "url": "http://203.0.113.9/"}, claims=admin())
    assert status == 400 and "https" in body["error"]["message"]
    status, body = call("PUT", "/queues/email-sending/processors/send-email", body=target, claims=admin())
    assert status == 409
    status, body = call("PUT", "/queues/nope/processors/x", body=target, claims=admin())
    assert status == 404 and "not found" in body["error"]["message"]


def test_health_reports_dynamodb_and_sqs(stack: Stack) -> None:
    from api.routes import health

    health._cached = None
    status, body = call("GET", "/health")
    assert status == 200 and body["status"] == "healthy"  # seed 000's shape: no envelope
    assert body["checks"] == {"database": True, "redis": True, "queues": True, "memory": True, "dynamodb": True, "sqs": True}
    assert {name: probe["status"] for name, probe in body["details"]["probes"].items()} == {"dynamodb": "up", "sqs": "up"}
    # The seed's camelCase inside details, as monitors parse it.
    assert all(isinstance(probe["latencyMs"], int) for probe in body["details"]["probes"].values())
    assert set(body["details"]["memory"]) == {"heapUsed", "heapTotal", "usage"}


def test_an_unknown_route_is_a_404_in_the_envelope(stack: Stack) -> None:
    status, body = call("GET", "/nothing-here", claims=user("alice"))
    assert status == 404 and body["success"] is False


def test_the_openapi_document_lists_the_routes(stack: Stack) -> None:
    status, body = call("GET", "/openapi.json")
    assert status == 200
    assert {"/jobs", "/jobs/{job_id}", "/queues/{name}/processors/{job_type}", "/health"} <= set(body["paths"])
