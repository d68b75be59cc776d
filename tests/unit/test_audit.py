"""The audit trail on moto: what an entry holds, how long it lives, and that refused or failed
actions leave none."""

from __future__ import annotations

import json
import time

import pytest

from api import access
from api.main import handler
from shared.adapters import clients
from shared.settings import get_settings
from tests.unit.api_events import admin, http_event, in_group
from tests.unit.conftest import FakeLambdaContext, Stack


def audit_items(stack: Stack) -> list[dict]:
    out = clients.client("dynamodb").query(
        TableName=stack.table_name, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "AUDIT"}}
    )
    return out["Items"]


def test_an_entry_says_who_what_when_and_the_request_id_and_expires_by_ttl(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQ_AUDIT_RETENTION_DAYS", "2")
    get_settings.cache_clear()
    access.audit_log.cache_clear()
    out = handler(http_event("PATCH", "/queues/email-sending", body={"defaultAttempts": 4}, claims=admin("root")), FakeLambdaContext())
    assert out["statusCode"] == 200
    (item,) = audit_items(stack)
    assert abs(int(item["expiresAt"]["N"]) - (time.time() + 2 * 86400)) < 60
    entry = json.loads(item["entry"]["S"])
    assert entry["action"] == "patch_queue" and entry["route"] == "PATCH /queues/{name}"
    assert (entry["actor"], entry["groups"], entry["requestId"], entry["queue"]) == ("root", ["admin"], "req-1", "email-sending")
    assert entry["body"] == {"defaultAttempts": 4}


def test_refused_and_failed_actions_leave_no_entry_and_reads_none(stack: Stack) -> None:
    refused = handler(http_event("PATCH", "/queues/email-sending", body={"defaultAttempts": 4}, claims=in_group("rita", "readonly")), FakeLambdaContext())
    assert refused["statusCode"] == 403
    invalid = handler(http_event("PATCH", "/queues/email-sending", body={"defaultAttempts": 99}, claims=admin()), FakeLambdaContext())
    assert invalid["statusCode"] == 400
    missing = handler(http_event("POST", "/schedules/nope/pause", claims=admin()), FakeLambdaContext())
    assert missing["statusCode"] == 404
    assert handler(http_event("GET", "/queues/email-sending", claims=admin()), FakeLambdaContext())["statusCode"] == 200
    assert audit_items(stack) == []


def test_the_listing_is_newest_first_and_readers_may_see_it(stack: Stack) -> None:
    for attempts in (2, 3, 4):
        handler(http_event("PATCH", "/queues/email-sending", body={"defaultAttempts": attempts}, claims=admin()), FakeLambdaContext())
    out = handler(http_event("GET", "/audit", claims=in_group("rita", "readonly"), query="limit=2"), FakeLambdaContext())
    data = json.loads(out["body"])["data"]
    assert [e["body"]["defaultAttempts"] for e in data["entries"]] == [4, 3]
    more = handler(http_event("GET", "/audit", claims=admin(), query=f"limit=2&cursor={data['nextCursor']}"), FakeLambdaContext())
    assert [e["body"]["defaultAttempts"] for e in json.loads(more["body"])["data"]["entries"]] == [2]
