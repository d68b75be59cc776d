"""Live job events: the WebSocket routes and the stream consumer, on moto with a real @connections target.

The handlers run as Lambda runs them (events/ samples and the events API Gateway sends); their
PostToConnection calls go through boto3 to an @connections server on 127.0.0.1
(tests/connections_server.py), which answers 410 for connections that are not open.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from functions.realtime import services
from functions.realtime.connections import handler as connections_handler
from functions.realtime.stream import handler as stream_handler
from shared.adapters import queues
from shared.adapters.job_repository import to_item
from shared.client_models import JobCreate
from shared.jobs import Identity, JobService
from shared.models import Job
from shared.realtime import EventType, ProgressThrottle, change_kind
from shared.settings import get_settings
from shared.status import JobStatus
from tests.connections_server import ConnectionsServer
from tests.unit.conftest import FakeLambdaContext, Stack

EVENTS = Path(__file__).resolve().parents[2] / "events"


@dataclass
class Live:
    stack: Stack
    server: ConnectionsServer
    realtime_table: str

    def token(self, user: str, *, admin: bool = False, **kwargs: Any) -> str:
        return self.server.issuer.mint(user, admin=admin, **kwargs)

    def connect(self, connection_id: str, token: str | None) -> dict[str, Any]:
        event = _event("$connect", connection_id)
        event["headers"] = {"Host": "127.0.0.1", **({"Authorization": f"Bearer {token}"} if token else {})}
        response = connections_handler(event, FakeLambdaContext())
        if response["statusCode"] == 200:
            self.server.open(connection_id)
        return response

    def send(self, connection_id: str, message: dict[str, Any]) -> list[dict[str, Any]]:
        before = len(self.server.received(connection_id))
        event = _event("$default", connection_id)
        event["body"] = json.dumps(message)
        assert connections_handler(event, FakeLambdaContext())["statusCode"] == 200
        return self.server.received(connection_id)[before:]

    def create(self, user: str, job_id: str, queue: str = "email-sending") -> Job:
        from shared.catalog import ProcessorCatalog

        jobs = JobService(self.stack.store, queues.directory(), ProcessorCatalog(self.stack.store, 0), self.stack.settings)
        types = {"email-sending": ("send-email", {"to": "a@example.com", "subject": "Hi", "body": "Hello"}),
                 "video-processing": ("transcode-video", {"videoUrl": "s3://v/1"})}
        job_type, data = types[queue]
        job, _ = jobs.create(JobCreate(queue=queue, type=job_type, data=data, options={"jobId": job_id}), Identity(user))
        return job

    def stream(self, *changes: tuple[Job | None, Job | None]) -> dict[str, Any]:
        """The stream records of these changes, fed to the RealtimeEventsFunction."""
        records = []
        for n, (old, new) in enumerate(changes):
            images: dict[str, Any] = {"Keys": {"pk": {"S": "JOB#x"}, "sk": {"S": "JOB"}}, "SequenceNumber": str(n + 1)}
            if old is not None:
                images["OldImage"] = to_item(old)
            if new is not None:
                images["NewImage"] = to_item(new)
            records.append({"eventID": f"e{n}", "eventName": "MODIFY" if old and new else "INSERT", "dynamodb": images})
        return stream_handler({"Records": records}, FakeLambdaContext())


def _event(route_key: str, connection_id: str) -> dict[str, Any]:
    event = json.loads((EVENTS / "websocket-subscribe.json").read_text())
    event.pop("body")
    event["requestContext"].update(routeKey=route_key, connectionId=connection_id,
                                   eventType={"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE"))
    return event


@pytest.fixture
def live(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    from shared.adapters import clients

    table = clients.client("dynamodb").list_tables()["TableNames"]
    realtime_table = next(t for t in table if t.endswith("RealtimeTable"))
    with ConnectionsServer(tmp_path) as server:
        for name, value in {
            "JOBQ_REALTIME_TABLE_NAME": realtime_table,
            "JOBQ_WEBSOCKET_ENDPOINT": server.websocket_endpoint,
            "JOBQ_JWT_ISSUER": server.issuer.issuer,
            "JOBQ_JWT_AUDIENCE": f"other-client,{server.issuer.audience}",
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        services.reset()
        yield Live(stack, server, realtime_table)
    services.reset()
    get_settings.cache_clear()


def _moved(job: Job, status: JobStatus, **changes: Any) -> Job:
    return job.model_copy(update={"status": status, "version": job.version + 1, **changes})


# ---- what a change means ---------------------------------------------------------------------------------------------


def test_each_change_of_a_job_is_named_as_seed_002_and_bullmq_name_it() -> None:
    base = Job(job_id="j", queue="q", type="t", user_id="u", status=JobStatus.WAITING, created_at="2026-01-01T00:00:00.000Z",
               updated_at="2026-01-01T00:00:00.000Z")
    active = _moved(base, JobStatus.ACTIVE, attempts=1)
    assert change_kind(None, base) is EventType.WAITING
    assert change_kind(None, _moved(base, JobStatus.DELAYED)) is EventType.DELAYED
    assert change_kind(base, active) is EventType.ACTIVE
    assert change_kind(active, active.model_copy(update={"progress": 40})) is EventType.PROGRESS
    assert change_kind(active, active.model_copy(update={"cancel_requested": True})) is None
    assert change_kind(active, _moved(active, JobStatus.ACTIVE, attempts=2)) is EventType.ACTIVE  # reclaimed after a stall
    assert change_kind(active, _moved(active, JobStatus.DELAYED, error="boom")) is EventType.FAILED  # will retry
    assert change_kind(active, _moved(active, JobStatus.COMPLETED)) is EventType.COMPLETED
    assert change_kind(active, _moved(active, JobStatus.FAILED)) is EventType.FAILED
    assert change_kind(active, _moved(active, JobStatus.CANCELLED)) is EventType.CANCELLED
    assert change_kind(active, _moved(active, JobStatus.STALLED)) is EventType.STALLED
    assert change_kind(active, None) is None  # removed by a clean or TTL


def test_progress_is_coalesced_to_the_latest_per_interval_and_an_ending_drops_what_is_held() -> None:
    throttle = ProgressThrottle(1000)
    key = ("conn", "alice", "job")
    assert throttle.offer(key, 10_000, {"progress": 1}) is True
    assert throttle.offer(key, 10_100, {"progress": 2}) is False
    assert throttle.offer(key, 10_200, {"progress": 3}) is False  # replaces 2
    assert throttle.due(10_900) == []
    assert throttle.due(11_000) == [(key, {"progress": 3})]
    assert throttle.offer(key, 11_500, {"progress": 4}) is False
    throttle.drop(key)  # the job completed: 4 is superseded
    assert throttle.held() == 0 and throttle.due(99_999) == []
    assert throttle.offer(("other", "alice", "job"), 11_600, {"progress": 4}) is True  # per connection


# ---- $connect -----------------------------------------------------------------------------------------------------------


def test_connect_with_the_issuers_token_is_accepted_and_remembered(live: Live) -> None:
    assert live.connect("c1", live.token("alice"))["statusCode"] == 200
    assert services.realtime_service().connections.get_connection("c1").caller.user_id == "alice"


@pytest.mark.parametrize("case", ["missing", "forged", "wrong-audience", "expired", "wrong-issuer"])
def test_connect_without_a_valid_token_is_refused(live: Live, case: str, tmp_path: Path) -> None:
    from infra.local.issuer import LocalIssuer

    token = {
        "missing": lambda: None,
        "forged": lambda: LocalIssuer.load(tmp_path / "other", issuer=live.server.issuer.issuer, audience=live.server.issuer.audience).mint("alice"),
        "wrong-audience": lambda: live.token("alice", claims={"aud": "someone-else"}),
        "expired": lambda: live.token("alice", expires_in=-60),
        "wrong-issuer": lambda: live.token("alice", claims={"iss": "https://issuer.example.com"}),
    }[case]()
    assert live.connect("c1", token)["statusCode"] == 401
    assert services.realtime_service().connections.get_connection("c1") is None


def test_the_connect_sample_event_connects_with_a_token_in_the_query(live: Live) -> None:
    event = json.loads((EVENTS / "websocket-connect.json").read_text())
    event["queryStringParameters"]["token"] = live.token("user-123")
    assert connections_handler(event, FakeLambdaContext()) == {"statusCode": 200}
    assert services.realtime_service().connections.get_connection("L0SM9cOFvHcCIhw=").caller.user_id == "user-123"


# ---- subscribing ---------------------------------------------------------------------------------------------------------


def test_the_subscribe_sample_event_answers_subscribed_and_the_jobs_state(live: Live) -> None:
    live.connect("L0SM9cOFvHcCIhw=", live.token("user-123"))
    live.create("user-123", "job-123")

    response = connections_handler(json.loads((EVENTS / "websocket-subscribe.json").read_text()), FakeLambdaContext())

    assert response["statusCode"] == 200
    subscribed, current = live.server.received("L0SM9cOFvHcCIhw=")
    assert subscribed == {"type": "subscribed", "jobId": "job-123", "userId": "user-123", "status": "waiting"}
    assert {k: current[k] for k in ("type", "jobId", "userId", "queue", "status")} == {
        "type": "job:waiting", "jobId": "job-123", "userId": "user-123", "queue": "email-sending", "status": "waiting"}


def test_subscribing_to_a_finished_job_sends_its_final_event_at_once(live: Live) -> None:
    live.connect("c1", live.token("alice"))
    job = live.create("alice", "report-1")
    done = _moved(job, JobStatus.COMPLETED, attempts=1, result={"rows": 3})
    from shared.adapters import clients

    clients.client("dynamodb").put_item(TableName=live.stack.table_name, Item=to_item(done))  # as the consumer left it

    replies = live.send("c1", {"action": "subscribe", "jobId": "report-1"})

    assert [r["type"] for r in replies] == ["subscribed", "job:completed"]
    assert replies[1]["result"] == {"rows": 3} and replies[1]["status"] == "completed"


def test_another_user_cannot_watch_my_job_by_naming_me(live: Live) -> None:
    live.connect("bob", live.token("bob"))
    live.create("alice", "invoice-42")

    replies = live.send("bob", {"action": "subscribe", "jobId": "invoice-42", "userId": "alice"})

    assert replies == [{"type": "error", "code": "NOT_FOUND", "message": "job invoice-42 not found"}]


def test_only_those_who_may_read_a_whole_queue_subscribe_to_it(live: Live) -> None:
    live.connect("bob", live.token("bob"))
    live.connect("root", live.token("root", admin=True))

    assert live.send("bob", {"action": "subscribe", "queue": "email-sending"})[0]["code"] == "FORBIDDEN"
    assert live.send("root", {"action": "subscribe", "queue": "nope"})[0]["code"] == "INVALID_REQUEST"
    assert live.send("root", {"action": "subscribe", "queue": "email-sending"}) == [{"type": "subscribed", "queue": "email-sending"}]


def _grant(queue: str, **access: list[str]) -> None:
    from shared.access import QueueAccess
    from shared.adapters import policies

    policies.update_policy(queues.directory().get(queue), lambda p: p.model_copy(update={"access": QueueAccess(**access)}))


def test_a_read_only_operator_watches_any_job_and_queue_as_the_http_api_lets_them_read(live: Live) -> None:
    live.connect("olga", live.token("olga", groups=["readonly"]))
    job = live.create("alice", "invoice-7")

    replies = live.send("olga", {"action": "subscribe", "jobId": "invoice-7", "userId": "alice"})
    assert [r["type"] for r in replies] == ["subscribed", "job:waiting"]
    assert live.send("olga", {"action": "subscribe", "queue": "video-processing"}) == [{"type": "subscribed", "queue": "video-processing"}]

    live.stream((job, _moved(job, JobStatus.ACTIVE, attempts=1)))
    assert live.server.types("olga")[-1] == "job:active"


def test_a_queues_read_group_watches_that_queue_and_its_jobs_only(live: Live) -> None:
    _grant("email-sending", read=["support"])
    live.connect("sam", live.token("sam", groups=["support"]))
    email = live.create("alice", "mail-1")
    video = live.create("alice", "video-1", queue="video-processing")

    assert live.send("sam", {"action": "subscribe", "queue": "email-sending"}) == [{"type": "subscribed", "queue": "email-sending"}]
    assert live.send("sam", {"action": "subscribe", "queue": "video-processing"})[0]["code"] == "FORBIDDEN"
    assert [r["type"] for r in live.send("sam", {"action": "subscribe", "jobId": "mail-1", "userId": "alice"})] == ["subscribed", "job:waiting"]
    # A job on a queue the group may not read: not found, as GET /jobs/video-1?userId=alice answers them.
    assert live.send("sam", {"action": "subscribe", "jobId": "video-1", "userId": "alice"})[0]["code"] == "NOT_FOUND"

    live.stream((email, _moved(email, JobStatus.ACTIVE, attempts=1)), (video, _moved(video, JobStatus.ACTIVE, attempts=1)))
    assert [m.get("jobId") for m in live.server.received("sam") if m["type"] == "job:active"] == ["mail-1"]


def test_a_permission_taken_away_stops_the_events_of_a_queue_subscription(live: Live) -> None:
    _grant("email-sending", operate=["email-ops"])
    live.connect("ops", live.token("ops", groups=["email-ops"]))
    assert live.send("ops", {"action": "subscribe", "queue": "email-sending"})[0]["type"] == "subscribed"
    _grant("email-sending")  # the policy no longer names the group
    from shared.adapters import policies

    policies._cache.clear()  # what policy_cache_seconds does in a while, at once
    job = live.create("alice", "mail-2")

    outcome = live.stream((None, job))

    assert outcome["denied"] == 1 and live.server.types("ops") == ["subscribed"]


def test_a_queue_subscription_gets_a_bounded_number_of_events_a_second_across_jobs(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQ_REALTIME_QUEUE_EVENTS_PER_SECOND", "30")
    monkeypatch.setenv("JOBQ_REALTIME_QUEUE_PROGRESS_PER_SECOND", "10")
    get_settings.cache_clear()
    services.reset()
    live.connect("root", live.token("root", admin=True))
    live.connect("alice", live.token("alice"))
    live.send("root", {"action": "subscribe", "queue": "video-processing"})
    live.send("alice", {"action": "subscribe", "jobId": "v-0"})
    from shared.clock import iso

    now = int(time.time() * 1000)
    jobs = [_moved(live.create("alice", f"v-{n}", queue="video-processing"), JobStatus.ACTIVE, attempts=1) for n in range(50)]
    # 50 jobs report progress within the same second, then all complete: 100 events for the queue.
    changes = [(j, j.model_copy(update={"progress": 50, "updated_at": iso(now)})) for j in jobs]
    changes += [(j, _moved(j, JobStatus.COMPLETED, result={"ok": True})) for j in jobs]

    services.use_clock(lambda: now)  # all within one second of the fan-out's clock (moto takes longer)
    try:
        outcome = live.stream(*changes)
    finally:
        services.use_clock(None)

    to_root = live.server.received("root")[1:]
    kinds = [m["type"] for m in to_root]
    assert kinds.count("job:progress") == 10 and kinds.count("job:completed") == 20  # 30 in all: the budget
    dropped = [m for m in to_root if m["type"] == "queue:dropped"]
    assert len(dropped) == 1 and dropped[0]["queue"] == "video-processing" and dropped[0]["dropped"] == 70
    assert outcome["capped"] == 70
    # A job's own subscriber is not behind the queue's budget.
    assert [m["type"] for m in live.server.received("alice")][-2:] == ["job:progress", "job:completed"]


@pytest.mark.parametrize(
    "message",
    [{"action": "dance"}, {"action": "subscribe"}, {"action": "subscribe", "jobId": "a", "queue": "email-sending"}, {"action": "subscribe", "jobId": "no spaces"}],
)
def test_a_message_the_api_does_not_know_is_answered_with_an_error(live: Live, message: dict[str, Any]) -> None:
    live.connect("c1", live.token("alice"))
    assert live.send("c1", message)[0]["type"] == "error"


# ---- the stream consumer ---------------------------------------------------------------------------------------------------


def test_events_reach_the_jobs_subscribers_and_an_admins_queue_subscription_only(live: Live) -> None:
    for connection, user, admin in (("alice", "alice", False), ("bob", "bob", False), ("root", "root", True)):
        live.connect(connection, live.token(user, admin=admin))
    live.send("alice", {"action": "subscribe", "jobId": "shared-name"})
    live.send("bob", {"action": "subscribe", "jobId": "shared-name"})  # bob's own namespace: another job
    live.send("root", {"action": "subscribe", "queue": "email-sending"})
    job = live.create("alice", "shared-name")
    active = _moved(job, JobStatus.ACTIVE, attempts=1)
    completed = _moved(active, JobStatus.COMPLETED, result={"ok": True})

    outcome = live.stream((None, job), (job, active), (active, completed))

    assert live.server.types("alice")[-3:] == ["job:waiting", "job:active", "job:completed"]
    assert live.server.types("root")[-3:] == ["job:waiting", "job:active", "job:completed"]
    assert live.server.types("bob") == ["subscribed"]
    assert outcome["sent"] == 6 and outcome["lookups"] == 2  # one Query a topic a batch: the job's and its queue's
    assert outcome["marker_reads"] == 1  # the batch's watch markers, in one read


def test_a_job_nobody_watches_costs_no_subscriber_lookup(live: Live) -> None:
    live.connect("bob", live.token("bob"))
    live.send("bob", {"action": "subscribe", "jobId": "his-own"})  # another owner's jobs are watched, not alice's
    live.connect("root", live.token("root", admin=True))
    live.send("root", {"action": "subscribe", "queue": "video-processing"})  # another queue is watched, not this one
    job = live.create("alice", "unwatched")
    active = _moved(job, JobStatus.ACTIVE, attempts=1)

    outcome = live.stream((None, job), (job, active), (active, _moved(active, JobStatus.COMPLETED, result={"ok": True})))

    assert outcome["events"] == 3 and outcome.get("lookups", 0) == 0 and outcome["unwatched"] == 6
    assert outcome["marker_reads"] == 1  # one BatchGetItem for the whole batch
    assert live.server.types("bob") == ["subscribed"] and live.server.types("root") == ["subscribed"]


def test_a_subscription_made_after_an_unwatched_batch_gets_the_next_change(live: Live) -> None:
    live.connect("c1", live.token("alice"))
    job = live.create("alice", "late")
    assert live.stream((None, job)).get("lookups", 0) == 0  # nobody watched alice's jobs then: nothing remembered of it
    live.send("c1", {"action": "subscribe", "jobId": "late"})
    active = _moved(job, JobStatus.ACTIVE, attempts=1)

    outcome = live.stream((job, active))

    assert live.server.types("c1")[-1] == "job:active" and outcome["sent"] == 1


def test_a_scope_known_watched_needs_no_marker_read_in_the_next_batch(live: Live) -> None:
    live.connect("c1", live.token("alice"))
    live.send("c1", {"action": "subscribe", "jobId": "watched"})
    job = live.create("alice", "watched")
    first = live.stream((None, job))
    active = _moved(job, JobStatus.ACTIVE, attempts=1)

    second = live.stream((job, active))

    assert first["marker_reads"] == 1 and first["sent"] == 1
    # alice's jobs are known watched until her marker's time; the queue's absence of one is read again
    assert second["marker_reads"] == 1 and second["sent"] == 1 and second["lookups"] == 1


def test_the_stream_sample_event_is_pushed_to_the_subscriber_of_its_job(live: Live) -> None:
    live.connect("c1", live.token("user-123"))
    live.send("c1", {"action": "subscribe", "jobId": "8d1e4f7a-2c3b-4a5d-b6e7-9f0a1b2c3d02"})

    outcome = stream_handler(json.loads((EVENTS / "dynamodb-stream-jobs.json").read_text()), FakeLambdaContext())

    completed = live.server.received("c1")[-1]
    assert completed["type"] == "job:completed" and completed["jobId"] == "8d1e4f7a-2c3b-4a5d-b6e7-9f0a1b2c3d02"
    assert outcome["records"] == 2 and outcome["sent"] == 1


def test_a_gone_connection_is_forgotten_with_its_subscriptions(live: Live) -> None:
    live.connect("c1", live.token("alice"))
    live.send("c1", {"action": "subscribe", "jobId": "j1"})
    live.server.close("c1")  # the client went away without a $disconnect reaching us
    job = live.create("alice", "j1")

    outcome = live.stream((None, job))

    assert outcome["gone"] == 1
    store = services.event_fanout().connections
    assert store.get_connection("c1") is None and store.subscribers("JOB#alice#j1") == []


def test_disconnect_removes_the_connection_and_its_subscriptions(live: Live) -> None:
    live.connect("L0SM9cOFvHcCIhw=", live.token("user-123"))
    live.send("L0SM9cOFvHcCIhw=", {"action": "subscribe", "jobId": "job-123"})

    assert connections_handler(json.loads((EVENTS / "websocket-disconnect.json").read_text()), FakeLambdaContext()) == {"statusCode": 200}

    store = services.realtime_service().connections
    assert store.get_connection("L0SM9cOFvHcCIhw=") is None and store.subscribers("JOB#user-123#job-123") == []


def test_progress_of_a_busy_job_reaches_a_subscriber_at_most_once_per_interval(live: Live) -> None:
    live.connect("c1", live.token("alice"))
    live.send("c1", {"action": "subscribe", "jobId": "busy"})
    job = _moved(live.create("alice", "busy"), JobStatus.ACTIVE, attempts=1)
    start = int(time.time() * 1000) - 5000
    from shared.clock import iso

    reports = [job.model_copy(update={"progress": n, "updated_at": iso(start + 10 * n)}) for n in range(1, 101)]  # 100 reports in 1 s
    changes = [(reports[n - 1] if n else job, reports[n]) for n in range(100)]

    outcome = live.stream(*changes)

    progress = [m["progress"] for m in live.server.received("c1") if m["type"] == "job:progress"]
    # one at the start of each second of the job's timeline, and the held latest once due
    assert progress[0] == 1 and progress[-1] == 100 and len(progress) <= 3
    assert outcome["held"] >= 97
    assert outcome["lookups"] == 1 and outcome["cached_lookups"] == 99  # the subscriber list is reused
    assert outcome["unwatched"] == 100  # nobody watches the queue: no Query for it


def test_a_large_result_is_sent_as_a_pointer(live: Live) -> None:
    live.connect("c1", live.token("alice"))
    live.send("c1", {"action": "subscribe", "jobId": "big"})
    job = _moved(live.create("alice", "big"), JobStatus.ACTIVE, attempts=1)

    live.stream((job, _moved(job, JobStatus.COMPLETED, result={"blob": "x" * 40_000})))

    completed = live.server.received("c1")[-1]
    assert "result" not in completed
    assert completed["resultRef"]["href"] == "/jobs/big?userId=alice" and completed["resultRef"]["bytes"] > 40_000


def test_a_subscription_that_no_longer_holds_gets_nothing(live: Live) -> None:
    # Defence in depth: a subscription item naming another user than the job's owner is ignored.
    live.connect("mallory", live.token("mallory"))
    from shared.realtime import Connection

    store = services.event_fanout().connections
    store.mark_watched("JOBS#alice", until=int(time.time()) + 60)
    store.subscribe(Connection("mallory", Identity("mallory")), "JOB#alice#secret", expires_at=int(time.time()) + 60)
    job = live.create("alice", "secret")

    outcome = live.stream((None, job))

    assert outcome["denied"] == 1 and live.server.types("mallory") == []


def test_the_connect_sample_has_no_token_baked_in() -> None:
    event = json.loads((EVENTS / "websocket-connect.json").read_text())
    with pytest.raises(jwt.PyJWTError):
        jwt.get_unverified_header(event["queryStringParameters"]["token"])
    assert copy.deepcopy(event)["requestContext"]["routeKey"] == "$connect"


# ---- flows ------------------------------------------------------------------------------------------------------------------


def _flow(live: Live, root_id: str, children: int = 2) -> tuple[Job, list[Job]]:
    """A flow of ``children`` emails under an email, created as POST /flows creates it."""
    from api.deps import flow_service
    from shared.flow_models import FlowNode

    email = {"queue": "email-sending", "type": "send-email", "data": {"to": "a@example.com", "subject": "Hi", "body": "Hello"}}
    tree = FlowNode.model_validate({**email, "options": {"jobId": root_id}, "children": [email] * children})
    root, _, _ = flow_service().create(tree, Identity("alice"))
    kids = [live.stack.store.get("alice", f"{root_id}:{i}") for i in range(children)]
    assert all(kids)
    return root, [k for k in kids if k is not None]


def test_a_flow_subscriber_gets_every_job_of_the_flow_then_flow_completed_when_its_root_ends(live: Live) -> None:
    live.connect("alice", live.token("alice"))
    live.connect("bob", live.token("bob"))
    root, (first, second) = _flow(live, "order-7")
    replies = live.send("alice", {"action": "subscribe", "flowId": "order-7"})
    assert [r["type"] for r in replies] == ["subscribed", "job:waiting-children"]
    assert replies[0] == {"type": "subscribed", "flowId": "order-7", "userId": "alice", "status": "waiting-children"}
    refused = live.send("bob", {"action": "subscribe", "flowId": "order-7", "userId": "alice"})
    assert refused[0]["code"] == "NOT_FOUND"  # as GET /flows/{id}?userId= of someone else
    first_done = _moved(_moved(first, JobStatus.ACTIVE, attempts=1), JobStatus.COMPLETED, result={"sent": 1})
    second_done = _moved(second, JobStatus.COMPLETED, result={"sent": 2})
    root_waiting = _moved(root, JobStatus.WAITING)
    root_active = _moved(root_waiting, JobStatus.ACTIVE, attempts=1)
    root_done = _moved(root_active, JobStatus.COMPLETED, result={"sent": 3})

    outcome = live.stream((first, _moved(first, JobStatus.ACTIVE, attempts=1)), (_moved(first, JobStatus.ACTIVE, attempts=1), first_done),
                          (second, second_done), (root, root_waiting), (root_waiting, root_active), (root_active, root_done))

    events = live.server.received("alice")[2:]
    assert [(e["type"], e["jobId"]) for e in events] == [
        ("job:active", "order-7:0"), ("job:completed", "order-7:0"), ("job:completed", "order-7:1"),
        ("job:waiting", "order-7"), ("job:active", "order-7"), ("job:completed", "order-7"), ("flow:completed", "order-7")]
    assert all(e["queue"] == "email-sending" and e["userId"] == "alice" for e in events)
    assert events[1]["result"] == {"sent": 1} and events[1]["status"] == "completed"
    assert {k: events[-1][k] for k in ("flowId", "status", "result")} == {"flowId": "order-7", "status": "completed", "result": {"sent": 3}}
    assert live.server.types("bob") == ["error"]
    # The flows' subscriptions once for the batch (the subscription marked the FLOWS scope); nobody
    # watches alice's jobs one by one nor the queue, so their topics cost no Query.
    assert outcome["lookups"] == 1


def test_subscribing_to_a_flow_that_ended_sends_its_final_events_at_once(live: Live) -> None:
    from shared.adapters import clients

    live.connect("c1", live.token("alice"))
    root, _ = _flow(live, "order-8", children=1)
    failed = _moved(root, JobStatus.FAILED, error="child order-8:0 failed: bounced")
    clients.client("dynamodb").put_item(TableName=live.stack.table_name, Item=to_item(failed))

    replies = live.send("c1", {"action": "subscribe", "flowId": "order-8"})

    assert [r["type"] for r in replies] == ["subscribed", "job:failed", "flow:completed"]
    assert {k: replies[-1][k] for k in ("flowId", "status", "error")} == {"flowId": "order-8", "status": "failed", "error": "child order-8:0 failed: bounced"}


def test_a_flow_is_watched_by_its_root_and_a_child_names_it(live: Live) -> None:
    live.connect("c1", live.token("alice"))
    _flow(live, "order-9", children=1)

    replies = live.send("c1", {"action": "subscribe", "flowId": "order-9:0"})

    assert replies[0]["type"] == "error" and "order-9" in replies[0]["message"] and "root" in replies[0]["message"]


def test_jobs_outside_flows_cost_no_flow_lookup_and_flow_jobs_one_per_batch(live: Live) -> None:
    live.connect("c1", live.token("alice"))
    plain = live.create("alice", "plain-1")
    _, kids = _flow(live, "order-10", children=3)
    live.send("c1", {"action": "subscribe", "flowId": "order-10"})
    live.send("c1", {"action": "unsubscribe", "flowId": "order-10"})

    alone = live.stream((plain, _moved(plain, JobStatus.ACTIVE, attempts=1)))
    batch = live.stream(*[(k, _moved(k, JobStatus.ACTIVE, attempts=1)) for k in kids])

    assert alone.get("lookups", 0) == 0  # a job outside flows, its owner and queue unwatched: no Query at all
    assert batch["lookups"] == 1  # one Query of the flow subscriptions for the whole batch (its scope is marked)
    assert live.server.types("c1") == ["subscribed", "job:waiting-children", "unsubscribed"]  # unsubscribed: nothing more
