"""Webhooks through the local stack: a receiver on 127.0.0.1 gets the signed endings, and retries."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.webhooks import verify
from tests.integration.conftest import POLICY_CACHE_SECONDS, STACK_NAME, LocalStackProcess, wait_for_status
from tests.integration.local_control import aws
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


def secret(stack: LocalStackProcess, queue: str) -> str:
    """What an operator reads to verify signatures: the queue's secret in Secrets Manager."""
    return aws(stack, "secretsmanager").get_secret_value(SecretId=f"jobq/{STACK_NAME}/webhooks/{queue}")["SecretString"]


def email(url: str, **webhook: Any) -> dict[str, Any]:
    return {
        "queue": "email-sending",
        "type": "send-email",
        "data": {"to": "x@example.com", "subject": "Hi", "body": "Hello"},
        "options": {"jobId": f"hooked-{uuid.uuid4().hex[:8]}", "webhook": {"url": url, **webhook}},
    }


def deliveries(stack: LocalStackProcess, user: str, job_id: str, until: str, timeout: float = 30) -> list[dict[str, Any]]:
    with stack.client(user) as api:
        deadline = time.monotonic() + timeout
        while True:
            response = api.get(f"/jobs/{job_id}/webhooks")
            assert response.status_code == 200, response.text
            found = response.json()["data"]["deliveries"]
            if (found and all(d["status"] == until for d in found)) or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


def test_a_webhook_receiver_gets_a_correctly_signed_ending(local_stack: LocalStackProcess, receiver: WebhookReceiver) -> None:
    with local_stack.client("alice") as api:
        response = api.post("/jobs", json=email(f"{receiver.url}/ok"))
        assert response.status_code == 201, response.text
        job_id = response.json()["data"]["jobId"]
        assert response.json()["data"]["webhook"] == {"url": f"{receiver.url}/ok", "events": ["job:completed", "job:failed", "job:cancelled"]}
        wait_for_status(api, job_id, {"completed"})

    post = receiver.wait_for(lambda r: json.loads(r.body).get("jobId") == job_id)[0]
    body = json.loads(post.body)
    assert body["type"] == "job:completed" and body["status"] == "completed" and body["userId"] == "alice"
    assert body["result"]["to"] == "x@example.com"
    assert post.headers["x-jobq-event"] == "job:completed" and post.headers["content-type"] == "application/json"
    assert post.headers["x-jobq-signature"].startswith("v1=")
    assert verify(secret(local_stack, "email-sending"), post.headers["x-jobq-timestamp"], post.body, post.headers["x-jobq-signature"], now_s=int(time.time()))
    assert not verify("another-secret", post.headers["x-jobq-timestamp"], post.body, post.headers["x-jobq-signature"], now_s=int(time.time()))
    [record] = deliveries(local_stack, "alice", job_id, "delivered")
    assert record["status"] == "delivered" and record["attempts"] == 1 and record["httpStatus"] == 200
    assert record["event"] == "job:completed" and record["deliveryId"] == post.headers["x-jobq-delivery"]
    with local_stack.client("bob") as bob:
        assert bob.get(f"/jobs/{job_id}/webhooks").status_code == 404  # another user's job does not exist


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(local_stack: LocalStackProcess, receiver: WebhookReceiver) -> None:
    with local_stack.client("alice") as api:
        response = api.post("/jobs", json=email(f"{receiver.url}/fail/2"))
        job_id = response.json()["data"]["jobId"]
        wait_for_status(api, job_id, {"completed"})

    [record] = deliveries(local_stack, "alice", job_id, "delivered", timeout=45)
    posts = receiver.posts(job_id=job_id)
    assert [p.answered for p in posts] == [500, 500, 200]
    assert record["status"] == "delivered" and record["attempts"] == 3
    assert len({p.headers["x-jobq-delivery"] for p in posts}) == 1  # one delivery, three attempts
    assert posts[1].at - posts[0].at >= 0.9  # waited out the backoff (about a second here)
    key = secret(local_stack, "email-sending")
    assert all(verify(key, p.headers["x-jobq-timestamp"], p.body, p.headers["x-jobq-signature"], now_s=int(time.time())) for p in posts)


def test_a_queues_default_webhook_applies_to_jobs_without_their_own(local_stack: LocalStackProcess, receiver: WebhookReceiver) -> None:
    with local_stack.client("root", admin=True) as admin, local_stack.client("alice") as api:
        patched = admin.patch("/queues/report-generation", json={"webhook": {"url": f"{receiver.url}/ok", "events": ["job:active", "job:completed"]}})
        assert patched.status_code == 200, patched.text
        assert patched.json()["data"]["webhook"]["events"] == ["job:active", "job:completed"]
        try:
            time.sleep(POLICY_CACHE_SECONDS + 0.5)  # the policy cache (JOBQ_POLICY_CACHE_SECONDS) of the stream consumer
            body = {"queue": "report-generation", "type": "generate-report", "data": {"reportType": "daily", "rows": [{"a": 1}]}}
            job_id = api.post("/jobs", json=body).json()["data"]["jobId"]
            wait_for_status(api, job_id, {"completed"})
            receiver.wait_for(lambda r: json.loads(r.body).get("jobId") == job_id and json.loads(r.body)["type"] == "job:completed")
        finally:
            assert admin.patch("/queues/report-generation", json={"webhook": None}).json()["data"]["webhook"] is None
    assert [json.loads(p.body)["type"] for p in receiver.posts(job_id=job_id)] == ["job:active", "job:completed"]


@pytest.mark.parametrize("url", ["http://example.com/hook", "http://10.0.0.8/hook", "ftp://127.0.0.1/hook"])
def test_a_webhook_follows_the_address_rules_of_http_targets(local_stack: LocalStackProcess, url: str) -> None:
    with local_stack.client("alice") as api:
        response = api.post("/jobs", json=email(url))
    assert response.status_code in (400, 422), response.text
    assert response.json()["success"] is False
