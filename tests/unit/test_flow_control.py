"""Flow control through the real consumer, store and SQS (moto): timeouts, rate limits, group keys."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from functions.consumer.handler import handler
from infra.local import moto_fixes
from infra.local.esm import MappingRegistry
from shared import lifecycle
from shared.adapters import clients, policies, queues
from shared.adapters.limits import DynamoLimits
from shared.backoff import backoff_seconds, register_backoff, unregister_backoff
from shared.catalog import ProcessorCatalog
from shared.client_models import JobCreate
from shared.clock import now_ms, parse_iso
from shared.errors import Invalid
from shared.flow_control import GroupPolicy, KeyLimits, RateLimit
from shared.jobs import Identity, JobService
from shared.models import Backoff, BackoffType, HttpTarget, JobRef, QueuePolicy
from shared.status import JobStatus
from shared.worker import Delivery, JobContext, Outcome, RetryLater
from tests.target_server import TargetServer
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event
from tests.unit.stream_feed import StreamFeed
from tests.unit.test_queues import call, mappings  # noqa: F401 (the fixture: PATCH maxConcurrency reaches the Lambda API)

ADMIN = Identity("root", is_admin=True)
ALICE = Identity("alice")
QUEUE = "email-sending"
# Windows align to the epoch: a test that counts starts in one window uses a day's, which no run straddles but at midnight.
DAY_MS = 86_400_000


@pytest.fixture(autouse=True)
def fresh_policy_cache() -> Iterator[None]:
    policies.reset_cache()
    yield
    policies.reset_cache()


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def service(stack: Stack) -> JobService:
    return JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)


def set_policy(**changes: Any) -> None:
    queue = queues.directory().get(QUEUE)
    policies.update_policy(queue, lambda p: p.model_copy(update=changes))


def add_jobs(stack: Stack, target: TargetServer, path: str, n: int = 1, *, job_type: str = "call", **options: Any) -> list[str]:
    jobs = service(stack)
    jobs.targets.put_http(QUEUE, job_type, HttpTarget(url=f"{target.url}{path}", timeout_seconds=5), ADMIN)
    return [jobs.create(JobCreate(queue=QUEUE, type=job_type, data={"n": i}, options=options), ALICE)[0].job_id for i in range(n)]


def deliver_all(stack: Stack) -> dict[str, Any]:
    messages = stack.receive(QUEUE)
    return handler(sqs_event(stack, QUEUE, messages), FakeLambdaContext()) if messages else {"batchItemFailures": []}


# ---- timeouts -------------------------------------------------------------------------------------------


def test_an_http_job_past_its_timeout_ends_its_attempt_timed_out_and_is_retried(stack: Stack, target: TargetServer) -> None:
    [job_id] = add_jobs(stack, target, "/slow/3", timeout=500, attempts=2, backoff={"type": "fixed", "delay": 1000})
    started = time.monotonic()

    response = deliver_all(stack)

    assert time.monotonic() - started < 2.9  # the request was dropped at the deadline, not waited out (3 s)
    assert len(response["batchItemFailures"]) == 1
    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.DELAYED and job.attempts == 1
    assert [h.outcome for h in job.history] == ["timed_out"]
    assert "timed out after 500 ms" in (job.error or "")
    time.sleep(1.1)
    deliver_all(stack)  # the second attempt times out too: the job has failed, its last attempt timed out
    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 2
    assert [h.outcome for h in job.history] == ["timed_out", "timed_out"]


def test_a_code_processor_sees_its_deadline_and_is_stopped_at_it(stack: Stack, target: TargetServer) -> None:
    [job_id] = add_jobs(stack, target, "/ok", timeout=300, attempts=1)
    seen: dict[str, Any] = {}

    def stubborn(context: JobContext) -> str:
        seen["deadline"] = context.deadline
        seen["timed_out_at_start"] = context.timed_out
        while not context.timed_out:
            time.sleep(0.02)
        seen["noticed"] = True
        time.sleep(5)  # ignores it: the worker does not wait
        return "too late"

    worker = stack.worker(lambda q, j: stubborn)
    [message] = stack.receive(QUEUE)
    before = now_ms()
    outcome = worker.handle(Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], queues.directory().get(QUEUE)))

    assert outcome is Outcome.FAILED
    assert seen["timed_out_at_start"] is False and seen["noticed"] is True
    assert before + 300 <= seen["deadline"] <= now_ms()
    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.FAILED and [h.outcome for h in job.history] == ["timed_out"]
    assert job.result is None


def test_a_timeout_at_or_past_the_consumers_own_is_refused_at_creation(stack: Stack, target: TargetServer) -> None:
    consumer_ms = queues.directory().get(QUEUE).consumer_timeout * 1000
    with pytest.raises(Invalid, match="below the consumer's timeout"):
        add_jobs(stack, target, "/ok", timeout=consumer_ms)


def test_the_queues_default_timeout_applies_to_jobs_without_their_own(stack: Stack, target: TargetServer) -> None:
    set_policy(default_timeout=400)
    [default, own] = [add_jobs(stack, target, "/ok")[0], add_jobs(stack, target, "/ok", timeout=900)[0]]
    assert stack.store.require("alice", default).timeout == 400
    assert stack.store.require("alice", own).timeout == 900


# ---- rate limits per queue ----------------------------------------------------------------------------------


def _starts(stack: Stack, job_ids: list[str]) -> list[int]:
    return sorted(parse_iso(j.started_at) for j in (stack.store.require("alice", i) for i in job_ids) if j.started_at)


def test_a_queue_rate_limit_is_never_exceeded_by_consumers_running_at_once(stack: Stack, target: TargetServer) -> None:
    set_policy(rate_limit=RateLimit(max=3, duration=60_000))
    job_ids = add_jobs(stack, target, "/ok", 12)
    batches = [stack.receive(QUEUE, max_messages=3) for _ in range(4)]
    assert sum(len(b) for b in batches) == 12

    threads = [threading.Thread(target=handler, args=(sqs_event(stack, QUEUE, b), FakeLambdaContext())) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    jobs = [stack.store.require("alice", i) for i in job_ids]
    statuses = Counter(j.status for j in jobs)
    assert max(Counter(start // 60_000 for start in _starts(stack, job_ids)).values()) <= 3  # per window, whatever the clock did
    assert statuses[JobStatus.COMPLETED] >= 3
    # The others wait without spending an attempt, their messages out of sight until a later window.
    waiting = [j for j in jobs if j.status is JobStatus.WAITING]
    assert len(waiting) == 12 - statuses[JobStatus.COMPLETED] and all(j.attempts == 0 for j in waiting)
    assert stack.receive(QUEUE) == []


def test_jobs_over_the_rate_limit_start_in_the_windows_that_have_room(stack: Stack, target: TargetServer) -> None:
    set_policy(rate_limit=RateLimit(max=2, duration=1000))
    job_ids = add_jobs(stack, target, "/ok", 8)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not all(stack.store.require("alice", i).status is JobStatus.COMPLETED for i in job_ids):
        deliver_all(stack)
        time.sleep(0.1)

    jobs = [stack.store.require("alice", i) for i in job_ids]
    assert all(j.status is JobStatus.COMPLETED and j.attempts == 1 for j in jobs)
    per_window = Counter(start // 1000 for start in _starts(stack, job_ids))
    assert max(per_window.values()) <= 2
    assert len(per_window) <= 6  # 8 jobs at 2 per second: about 4 windows, not a trickle


def test_a_rate_limit_changed_at_runtime_applies_to_the_next_claims(stack: Stack, target: TargetServer) -> None:
    set_policy(rate_limit=RateLimit(max=1, duration=DAY_MS))
    first = add_jobs(stack, target, "/ok", 2)
    deliver_all(stack)
    assert sum(stack.store.require("alice", i).status is JobStatus.COMPLETED for i in first) == 1

    set_policy(rate_limit=RateLimit(max=10, duration=60_000))  # as PATCH /queues/{name} stores it
    later = add_jobs(stack, target, "/ok", 3)
    deliver_all(stack)
    assert all(stack.store.require("alice", i).status is JobStatus.COMPLETED for i in later)


def test_a_job_that_waits_often_travels_on_in_a_new_message_before_sqs_dead_letters_it(stack: Stack, target: TargetServer) -> None:
    set_policy(rate_limit=RateLimit(max=1, duration=DAY_MS))
    first, second = add_jobs(stack, target, "/ok", 2)
    worker = stack.worker()
    queue = queues.directory().get(QUEUE)
    messages = stack.receive(QUEUE)
    outcomes = []
    for message in messages:
        delivery = Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], queue, receive_count=queue.max_receive_count - 1)
        try:
            outcomes.append(worker.handle(delivery))
        except RetryLater:
            outcomes.append("retry later")
    assert sorted(map(str, outcomes)) == ["completed", "deferred"]
    waiting = [j for j in (stack.store.require("alice", i) for i in (first, second)) if j.status is JobStatus.WAITING]
    assert len(waiting) == 1 and waiting[0].attempts == 0


# ---- group keys ---------------------------------------------------------------------------------------------


def _concurrency_probe(hold_s: float) -> tuple[Any, dict[str, int], list[tuple[str, int]]]:
    lock = threading.Lock()
    active: dict[str, int] = Counter()
    peaks: list[tuple[str, int]] = []

    def processor(context: JobContext) -> str:
        key = context.snapshot.group or "-"
        with lock:
            active[key] += 1
            peaks.append((key, active[key]))
        time.sleep(hold_s)
        with lock:
            active[key] -= 1
        return "ok"

    return processor, active, peaks


def test_a_keys_active_jobs_never_exceed_its_max_active_and_other_keys_run_meanwhile(stack: Stack, target: TargetServer) -> None:
    set_policy(groups=GroupPolicy(max_active=1, overrides={"big": KeyLimits(max_active=2)}))
    a = add_jobs(stack, target, "/ok", 4, group="acme")
    big = add_jobs(stack, target, "/ok", 4, group="big")
    solo = add_jobs(stack, target, "/ok", 1, group="solo")
    processor, _, peaks = _concurrency_probe(0.3)
    worker = stack.worker(lambda q, j: processor)
    queue = queues.directory().get(QUEUE)

    def consume() -> None:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            messages = stack.receive(QUEUE, max_messages=1)
            for m in messages:
                try:
                    worker.handle(Delivery(m["MessageId"], m["Body"], m["ReceiptHandle"], queue, int(m["Attributes"]["ApproximateReceiveCount"])))
                    clients.client("sqs").delete_message(QueueUrl=queue.queue_url, ReceiptHandle=m["ReceiptHandle"])
                except RetryLater:
                    pass
            if all(stack.store.require("alice", i).status is JobStatus.COMPLETED for i in a + big + solo):
                return
            if not messages:
                time.sleep(0.1)

    threads = [threading.Thread(target=consume) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert all(stack.store.require("alice", i).status is JobStatus.COMPLETED for i in a + big + solo)
    most = {key: max(n for k, n in peaks if k == key) for key in ("acme", "big", "solo")}
    assert most["acme"] == 1 and most["big"] <= 2 and most["solo"] == 1
    assert all(stack.store.require("alice", i).attempts == 1 for i in a + big)  # waiting spent no attempt


def test_a_slot_held_by_a_consumer_that_died_is_taken_back_when_its_lease_runs_out(stack: Stack) -> None:
    limits = DynamoLimits(stack.table_name)
    now = now_ms()
    assert limits.take_slot(QUEUE, "acme", "dead-worker", now + 100, 1, now)
    assert not limits.take_slot(QUEUE, "acme", "next", now + 60_000, 1, now + 50)
    assert limits.take_slot(QUEUE, "acme", "next", now + 60_000, 1, now + 200)
    [counts] = limits.keys(QUEUE, now + 200)
    assert (counts.key, counts.active, counts.started) == ("acme", 1, 2)


def test_a_group_key_comes_from_a_path_into_the_data_per_job_type(stack: Stack, target: TargetServer) -> None:
    set_policy(groups=GroupPolicy(key_paths={"crawl": "site.domain"}))
    jobs = service(stack)
    jobs.targets.put_http(QUEUE, "crawl", HttpTarget(url=f"{target.url}/ok", timeout_seconds=5), ADMIN)
    by_path, _ = jobs.create(JobCreate(queue=QUEUE, type="crawl", data={"site": {"domain": "example.org"}}), ALICE)
    given, _ = jobs.create(JobCreate(queue=QUEUE, type="crawl", data={"site": {"domain": "example.org"}}, options={"group": "mine"}), ALICE)
    none, _ = jobs.create(JobCreate(queue=QUEUE, type="crawl", data={"site": {}}), ALICE)
    assert (by_path.group, given.group, none.group) == ("example.org", "mine", None)


def test_a_paused_key_waits_without_spending_attempts_and_runs_once_resumed(stack: Stack, target: TargetServer) -> None:
    set_policy(groups=GroupPolicy(overrides={"acme": KeyLimits(paused=True)}))
    [paused] = add_jobs(stack, target, "/ok", group="acme")
    [other] = add_jobs(stack, target, "/ok", group="other")
    deliver_all(stack)
    assert stack.store.require("alice", other).status is JobStatus.COMPLETED
    job = stack.store.require("alice", paused)
    assert job.status is JobStatus.WAITING and job.attempts == 0


def test_a_keys_rate_limit_holds_per_key(stack: Stack, target: TargetServer) -> None:
    set_policy(groups=GroupPolicy(rate_limit=RateLimit(max=1, duration=DAY_MS)))
    a = add_jobs(stack, target, "/ok", 3, group="a.example")
    b = add_jobs(stack, target, "/ok", 3, group="b.example")
    deliver_all(stack)
    done = Counter(stack.store.require("alice", i).group for i in a + b if stack.store.require("alice", i).status is JobStatus.COMPLETED)
    assert done == {"a.example": 1, "b.example": 1}


def test_queue_policy_keeps_flow_settings_through_a_round_trip() -> None:
    policy = QueuePolicy(rate_limit=RateLimit(max=5, duration=60_000), groups=GroupPolicy(max_active=2), default_timeout=1000)
    again = QueuePolicy.model_validate_json(policy.model_dump_json(by_alias=True))
    assert again == policy


# ---- through the API: PATCH /queues/{name}, GET /queues/{name}/groups, pausing a key --------------------------


def test_an_operator_sets_and_removes_a_rate_limit_a_default_timeout_and_group_limits_with_patch(stack: Stack) -> None:
    body = {"rateLimit": {"max": 5, "duration": 60000}, "defaultTimeout": 2000, "groups": {"maxActive": 2, "keyPaths": {"send-email": "to"}}}
    status, out = call("PATCH", f"/queues/{QUEUE}", body=body)
    assert status == 200, out
    config = out["data"]
    assert config["rateLimit"] == {"max": 5, "duration": 60000} and config["defaultTimeout"] == 2000
    assert config["groups"]["maxActive"] == 2 and config["groups"]["keyPaths"] == {"send-email": "to"}
    assert policies.read_policy(queues.directory().get(QUEUE))[0].rate_limit == RateLimit(max=5, duration=60_000)

    status, out = call("PATCH", f"/queues/{QUEUE}", body={"rateLimit": None})
    assert status == 200 and out["data"]["rateLimit"] is None and out["data"]["defaultTimeout"] == 2000


def test_a_default_timeout_past_the_consumers_or_a_malformed_limit_is_a_400(stack: Stack) -> None:
    consumer_ms = queues.directory().get(QUEUE).consumer_timeout * 1000
    for body in ({"defaultTimeout": consumer_ms}, {"rateLimit": {"max": 0, "duration": 1000}}, {"rateLimit": {"max": 5, "duration": 10}},
                 {"maxConcurrency": 1}, {"maxConcurrency": 1001}, {"groups": {"overrides": {"a#b": {"maxActive": 1}}}}):
        status, out = call("PATCH", f"/queues/{QUEUE}", body=body)
        assert (status, out["success"]) == (400, False), (body, out)


def test_max_concurrency_changes_the_event_source_mapping_at_once(stack: Stack, mappings: MappingRegistry) -> None:  # noqa: F811
    status, out = call("PATCH", f"/queues/{QUEUE}", body={"maxConcurrency": 50})

    assert status == 200, out
    assert out["data"]["maxConcurrency"] == 50 and out["data"]["concurrency"] == 50
    mapping = mappings.by_uuid(queues.directory().get(QUEUE).event_source_mapping_id)
    assert mapping.max_concurrency == 50
    status, out = call("GET", f"/queues/{QUEUE}")
    assert out["data"]["configuration"]["maxConcurrency"] == 50


def test_the_groups_route_shows_the_busiest_keys_and_a_key_is_paused_and_resumed(stack: Stack, target: TargetServer) -> None:
    set_policy(groups=GroupPolicy(max_active=3))
    add_jobs(stack, target, "/ok", 3, group="acme")
    add_jobs(stack, target, "/ok", 1, group="tiny")
    deliver_all(stack)

    status, out = call("GET", f"/queues/{QUEUE}/groups")
    assert status == 200, out
    groups = out["data"]["groups"]
    assert [(g["key"], g["started"], g["active"], g["maxActive"]) for g in groups] == [("acme", 3, 0, 3), ("tiny", 1, 0, 3)]

    assert call("POST", f"/queues/{QUEUE}/groups/acme/pause")[0] == 200
    policies.reset_cache()
    [held] = add_jobs(stack, target, "/ok", 1, group="acme")
    deliver_all(stack)
    assert stack.store.require("alice", held).status is JobStatus.WAITING
    assert next(g for g in call("GET", f"/queues/{QUEUE}/groups")[1]["data"]["groups"] if g["key"] == "acme")["paused"] is True

    status, out = call("POST", f"/queues/{QUEUE}/groups/acme/resume")
    assert (status, out["data"]) == (200, {"key": "acme", "paused": False})
    assert policies.read_policy(queues.directory().get(QUEUE))[0].groups == GroupPolicy(max_active=3)  # the override is gone


@pytest.mark.parametrize("key", ["a\nb", "%0A", "a%23b", "%20lead", "a%2Fb", "a%00b", "k" * 129])
def test_a_group_key_no_job_could_carry_is_a_400_in_the_common_envelope(stack: Stack, key: str) -> None:
    for action in ("pause", "resume"):
        status, out = call("POST", f"/queues/{QUEUE}/groups/{key}/{action}")
        assert 400 <= status < 500 and out["success"] is False and set(out["error"]) >= {"code", "message"}, (key, status, out)
    assert policies.read_policy(queues.directory().get(QUEUE))[0].groups is None  # nothing stored


def test_a_group_key_from_the_data_loses_the_characters_a_key_cannot_have() -> None:
    from shared.flow_control import check_group_key, group_key_of

    key = group_key_of("crawl", {"url": {"host": " a/b#c\nd"}}, None, GroupPolicy(key_paths={"crawl": "url.host"}))
    assert key == "a_b_c_d" and check_group_key(key) == key


# ---- the gate costs no read: the group key travels in the message -------------------------------------------------


def _one_delivery(stack: Stack) -> Delivery:
    (message,) = stack.receive(QUEUE, wait=1)
    return Delivery(message["MessageId"], message["Body"], message["ReceiptHandle"], queues.directory().get(QUEUE))


def test_a_group_limited_claim_reads_no_job_when_the_message_carries_its_group(stack: Stack, target: TargetServer) -> None:
    from tests.unit.faults import failing

    set_policy(rate_limit=RateLimit(max=100, duration=60_000), groups=GroupPolicy(max_active=2))
    [job_id] = add_jobs(stack, target, "/ok", 1, group="acme")
    delivery = _one_delivery(stack)
    assert queues.group_of_body(delivery.body) == "acme"
    policies.get_policy(queues.directory().get(QUEUE))  # cached, as in a warm consumer

    with failing("dynamodb", "GetItem", response=None) as reads:
        outcome = stack.worker().handle(delivery)

    assert outcome is Outcome.COMPLETED
    assert [b["Key"]["pk"]["S"] for b in reads.seen if b["Key"]["pk"]["S"].startswith("JOB#")] == []
    assert stack.store.require("alice", job_id).status is JobStatus.COMPLETED
    assert [(k.key, k.started) for k in DynamoLimits(stack.table_name).keys(QUEUE, now_ms())] == [("acme", 1)]


def test_a_message_that_does_not_carry_the_group_is_read_first_and_still_held_by_its_keys_limit(stack: Stack, target: TargetServer) -> None:
    set_policy(groups=GroupPolicy(max_active=1))
    running, waiting = add_jobs(stack, target, "/ok", 2, group="acme")
    stack.receive(QUEUE, wait=1)  # drop the messages the creates sent
    stack.store.apply(lifecycle.claim(stack.store.require("alice", running), now=now_ms(), lease_ms=60_000, token="held"))
    assert DynamoLimits(stack.table_name).take_slot(QUEUE, "acme", "held", now_ms() + 60_000, 1, now_ms())
    queues.send_job(queues.directory().get(QUEUE), JobRef.of(stack.store.require("alice", waiting)))  # a sweep's message: the reference only
    delivery = _one_delivery(stack)
    assert queues.group_of_body(delivery.body) is queues.GROUP_NOT_CARRIED

    with pytest.raises(RetryLater):
        stack.worker().handle(delivery)

    job = stack.store.require("alice", waiting)
    assert job.status is JobStatus.WAITING and job.attempts == 0


# ---- backoff: jitter and a custom backoff per job type -----------------------------------------------------------


def test_a_jitter_spreads_fixed_and_exponential_waits_within_their_share() -> None:
    fixed = Backoff(type=BackoffType.FIXED, delay=10_000, jitter=0.5)
    waits = {backoff_seconds(fixed, 1, cap_seconds=3600) for _ in range(200)}
    assert waits <= set(range(5, 11)) and len(waits) > 2
    exact = Backoff(type=BackoffType.EXPONENTIAL, delay=1000, jitter=0)
    assert [backoff_seconds(exact, n, cap_seconds=3600) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert {backoff_seconds(Backoff(type=BackoffType.FIXED, delay=2000), 3, cap_seconds=3600) for _ in range(20)} == {2}  # no jitter unless asked


def test_a_job_types_custom_backoff_decides_the_wait_from_the_attempt_and_the_error(stack: Stack, target: TargetServer) -> None:
    seen: list[tuple[int, str]] = []

    def polite(attempts: int, error: BaseException) -> int | None:
        seen.append((attempts, str(error)))
        return 7000 if "503" in str(error) else None

    register_backoff("call", polite, queue=QUEUE)
    try:
        [job_id] = add_jobs(stack, target, "/always/503", attempts=3, backoff={"type": "fixed", "delay": 0})
        before = now_ms()
        deliver_all(stack)
    finally:
        unregister_backoff("call", queue=QUEUE)
    job = stack.store.require("alice", job_id)
    assert job.status is JobStatus.DELAYED and seen and seen[0][0] == 1 and "503" in seen[0][1]
    assert 6500 <= parse_iso(job.run_at or "") - before <= 9000


# ---- fairness across tenants ---------------------------------------------------------------------------------------


def test_each_jobs_message_carries_its_owner_as_message_group_so_sqs_fair_queues_apply(stack: Stack, target: TargetServer) -> None:
    add_jobs(stack, target, "/ok", 2)
    messages = stack.receive(QUEUE)
    assert [m["Attributes"].get("MessageGroupId") for m in messages] == ["alice", "alice"]
    assert queues.fair_group("a" * 200).startswith("u-") and len(queues.fair_group("a" * 200)) <= 128
    assert queues.fair_group("ünïcode") != queues.fair_group("unicode")
    assert (queues.fair_group("bob", 10), queues.fair_group("bob", 5), queues.fair_group("bob", -5)) == ("bob#critical", "bob#high", "bob")


def test_the_local_sqs_hands_a_quiet_tenant_its_turn_during_another_tenants_burst(stack: Stack) -> None:
    moto_fixes.apply()  # what the local stack's moto server runs with
    url = queues.directory().get(QUEUE).queue_url
    sqs = clients.client("sqs")
    for start in range(0, 50, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"burst-{start + i}", "MessageGroupId": "burst"} for i in range(10)])
    sqs.send_message(QueueUrl=url, MessageBody="quiet-0", MessageGroupId="quiet")

    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=4)["Messages"]

    bodies = [m["Body"] for m in first]
    assert "quiet-0" in bodies[:2]
    assert [b for b in bodies if b.startswith("burst")] == sorted((b for b in bodies if b.startswith("burst")), key=lambda b: int(b.split("-")[1]))


# ---- deduplication modes --------------------------------------------------------------------------------------------


def _dedup_create(stack: Stack, data: dict[str, Any], **dedup: Any) -> tuple[str, bool]:
    options = {"deduplication": {"key": "report-42", **dedup.pop("dedup", {})}, **dedup}
    job, created = service(stack).create(JobCreate(queue=QUEUE, type="call", data=data, options=options), ALICE)
    return job.job_id, created


def test_throttle_mode_ignores_new_jobs_with_the_key_for_its_ttl_even_after_the_first_finished(stack: Stack, target: TargetServer) -> None:
    add_jobs(stack, target, "/ok", 0)
    first, _ = _dedup_create(stack, {"v": 1}, dedup={"mode": "throttle", "ttlSeconds": 60})
    deliver_all(stack)
    again, created = _dedup_create(stack, {"v": 2}, dedup={"mode": "throttle", "ttlSeconds": 60})
    assert (again, created) == (first, False)
    with pytest.raises(ValueError, match="throttle needs ttl"):
        JobCreate(queue=QUEUE, type="call", options={"deduplication": {"key": "k", "mode": "throttle"}})


def test_debounce_mode_gives_the_pending_job_the_newest_data_and_restarts_its_delay(stack: Stack, target: TargetServer) -> None:
    add_jobs(stack, target, "/ok", 0)
    first, _ = _dedup_create(stack, {"v": 1}, dedup={"mode": "debounce"}, delay=2000)
    before = parse_iso(stack.store.require("alice", first).run_at or "")
    time.sleep(1.1)
    again, created = _dedup_create(stack, {"v": 2}, dedup={"mode": "debounce"}, delay=2000)

    assert (again, created) == (first, False)
    job = stack.store.require("alice", first)
    assert job.data == {"v": 2} and job.status is JobStatus.DELAYED
    assert parse_iso(job.run_at or "") >= before + 1000
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and stack.store.require("alice", first).status is not JobStatus.COMPLETED:
        deliver_all(stack)
        time.sleep(0.3)
    done = stack.store.require("alice", first)
    assert done.status is JobStatus.COMPLETED and done.result["echo"] == {"v": 2} and done.attempts == 1
    assert parse_iso(done.started_at or "") >= parse_iso(job.run_at or "") - 1000  # ran after the restarted delay, not the first


def test_keep_last_if_active_keeps_one_waiting_job_beside_the_running_one_with_the_newest_data(stack: Stack, target: TargetServer) -> None:
    add_jobs(stack, target, "/ok", 0)
    running, _ = _dedup_create(stack, {"v": 1}, dedup={"mode": "keepLastIfActive"})
    stack.store.apply(lifecycle.claim(stack.store.require("alice", running), now=now_ms(), lease_ms=60_000, token="t"))  # it runs

    second, created = _dedup_create(stack, {"v": 2}, dedup={"mode": "keepLastIfActive"})
    third, again = _dedup_create(stack, {"v": 3}, dedup={"mode": "keepLastIfActive"})

    assert created is True and second != running
    assert (third, again) == (second, False)
    assert stack.store.require("alice", second).data == {"v": 3} and stack.store.require("alice", second).status is JobStatus.WAITING
    assert stack.store.require("alice", running).data == {"v": 1}


def test_keep_last_if_active_holds_the_waiting_job_until_the_active_one_ends_with_consumers_free(stack: Stack, target: TargetServer) -> None:
    add_jobs(stack, target, "/ok", 0)  # the queue has no rateLimit and no groups: the mode holds on its own
    lock = threading.Lock()
    running: list[str] = []
    spans: dict[str, tuple[float, float]] = {}
    seen: dict[str, Any] = {}
    most = 0

    def processor(context: JobContext) -> str:
        nonlocal most
        with lock:
            running.append(context.job_id)
            most = max(most, len(running))
        started = time.monotonic()
        seen[context.job_id] = context.data
        time.sleep(3.5 if context.data == {"v": 1} else 0.2)
        with lock:
            running.remove(context.job_id)
        spans[context.job_id] = (started, time.monotonic())
        return "ok"

    worker = stack.worker(lambda q, j: processor)
    queue = queues.directory().get(QUEUE)
    refused: list[str] = []
    stop = time.monotonic() + 20

    def consume() -> None:  # four free consumers, each taking one message at a time
        while time.monotonic() < stop and len(spans) < 2:
            for m in stack.receive(QUEUE, max_messages=1):
                delivery = Delivery(m["MessageId"], m["Body"], m["ReceiptHandle"], queue, int(m["Attributes"]["ApproximateReceiveCount"]))
                try:
                    worker.handle(delivery)
                    clients.client("sqs").delete_message(QueueUrl=queue.queue_url, ReceiptHandle=m["ReceiptHandle"])
                except RetryLater:
                    refused.append(queues.ref_of_body(m["Body"]).job_id)  # type: ignore[union-attr]
            time.sleep(0.05)

    first, _ = _dedup_create(stack, {"v": 1}, dedup={"mode": "keepLastIfActive"})
    threads = [threading.Thread(target=consume) for _ in range(4)]
    for t in threads:
        t.start()
    while stack.store.require("alice", first).status is not JobStatus.ACTIVE and time.monotonic() < stop:
        time.sleep(0.02)
    second, created = _dedup_create(stack, {"v": 2}, dedup={"mode": "keepLastIfActive"})
    third, again = _dedup_create(stack, {"v": 3}, dedup={"mode": "keepLastIfActive"})
    for t in threads:
        t.join()

    assert created is True and second != first and (third, again) == (second, False)
    assert second in refused  # a free consumer got its message while the first ran, and let it wait
    assert most == 1
    assert spans[second][0] >= spans[first][1]  # started only once the first had ended
    # Woken as the first ended: its own message, refused for 1 s, 2 s, then 4 s, would have come back ~3.5 s later.
    gap = spans[second][0] - spans[first][1]
    assert gap < 2.0, f"the waiting job started {gap:.2f} s after the active one ended"
    assert seen[second] == {"v": 3}  # the third create's data
    for job_id in (first, second):
        job = stack.store.require("alice", job_id)
        assert job.status is JobStatus.COMPLETED and job.attempts == 1  # waiting spent no attempt
    assert DynamoLimits(stack.table_name).keys(QUEUE, now_ms()) == []  # not a group: kept out of GET /groups


def test_a_keep_last_if_active_claim_reads_no_job_and_other_jobs_touch_no_counter(stack: Stack, target: TargetServer) -> None:
    from tests.unit.faults import failing

    add_jobs(stack, target, "/ok", 0)
    kept, _ = _dedup_create(stack, {"v": 1}, dedup={"mode": "keepLastIfActive"})
    [plain] = add_jobs(stack, target, "/ok", 1)
    policies.get_policy(queues.directory().get(QUEUE))  # cached, as in a warm consumer
    messages = stack.receive(QUEUE, wait=1)
    assert sorted("exclusive" in m["Body"] for m in messages) == [False, True]

    with failing("dynamodb", "GetItem", response=None) as reads, failing("dynamodb", "UpdateItem", response=None) as writes:
        for m in messages:
            stack.worker().handle(Delivery(m["MessageId"], m["Body"], m["ReceiptHandle"], queues.directory().get(QUEUE)))

    assert [b["Key"]["pk"]["S"] for b in reads.seen if b["Key"]["pk"]["S"].startswith("JOB#")] == []
    slot_writes = [b["Key"]["pk"]["S"] for b in writes.seen if b["Key"]["pk"]["S"].startswith("LIMIT#")]
    assert len(slot_writes) == 2  # the kept job's slot: taken, given back; the plain job: none
    assert all(stack.store.require("alice", i).status is JobStatus.COMPLETED for i in (kept, plain))


def test_a_keep_last_if_active_job_enqueued_by_the_stream_carries_its_key_in_its_message(stack: Stack, target: TargetServer) -> None:
    add_jobs(stack, target, "/ok", 0)
    feed = StreamFeed(stack.table_name)
    boxed = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings.replace(enqueue_from_stream=True))
    job, _ = boxed.create(JobCreate(queue=QUEUE, type="call", data={}, options={"deduplication": {"key": "k", "mode": "keepLastIfActive"}}), ALICE)
    assert stack.receive(QUEUE) == []

    feed.deliver()

    [message] = stack.receive(QUEUE)
    assert job.exclusive_key and json.loads(message["Body"])["exclusive"] == job.exclusive_key


def test_a_critical_job_is_served_ahead_of_its_own_tenants_backlog_of_low_jobs(stack: Stack, target: TargetServer) -> None:
    moto_fixes.apply()  # the local stack's SQS: fair across message groups
    add_jobs(stack, target, "/ok", 30, priority="low")
    [critical] = add_jobs(stack, target, "/ok", 1, priority="critical")

    first_batch = stack.receive(QUEUE, max_messages=10)

    assert any(critical in m["Body"] for m in first_batch)
    groups = {m["Attributes"]["MessageGroupId"] for m in first_batch}
    assert groups == {"alice", "alice#critical"}


def test_low_jobs_keep_their_share_of_receives_beside_a_flood_of_critical_ones(stack: Stack, target: TargetServer) -> None:
    moto_fixes.apply()  # the local stack's SQS: fair across message groups
    add_jobs(stack, target, "/ok", 20, priority="low")
    add_jobs(stack, target, "/ok", 20, priority="critical")

    first_batch = stack.receive(QUEUE, max_messages=10)

    groups = Counter(m["Attributes"]["MessageGroupId"] for m in first_batch)
    assert groups == {"alice": 5, "alice#critical": 5}  # one share per group: the low group is not starved


def test_a_critical_job_received_behind_low_ones_in_its_batch_starts_first(stack: Stack, target: TargetServer) -> None:
    low = add_jobs(stack, target, "/ok", 9, priority="low")
    [critical] = add_jobs(stack, target, "/ok", 1, priority="critical")
    batch = stack.receive(QUEUE, max_messages=10)
    batch.sort(key=lambda m: critical in m["Body"])  # the critical job last, as SQS may hand it out
    assert len(batch) == 10 and critical in batch[-1]["Body"]

    assert handler(sqs_event(stack, QUEUE, batch), FakeLambdaContext()) == {"batchItemFailures": []}

    started = {job_id: parse_iso(stack.store.require("alice", job_id).started_at or "") for job_id in [critical, *low]}
    assert started[critical] < min(started[job_id] for job_id in low)
    assert sorted(started[job_id] for job_id in low) == [started[job_id] for job_id in low]  # the others in the order received


def test_a_resume_is_not_undone_by_a_health_sweep_holding_the_pause_in_its_cache(stack: Stack, mappings: MappingRegistry) -> None:  # noqa: F811
    from shared.adapters import policies
    from shared.health import _restore_consumer

    queue = queues.directory().get(QUEUE)
    assert call("POST", f"/queues/{QUEUE}/pause")[0] == 200
    stale = policies.get_policy(queue)  # what another container (the HealthFunction's) still caches
    assert stale.paused
    assert call("POST", f"/queues/{QUEUE}/resume")[0] == 200

    _restore_consumer(queue, stale, stack.settings)

    assert mappings.by_uuid(queue.event_source_mapping_id).enabled  # the resume holds


def test_a_redeploy_that_reset_the_mapping_is_set_back_to_the_queues_pause_and_concurrency(stack: Stack, mappings: MappingRegistry) -> None:  # noqa: F811
    from shared.adapters import consumer_switch

    queue = queues.directory().get(QUEUE)
    assert call("PATCH", f"/queues/{QUEUE}", body={"maxConcurrency": 40})[0] == 200
    assert call("POST", f"/queues/{QUEUE}/pause")[0] == 200
    mapping = mappings.by_uuid(queue.event_source_mapping_id)
    mapping.enabled, _ = True, mapping.set_max_concurrency(2)  # what CloudFormation writes from the template

    restored = consumer_switch.reconcile(queue, paused=True, max_concurrency=40)

    assert restored == ["Enabled", "ScalingConfig"]
    assert (mapping.enabled, mapping.max_concurrency) == (False, 40)
    assert consumer_switch.reconcile(queue, paused=True, max_concurrency=40) == []  # nothing to do the next time
