"""A sweep of hostile requests over every route (tests/hostile_inputs.py), in process through
the Lambda entry: no answer is a 5xx, every error is the envelope, and afterwards every
listing still answers 200."""

from __future__ import annotations

import base64
import json

from api.app import app
from api.main import handler
from infra.local.esm import MappingRegistry
from shared.schedules import ScheduleCreate
from tests.hostile_inputs import LISTINGS, cases
from tests.unit.api_events import admin, http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack
from tests.unit.scheduling import ADMIN, Scheduling, scheduling_fixture  # noqa: F401 (the fixture)
from tests.unit.test_queues import mappings  # noqa: F401 (the fixture)


def send(method: str, path: str, query: str, body: bytes | None, claims: dict[str, str]) -> tuple[int, str]:
    event = http_event(method, path, claims=claims, query=query)
    if body is not None:
        # API Gateway passes a body that is not UTF-8 base64-encoded
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    response = handler(event, FakeLambdaContext())
    return response["statusCode"], response.get("body") or ""


def test_no_hostile_request_gets_a_5xx_and_every_listing_still_answers(
    scheduling: Scheduling, stack: Stack, mappings: MappingRegistry  # noqa: F811
) -> None:
    scheduling.schedules.create(
        ScheduleCreate(name="nightly", queue="email-sending", type="send-email", data={}, cron="0 2 * * *"), ADMIN
    )
    assert send("POST", "/jobs", "", b'{"queue": "email-sending", "type": "send-email", "data": {}, "options": {"jobId": "hostile-job"}}', user("alice"))[0] == 201
    sent, failures = 0, []
    for case in cases(app.openapi()):
        for claims in (admin(), user("alice")):
            status, body = send(case.method, case.path, case.query, case.body, claims)
            sent += 1
            if status >= 500:
                failures.append(f"{case} -> {status} {body[:200]}")
            elif status >= 400 and body and json.loads(body).get("success") is not False:
                failures.append(f"{case} -> {status} without the error envelope: {body[:200]}")
    assert not failures, f"{len(failures)} of {sent} hostile requests failed:\n" + "\n".join(failures[:40])
    for path, query in LISTINGS:
        status, body = send("GET", path, query, None, admin())
        assert status == 200, (path, body[:300])
    assert sent > 2000
