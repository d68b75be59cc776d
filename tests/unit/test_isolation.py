"""Issue 9: no user reaches another's jobs, and nothing a client sends yields a 5xx.

One test per finding of the issue, through the API's Lambda entry (Mangum) on moto, as
API Gateway would call it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from api.main import handler
from shared.adapters.job_repository import to_item
from shared.models import HttpTarget, JobRef
from shared.schedules import ScheduleCreate, firing_job_id
from shared.status import JobStatus
from tests.unit.api_events import admin, http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack
from tests.unit.scheduling import ADMIN, Scheduling, scheduling_fixture  # noqa: F401 (the fixture)

EMAIL = {"to": "a@example.com", "subject": "s", "body": "b"}


def call(method: str, path: str, *, claims: dict[str, str] | None, body: Any = None, query: str = "", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    response = handler(http_event(method, path, body=body, claims=claims, query=query, headers=headers), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def send_email(data: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    return {"queue": "email-sending", "type": "send-email", "data": data or EMAIL, "options": options}


def listings_answer(stack: Stack) -> None:
    """Every listing a user or an admin reads still answers 200."""
    for path, query, claims in (
        ("/jobs/user/alice", "", user("alice")),
        ("/jobs/user/bob", "", user("bob")),
        ("/jobs", "queue=email-sending", admin()),
        ("/queues/email-sending/jobs", "", admin()),
        ("/queues", "", admin()),
        ("/schedules", "", admin()),
    ):
        status, body = call("GET", path, claims=claims, query=query)
        assert status == 200, (path, body)


# ---- 1. deduplication answered with someone else's job ----------------------------------------------
@pytest.mark.parametrize("ttl", [30, None], ids=["with-ttl", "until-finished"])
def test_another_user_cannot_read_my_job_by_choosing_its_id_with_a_deduplication_key(stack: Stack, ttl: int | None) -> None:
    _, mine = call("POST", "/jobs", claims=user("alice"), body=send_email({**EMAIL, "secret": "alice's"}, jobId="invoice-42"))
    dedup = {"key": "k", **({"ttlSeconds": ttl} if ttl else {})}

    answers = [call("POST", "/jobs", claims=user("bob"), body=send_email(jobId="invoice-42", deduplication=dedup)) for _ in range(2)]
    bulk = call("POST", "/jobs/bulk", claims=user("bob"), body={"jobs": [send_email(jobId="invoice-42", deduplication=dedup)]})

    for status, body in answers:
        assert status in (200, 201) and body["data"]["userId"] == "bob" and "secret" not in body["data"]["data"]
    (item,) = bulk[1]["data"]["results"]
    assert item["job"]["userId"] == "bob" and "secret" not in item["job"]["data"]
    assert call("GET", "/jobs/invoice-42", claims=user("alice"))[1]["data"]["data"]["secret"] == "alice's"
    assert mine["data"]["userId"] == "alice"


def test_an_idempotency_key_only_ever_returns_my_own_job(stack: Stack) -> None:
    call("POST", "/jobs", claims=user("alice"), body=send_email(jobId="same"), headers={"Idempotency-Key": "k1"})

    status, body = call("POST", "/jobs", claims=user("bob"), body=send_email(jobId="same"), headers={"Idempotency-Key": "k1"})

    assert status == 201 and body["data"]["userId"] == "bob"


# ---- 2. one global namespace of ids ------------------------------------------------------------------
def test_two_users_can_both_use_invoice_42_and_each_works_only_on_their_own(stack: Stack) -> None:
    alice = call("POST", "/jobs", claims=user("alice"), body=send_email({"n": 1}, jobId="invoice-42"))
    bob = call("POST", "/jobs", claims=user("bob"), body=send_email({"n": 2}, jobId="invoice-42"))
    assert (alice[0], bob[0]) == (201, 201)  # bob learns nothing: the same answer as for a fresh id

    assert call("GET", "/jobs/invoice-42", claims=user("alice"))[1]["data"]["data"] == {"n": 1}
    assert call("GET", "/jobs/invoice-42", claims=user("bob"))[1]["data"]["data"] == {"n": 2}
    assert call("DELETE", "/jobs/invoice-42", claims=user("bob"))[1]["data"]["status"] == "cancelled"
    assert call("GET", "/jobs/invoice-42", claims=user("alice"))[1]["data"]["status"] == "waiting"
    assert call("POST", "/jobs/invoice-42/retry", claims=user("bob"))[1]["data"]["status"] == "waiting"
    assert call("GET", "/jobs/invoice-42/logs", claims=user("alice"))[0] == 200
    # the admin names the owner
    assert call("GET", "/jobs/invoice-42", claims=admin(), query="userId=bob")[1]["data"]["data"] == {"n": 2}
    assert call("GET", "/jobs/invoice-42", claims=admin(), query="userId=alice")[1]["data"]["data"] == {"n": 1}
    assert call("GET", "/jobs/invoice-42", claims=user("bob"), query="userId=alice")[0] == 404
    messages = [json.loads(m["Body"]) for m in stack.receive("email-sending")]
    assert {(m["userId"], m["jobId"]) for m in messages} == {("alice", "invoice-42"), ("bob", "invoice-42")}


def test_nobody_can_reserve_an_id_before_its_owner_uses_it(stack: Stack) -> None:
    assert call("POST", "/jobs", claims=user("bob"), body=send_email(jobId="report-2027"))[0] == 201

    status, body = call("POST", "/jobs", claims=user("alice"), body=send_email(jobId="report-2027"))

    assert status == 201 and body["data"]["userId"] == "alice"


def test_user_ids_with_separators_get_namespaces_of_their_own(stack: Stack) -> None:
    # "a#b" + "c" and "a" + "b#c" must not meet in one key
    assert call("POST", "/jobs", claims=user("a#b"), body=send_email({"who": "a#b"}, jobId="c"))[0] == 201
    assert call("POST", "/jobs", claims=user("a%23b"), body=send_email({"who": "a%23b"}, jobId="c"))[0] == 201
    assert stack.store.require("a#b", "c").data == {"who": "a#b"}
    assert stack.store.require("a%23b", "c").data == {"who": "a%23b"}


def test_client_job_ids_follow_the_documented_rule(stack: Stack) -> None:
    for bad in ("repeat:nightly:20300101T070000Z", "-x", "a b", "a#b", "é", "x" * 129, ""):
        status, body = call("POST", "/jobs", claims=user("alice"), body=send_email(jobId=bad))
        assert status == 400 and "jobId" in body["error"]["message"], bad
    assert call("POST", "/jobs", claims=user("alice"), body=send_email(jobId="A1_b.c-" + "x" * 121))[0] == 201


# ---- 3. suppressing a schedule ---------------------------------------------------------------------------
def test_a_schedule_firing_always_runs_the_schedules_own_job(scheduling: Scheduling) -> None:
    scheduling.schedules.create(
        ScheduleCreate(name="nightly", queue="email-sending", type="send-email", data=EMAIL, cron="0 7 * * *"), ADMIN
    )
    job_id = firing_job_id("nightly", "2030-01-01T07:00:00Z")
    # what a user would try: the firing's id (refused), and the old spelling of it (their own job, harmless)
    assert call("POST", "/jobs", claims=user("mallory"), body=send_email(jobId=job_id))[0] == 400
    assert call("POST", "/jobs", claims=user("mallory"), body=send_email(jobId="repeat-nightly-20300101T070000Z"))[0] == 201
    assert call("POST", "/jobs", claims=user("root"), body=send_email(jobId=job_id))[0] == 400  # not even the admin

    result = scheduling.schedules.fire("nightly", "2030-01-01T07:00:00Z")
    again = scheduling.schedules.fire("nightly", "2030-01-01T07:00:00Z")

    assert (result.outcome, again.outcome) == ("created", "duplicate") and result.job_id == job_id
    job = scheduling.stack.store.require("root", job_id)
    assert job.type == "send-email" and job.data == EMAIL and job.status is JobStatus.WAITING
    record = scheduling.schedules.get("nightly", ADMIN)
    assert record.run_count == 1 and record.last_job_id == job_id
    assert call("GET", f"/jobs/{job_id}", claims=admin())[1]["data"]["jobId"] == job_id


# ---- 4. lone surrogates --------------------------------------------------------------------------------
def test_a_lone_surrogate_in_job_data_is_refused_before_anything_is_stored(stack: Stack) -> None:
    raw = '{"queue": "email-sending", "type": "send-email", "data": {"to": "a@example.com", "note": "\\ud800"}}'

    status, body = call("POST", "/jobs", claims=user("alice"), body=raw)
    bulk_status, bulk = call("POST", "/jobs/bulk", claims=user("alice"), body='{"jobs": [' + raw + "]}")

    assert status == 400 and "data.note" in body["error"]["message"] and "surrogate" in body["error"]["message"]
    assert bulk_status == 400 and "jobs[0].data.note" in bulk["error"]["message"]
    assert stack.receive("email-sending") == []
    assert call("GET", "/jobs/user/alice", claims=user("alice"))[1]["data"]["jobs"] == []
    listings_answer(stack)


def test_listings_render_a_job_stored_with_values_json_does_not_have(stack: Stack) -> None:
    call("POST", "/jobs", claims=user("alice"), body=send_email(jobId="fine"))
    old = stack.store.require("alice", "fine").model_copy(
        update={"job_id": "legacy", "data": {"note": "\ud800", "ratio": float("nan")}, "result": {"x": float("inf")}}
    )
    from shared.adapters import clients

    clients.client("dynamodb").put_item(TableName=stack.table_name, Item=to_item(old))  # as written before the API refused them

    status, body = call("GET", "/jobs/user/alice", claims=user("alice"))

    assert status == 200
    legacy = next(j for j in body["data"]["jobs"] if j["jobId"] == "legacy")
    assert legacy["data"] == {"note": "\ufffd", "ratio": None} and legacy["result"] == {"x": None}
    assert call("GET", "/jobs/legacy", claims=user("alice"))[0] == 200
    listings_answer(stack)


# ---- 5. tampered cursors ---------------------------------------------------------------------------------
def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _b64({"pk": {"S": 123}}),
        _b64({"pk": {"S": "JOB#x"}, "sk": {"S": "JOB"}}),
        _b64({"pk": {"S": 123}}) + ".AAAAAAAAAAAAAAAAAAAAAA",
        "garbage!",
        ".",
        "a" * 2048,
    ],
    ids=["wrong-type", "well-formed-unsigned", "forged-tag", "garbage", "dot", "long"],
)
def test_a_cursor_the_service_did_not_issue_is_a_400_on_every_listing(stack: Stack, cursor: str) -> None:
    call("POST", "/jobs", claims=user("alice"), body=send_email(jobId="x"))
    scheduled = [
        ("/jobs/user/alice", "", user("alice")),
        ("/jobs", "queue=email-sending&", admin()),
        ("/queues/email-sending/jobs", "", admin()),
        ("/jobs/x/logs", "", user("alice")),
        ("/schedules", "", admin()),
    ]
    for path, query, claims in scheduled:
        status, body = call("GET", path, claims=claims, query=f"{query}cursor={cursor}")
        assert status == 400 and "cursor" in body["error"]["message"], (path, status, body)
    listings_answer(stack)


def test_a_cursor_pages_on_in_its_own_listing_only(stack: Stack) -> None:
    for i in range(3):
        call("POST", "/jobs", claims=user("alice"), body=send_email({"n": i}))
    _, first = call("GET", "/jobs/user/alice", claims=user("alice"), query="limit=2")
    cursor = first["data"]["nextCursor"]

    status, second = call("GET", "/jobs/user/alice", claims=user("alice"), query=f"limit=2&cursor={cursor}")

    assert status == 200 and len(first["data"]["jobs"]) + len(second["data"]["jobs"]) == 3
    assert call("GET", "/jobs/user/alice", claims=user("alice"), query=f"limit=2&status=waiting&cursor={cursor}")[0] == 400
    assert call("GET", "/jobs/user/alice", claims=admin(), query=f"limit=2&queue=video-processing&cursor={cursor}")[0] == 400
    assert call("GET", "/jobs", claims=admin(), query=f"queue=email-sending&cursor={cursor}")[0] == 400


# ---- 6. NaN and Infinity ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"queue": "email-sending", "type": "send-email", "data": {"ratio": NaN}}', "data.ratio"),
        ('{"queue": "email-sending", "type": "send-email", "data": {"x": [1, Infinity]}}', "data.x[1]"),
        ('{"queue": "email-sending", "type": "send-email", "data": {"x": -Infinity}}', "data.x"),
        ('{"queue": "email-sending", "type": "send-email", "data": {"n": 9007199254740993}}', "data.n"),
        ('{"queue": "email-sending", "type": "send-email", "data": {"n": 1e300}}', "data.n"),
        ('{"queue": "email-sending", "type": "send-email", "data": {}, "options": {"priority": NaN}}', "options.priority"),
        ('{"queue": "email-sending", "type": "send-email", "data": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}", "nests deeper"),
    ],
    ids=["nan", "infinity", "minus-infinity", "beyond-2^53", "beyond-1e126", "nan-in-options", "too-deep"],
)
def test_numbers_json_does_not_have_are_refused_naming_the_field(stack: Stack, raw: str, field: str) -> None:
    status, body = call("POST", "/jobs", claims=user("alice"), body=raw)

    assert status == 400 and field in body["error"]["message"], body
    assert stack.receive("email-sending") == []


def test_a_processor_result_that_is_not_strict_json_fails_the_job_instead_of_being_stored(stack: Stack) -> None:
    call("POST", "/jobs", claims=user("alice"), body=send_email(jobId="r", attempts=1))
    worker = stack.worker(resolve=lambda queue, job: lambda context: {"score": float("nan")})
    from shared.worker import Delivery

    (message,) = stack.receive("email-sending")
    worker.handle(Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], stack.queues["email-sending"]))

    job = stack.store.require("alice", "r")
    assert job.status is JobStatus.FAILED and "result.score" in (job.error or "") and job.result is None


def test_progress_that_is_not_strict_json_is_refused() -> None:
    from shared import strict_json

    assert strict_json.problem({"eta": float("inf")}, "progress") == "progress.eta: is NaN or Infinity, which JSON does not have"


# ---- 7. admin detection ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("groups", "is_admin"),
    [
        ("[admin]", True),
        (["admin", "users"], True),
        ('["users", "admin"]', True),
        ("admin", True),
        ("[not admin]", False),
        ("[sales,admin]", False),
        ("[Domain admin]", False),
        ("[admins]", False),
        ("[ admin]", False),
        ('["Domain admin"]', False),
        ("", False),
        ("[]", False),
    ],
)
def test_admin_is_an_exact_group_name_of_the_verified_token(stack: Stack, groups: Any, is_admin: bool) -> None:
    claims: dict[str, Any] = {**user("eve"), "cognito:groups": groups}

    status, _ = call("GET", "/queues", claims=claims)

    assert status == (200 if is_admin else 403)


# ---- 8. numbers out of range, hostile HTTP targets -------------------------------------------------------------
@pytest.mark.parametrize("older_than", ["1e20", "100000000000000000000", "-1", "1.5", "NaN", '"soon"'])
def test_cleaning_with_an_impossible_age_is_a_400(stack: Stack, older_than: str) -> None:
    status, body = call("POST", "/queues/email-sending/clean", claims=admin(), body='{"olderThan": ' + older_than + ', "status": "completed"}')

    assert status == 400 and "olderThan" in body["error"]["message"], body


@pytest.mark.parametrize("value", ["1e20", "99999999999999999999", "0", "-1", "NaN", "1.5", ""])
def test_numbers_in_query_strings_have_bounds(stack: Stack, value: str) -> None:
    call("POST", "/jobs", claims=user("alice"), body=send_email(jobId="x"))
    for path, query, claims in (
        ("/jobs/user/alice", "limit", user("alice")),
        ("/jobs/x/logs", "limit", user("alice")),
        ("/jobs", "queue=email-sending&limit", admin()),
        ("/queues/email-sending/jobs", "limit", admin()),
        ("/queues/email-sending/dead-letters", "limit", admin()),
        ("/queues/email-sending/metrics", "hours", admin()),
        ("/scheduler/metrics", "hours", admin()),
        ("/schedules", "limit", admin()),
    ):
        status, body = call("GET", path, claims=claims, query=f"{query}={value}")
        assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR", (path, value, body)


@pytest.mark.parametrize(
    "body",
    [
        {"hours": 10**20},
        {"options": {"delay": 10**15}},
        {"options": {"attempts": 10**12}},
        {"options": {"backoff": {"type": "fixed", "delay": 1e20}}},
        {"options": {"runAt": "9999-12-31T23:59:59-23:59"}},
        {"options": {"runAt": "0001-01-01T00:00:00+01:00"}},
        {"options": {"runAt": "2030-02-30T00:00:00Z"}},
        {"options": {"deduplication": {"key": "k", "ttlSeconds": 10**18}}},
    ],
)
def test_numbers_and_dates_in_bodies_have_bounds(stack: Stack, body: dict[str, Any]) -> None:
    status, out = call("POST", "/jobs", claims=user("alice"), body={**send_email(), **body})
    assert status == 400, out
    status, out = call("POST", "/scheduler/delayed", claims=user("alice"), body={**send_email(), **body, "delay": 1000})
    assert status == 400, out


@pytest.mark.parametrize(
    "url",
    [
        "https://worker.example.com/jobs\r\nX-Injected: 1",
        "https://worker.example.com/a b",
        "https://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254/",
        "https://10.0.0.5/hook",
        "https://[fd00::1]/hook",
        "https://user:pass@worker.example.com/",
        "https://worker.example.com:99999/",
        "ftp://worker.example.com/",
        "http://203.0.113.9/",
    ],
)
def test_http_targets_with_crlf_or_internal_hosts_are_refused(stack: Stack, url: str) -> None:
    status, body = call("PUT", "/queues/email-sending/processors/hook", claims=admin(), body={"kind": "http", "url": url})

    assert status == 400, (url, body)
    assert call("POST", "/jobs", claims=user("alice"), body={**send_email(), "type": "hook"})[0] == 400  # never registered


def test_on_aws_http_targets_are_https_to_public_addresses_only() -> None:
    def resolver(addresses: list[str]) -> Any:
        return lambda host, port: addresses

    def refused(url: str, addresses: list[str]) -> bool:
        try:
            HttpTarget(url=url).check_url(allow_loopback_http=False, resolve=resolver(addresses))
        except ValueError:
            return True
        return False

    assert not refused("https://worker.example.com/jobs", ["93.184.216.34"])
    assert refused("http://worker.example.com/jobs", ["93.184.216.34"])
    assert refused("https://127.0.0.1/", [])
    assert refused("http://127.0.0.1:9999/hook", [])  # loopback is the local stack's alone
    assert refused("https://rebind.example.com/", ["93.184.216.34", "169.254.169.254"])
    assert refused("https://internal.example.com/", ["10.1.2.3"])
    assert refused("https://v6.example.com/", ["::1"])
    assert refused("https://mapped.example.com/", ["::ffff:127.0.0.1"])
    assert refused("https://nowhere.example.com/", [])


def test_an_http_target_may_not_wait_longer_than_its_consumer_runs(stack: Stack) -> None:
    timeout = stack.queues["email-sending"].consumer_timeout

    status, body = call(
        "PUT", "/queues/email-sending/processors/hook", claims=admin(), body={"kind": "http", "url": "https://worker.example.com/", "timeoutSeconds": timeout + 1}
    )

    assert status == 400 and "consumer's timeout" in body["error"]["message"]
    ok = {"kind": "http", "url": "https://worker.example.com/", "timeoutSeconds": timeout}
    assert call("PUT", "/queues/email-sending/processors/hook", claims=admin(), body=ok)[0] == 200


def test_dead_letters_and_the_health_sweep_address_jobs_by_owner_and_id(stack: Stack) -> None:
    for who in ("alice", "bob"):
        call("POST", "/jobs", claims=user(who), body=send_email({"who": who}, jobId="same", attempts=1))
    worker = stack.worker(resolve=lambda queue, job: lambda context: (_ for _ in ()).throw(RuntimeError("boom")))
    from shared.worker import Delivery

    for message in stack.receive("email-sending"):
        worker.handle(Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], stack.queues["email-sending"]))
    _, letters = call("GET", "/queues/email-sending/dead-letters", claims=admin())

    owners = sorted((d["userId"], d["job"]["data"]["who"]) for d in letters["data"]["deadLetters"])
    assert owners == [("alice", "alice"), ("bob", "bob")]
    status, out = call("POST", "/queues/email-sending/dead-letters/redrive", claims=admin(), body={"jobIds": ["same"], "userId": "bob"})
    assert status == 200 and out["data"]["redriven"] == ["same"]
    assert stack.store.require("bob", "same").status is JobStatus.WAITING
    assert stack.store.require("alice", "same").status is JobStatus.FAILED
    assert JobRef("bob", "same") in {JobRef(b["userId"], b["jobId"]) for b in (json.loads(m["Body"]) for m in stack.receive("email-sending"))}
