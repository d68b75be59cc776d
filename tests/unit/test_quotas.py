"""Per-user quotas (shared/quotas.py) on moto: past a user's rate or unfinished-job quota a create
gets 429 with Retry-After and stores nothing; other users are unaffected; an admin's override
changes one user's limits; finished jobs give their place back through the stream."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from api import deps
from api.main import handler
from shared.adapters.quotas import DynamoQuotaStore
from shared.clock import now_ms
from shared.errors import TooManyJobs
from shared.quotas import Quotas
from tests.unit.api_events import admin, http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack
from tests.unit.stream_feed import StreamFeed

QUEUE = "email-sending"
MINUTE_MS = 60_000
EMAIL = {"to": "a@example.com", "subject": "s", "body": "b"}


@pytest.fixture
def quotas(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The stack with UserJobsPerMinute 3, UserMaxUnfinishedJobs 5 and QuotaBlockSize 10."""
    from shared.settings import get_settings

    monkeypatch.setenv("JOBQ_USER_JOBS_PER_MINUTE", "3")
    monkeypatch.setenv("JOBQ_USER_MAX_UNFINISHED_JOBS", "5")
    monkeypatch.setenv("JOBQ_POLICY_CACHE_SECONDS", "0")
    monkeypatch.setenv("JOBQ_QUOTA_BLOCK_SIZE", "10")  # the stack's default: the API container takes its quota in blocks
    get_settings.cache_clear()
    # The API's clock, 1 s into a fresh minute: a test's creates never straddle two rate windows.
    shift = MINUTE_MS - now_ms() % MINUTE_MS + 1000
    deps.use_clock(lambda: now_ms() + shift)
    yield stack
    deps.use_clock(None)


def call(method: str, path: str, claims: dict[str, str], body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return handler(http_event(method, path, body=body, claims=claims, headers=headers), FakeLambdaContext())


def create(who: str, **options: Any) -> dict[str, Any]:
    return call("POST", "/jobs", user(who), {"queue": QUEUE, "type": "send-email", "data": EMAIL, "options": options})


def stored(stack: Stack, who: str) -> int:
    return len(stack.store.page_by_user(who, None, limit=100, cursor=None)[0])


def test_a_user_past_the_rate_quota_gets_429_with_retry_after_and_nothing_is_stored(quotas: Stack) -> None:
    assert [create("ann")["statusCode"] for _ in range(3)] == [201, 201, 201]
    refused = create("ann", jobId="fourth")
    assert refused["statusCode"] == 429
    assert 1 <= int(refused["headers"]["retry-after"]) <= 60
    error = json.loads(refused["body"])["error"]
    assert error["code"] == "TOO_MANY_JOBS" and "jobsPerMinute" in error["message"]
    assert quotas.store.get("ann", "fourth") is None and stored(quotas, "ann") == 3


def test_another_user_is_unaffected_by_a_user_at_the_quota(quotas: Stack) -> None:
    for _ in range(4):
        create("ann")
    assert [create("bob")["statusCode"] for _ in range(3)] == [201, 201, 201]


def test_a_bulk_request_past_the_rate_quota_stores_none_of_its_jobs(quotas: Stack) -> None:
    assert create("ann")["statusCode"] == 201
    jobs = [{"queue": QUEUE, "type": "send-email", "data": EMAIL} for _ in range(3)]
    refused = call("POST", "/jobs/bulk", user("ann"), {"jobs": jobs})
    assert refused["statusCode"] == 429 and "retry-after" in refused["headers"]
    assert stored(quotas, "ann") == 1
    assert call("POST", "/jobs/bulk", user("ann"), {"jobs": jobs[:2]})["statusCode"] in (200, 201, 207)
    assert stored(quotas, "ann") == 3


def test_a_bulk_request_larger_than_the_quota_is_a_clear_400(quotas: Stack) -> None:
    jobs = [{"queue": QUEUE, "type": "send-email", "data": EMAIL} for _ in range(4)]
    refused = call("POST", "/jobs/bulk", user("ann"), {"jobs": jobs})
    assert refused["statusCode"] == 400 and "at most 3 per request" in json.loads(refused["body"])["error"]["message"]
    assert stored(quotas, "ann") == 0


def test_a_replayed_idempotent_create_costs_no_quota(quotas: Stack) -> None:
    body = {"queue": QUEUE, "type": "send-email", "data": EMAIL}
    for _ in range(5):
        assert call("POST", "/jobs", user("ann"), body, headers={"Idempotency-Key": "k1"})["statusCode"] in (200, 201)
    assert [create("ann")["statusCode"] for _ in range(2)] == [201, 201]


def test_an_override_raises_one_users_limit_and_removing_it_restores_the_default(quotas: Stack) -> None:
    changed = call("PUT", "/quotas/ann", admin(), {"jobsPerMinute": 10, "maxUnfinishedJobs": 20})
    assert changed["statusCode"] == 200
    data = json.loads(changed["body"])["data"]
    assert data["jobsPerMinute"] == 10 and data["maxUnfinishedJobs"] == 20 and data["overridden"] is True
    assert [create("ann")["statusCode"] for _ in range(10)] == [201] * 10
    assert create("ann")["statusCode"] == 429
    assert create("bob")["statusCode"] == 201  # bob keeps the default
    usage = json.loads(call("GET", "/quotas/ann", admin())["body"])["data"]
    assert usage["createdThisMinute"] == 10 and usage["unfinishedJobs"] == 10
    assert call("DELETE", "/quotas/ann", admin())["statusCode"] == 204
    assert json.loads(call("GET", "/quotas/ann", admin())["body"])["data"]["jobsPerMinute"] == 3


def test_only_admins_change_quotas(quotas: Stack) -> None:
    assert call("PUT", "/quotas/ann", user("ann"), {"jobsPerMinute": 1000})["statusCode"] == 403
    assert call("GET", "/quotas/ann", user("ann"))["statusCode"] == 403
    assert DynamoQuotaStore(quotas.table_name).get_override("ann") is None


def test_past_the_unfinished_quota_429_and_a_finished_job_gives_its_place_back(quotas: Stack) -> None:
    feed = StreamFeed(quotas.table_name)
    call("PUT", "/quotas/ann", admin(), {"jobsPerMinute": 100})  # the rate out of the way
    assert [create("ann", jobId=f"j{i}")["statusCode"] for i in range(5)] == [201] * 5
    refused = create("ann", jobId="j5")
    assert refused["statusCode"] == 429 and int(refused["headers"]["retry-after"]) == quotas.settings.backpressure_retry_after_seconds
    assert "unfinished" in json.loads(refused["body"])["error"]["message"]
    assert quotas.store.get("ann", "j5") is None
    assert create("bob")["statusCode"] == 201
    assert call("DELETE", "/jobs/j0", user("ann"))["statusCode"] == 200  # cancelled: finished
    feed.deliver()
    assert DynamoQuotaStore(quotas.table_name).unfinished("ann") == 4
    assert create("ann", jobId="j5")["statusCode"] == 201


class _Writes:
    """The DynamoDB writes made through the shared client while it is open (operation names)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __enter__(self) -> list[str]:
        from shared.adapters import clients

        clients.client("dynamodb").meta.events.register("provide-client-params.dynamodb", self._record)
        return self.names

    def __exit__(self, *exc: Any) -> None:
        from shared.adapters import clients

        clients.client("dynamodb").meta.events.unregister("provide-client-params.dynamodb", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        if model.name in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"):
            self.names.append(model.name)


def _block_size(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    from shared.settings import get_settings

    monkeypatch.setenv("JOBQ_QUOTA_BLOCK_SIZE", str(size))
    get_settings.cache_clear()
    deps.job_service.cache_clear()
    deps.flow_service.cache_clear()


def test_with_a_block_size_of_1_a_create_takes_its_rate_and_its_place_in_one_write(quotas: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    _block_size(monkeypatch, 1)
    assert create("ann")["statusCode"] == 201  # the first of the minute may write twice (the window turns)
    with _Writes() as writes:
        assert create("ann")["statusCode"] == 201
    assert writes == ["UpdateItem", "PutItem"]  # the account item (rate and place together), the job
    usage = json.loads(call("GET", "/quotas/ann", admin())["body"])["data"]
    assert usage["createdThisMinute"] == 2 and usage["unfinishedJobs"] == 2
    store = DynamoQuotaStore(quotas.table_name)
    assert store.rate_used("ann", deps.clock()() // MINUTE_MS) == 2 and store.unfinished("ann") == 2  # nothing held unspent


def test_with_quota_blocks_a_create_usually_writes_no_quota_item_and_usage_shows_what_was_created(quotas: Stack) -> None:
    call("PUT", "/quotas/ann", admin(), {"jobsPerMinute": 100, "maxUnfinishedJobs": 100})
    assert create("ann")["statusCode"] == 201  # takes a block of 10 creates and 10 places in one write
    with _Writes() as writes:
        assert [create("ann")["statusCode"] for _ in range(9)] == [201] * 9
    assert writes == ["PutItem"] * 9  # the jobs only: the block pays for them
    with _Writes() as writes:
        assert create("ann")["statusCode"] == 201
    assert writes == ["UpdateItem", "PutItem"]  # the next block
    store = DynamoQuotaStore(quotas.table_name)
    assert store.unfinished("ann") == 20  # the item counts the block (9 held by this container)
    usage = json.loads(call("GET", "/quotas/ann", admin())["body"])["data"]
    assert usage["createdThisMinute"] == 11 and usage["unfinishedJobs"] == 11  # this container subtracts what it holds


def test_a_create_refused_for_its_unfinished_quota_counts_no_rate(quotas: Stack) -> None:
    call("PUT", "/quotas/ann", admin(), {"jobsPerMinute": 100, "maxUnfinishedJobs": 2})
    assert [create("ann")["statusCode"] for _ in range(3)] == [201, 201, 429]
    usage = json.loads(call("GET", "/quotas/ann", admin())["body"])["data"]
    assert usage["createdThisMinute"] == 2 and usage["unfinishedJobs"] == 2


def test_the_rate_starts_again_each_minute_and_a_container_with_an_older_clock_counts_in_the_new_one(quotas: Stack) -> None:
    one, other = DynamoQuotaStore(quotas.table_name), DynamoQuotaStore(quotas.table_name)  # two containers
    assert [one.take("ann", 100, 1, 2) for _ in range(3)] == [None, None, "rate"]
    assert other.take("ann", 101, 2, 2) is None  # the next minute: a full window again
    assert one.take("ann", 100, 1, 2) == "rate"  # its clock still says 100: counted in 101, which is full
    assert one.rate_used("ann", 101) == 2 and one.rate_used("ann", 100) == 0
    assert one.take("ann", 102, 1, 2, place_limit=1) is None and one.unfinished("ann") == 1
    assert other.take("ann", 102, 1, 2, place_limit=1) == "unfinished"  # nothing taken: the rate stays 1
    assert one.rate_used("ann", 102) == 1
def flow(children: int, root_id: str) -> dict[str, Any]:
    email = {"queue": QUEUE, "type": "send-email", "data": EMAIL}
    return {**email, "options": {"jobId": root_id}, "children": [email] * children}


def test_a_flow_counts_each_of_its_jobs_against_the_rate_quota_all_or_nothing(quotas: Stack) -> None:
    assert create("ann")["statusCode"] == 201
    refused = call("POST", "/flows", user("ann"), flow(2, "f1"))  # 3 jobs; 2 left this minute
    assert refused["statusCode"] == 429 and "jobsPerMinute" in json.loads(refused["body"])["error"]["message"]
    assert stored(quotas, "ann") == 1 and quotas.store.get("ann", "f1:0") is None
    assert call("POST", "/flows", user("ann"), flow(1, "f2"))["statusCode"] == 201
    assert stored(quotas, "ann") == 3
    assert call("POST", "/flows", user("ann"), flow(1, "f2"))["statusCode"] == 200  # a replayed flow is free


def test_a_flow_past_the_unfinished_quota_is_429_and_stores_nothing_and_its_jobs_give_their_places_back(quotas: Stack) -> None:
    feed = StreamFeed(quotas.table_name)
    call("PUT", "/quotas/ann", admin(), {"jobsPerMinute": 100})
    assert create("ann", jobId="j0")["statusCode"] == 201
    refused = call("POST", "/flows", user("ann"), flow(4, "big"))  # 5 jobs; 4 places left
    assert refused["statusCode"] == 429 and "unfinished" in json.loads(refused["body"])["error"]["message"]
    assert int(refused["headers"]["retry-after"]) == quotas.settings.backpressure_retry_after_seconds
    assert stored(quotas, "ann") == 1 and DynamoQuotaStore(quotas.table_name).unfinished("ann") == 1
    assert call("POST", "/flows", user("ann"), flow(3, "fits"))["statusCode"] == 201
    assert DynamoQuotaStore(quotas.table_name).unfinished("ann") == 5
    assert create("ann")["statusCode"] == 429
    assert call("DELETE", "/jobs/fits", user("ann"))["statusCode"] == 200  # the parent cancelled: its children are, by the stream
    for _ in range(3):
        feed.deliver()
    assert DynamoQuotaStore(quotas.table_name).unfinished("ann") == 1


def test_places_a_container_held_unspent_when_it_ended_are_given_back_two_minutes_on(quotas: Stack) -> None:
    feed = StreamFeed(quotas.table_name)
    call("PUT", "/quotas/ann", admin(), {"jobsPerMinute": 100})  # the rate out of the way; 5 unfinished jobs at most
    assert [create("ann")["statusCode"] for _ in range(2)] == [201, 201]  # a block of 5 places: 2 spent, 3 held
    assert create("bob")["statusCode"] == 201
    feed.deliver()  # the stream moves the 2 spent places out of the block, to their jobs
    assert DynamoQuotaStore(quotas.table_name).unfinished("ann") == 5
    # That container ends (its 3 places unspent); the next one's clock is two minutes on.
    shift = MINUTE_MS - now_ms() % MINUTE_MS + 1000 + 2 * MINUTE_MS
    deps.use_clock(lambda: now_ms() + shift)
    assert [create("ann")["statusCode"] for _ in range(4)] == [201, 201, 201, 429]  # 5 unfinished, never more
    feed.deliver()
    assert DynamoQuotaStore(quotas.table_name).unfinished("ann") == 5 and stored(quotas, "ann") == 5


def _containers(stack: Stack, *, rate: int, places: int, block: int, count: int = 2) -> list[Quotas]:
    """``count`` API containers' quotas on one table, their clocks 1 s into one minute."""
    minute = 29_000_000
    return [
        Quotas(
            DynamoQuotaStore(stack.table_name),
            jobs_per_minute=rate,
            max_unfinished_jobs=places,
            cache_seconds=60,
            block_size=block,
            clock=lambda: minute * 60 + 1.0,
        )
        for _ in range(count)
    ]


def _admitted(container: Quotas, attempts: int, *, with_place: bool, results: list[bool]) -> None:
    for _ in range(attempts):
        try:
            container.take_rate("ann", with_place=with_place)
            results.append(True)
        except TooManyJobs:
            results.append(False)


@pytest.mark.parametrize(("rate", "places"), [(25, 0), (0, 17), (25, 17)])
def test_two_api_containers_taking_quota_in_blocks_never_admit_more_than_the_limit_together(quotas: Stack, rate: int, places: int) -> None:
    containers = _containers(quotas, rate=rate or 1000, places=places, block=4)
    limit = min(rate or 1000, places or 1000)
    results: list[bool] = []
    threads = [threading.Thread(target=_admitted, args=(c, 20), kwargs={"with_place": bool(places), "results": results}) for c in containers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each kept asking until refused, so neither holds anything unspent: together exactly the limit.
    assert sum(results) == limit and len(results) == 40
    store = DynamoQuotaStore(quotas.table_name)
    if places:
        assert store.unfinished("ann") == places
    if rate:  # with both: the creates still held beside places run out stay counted, within the limit
        assert store.rate_used("ann", 29_000_000) == rate if not places else limit <= store.rate_used("ann", 29_000_000) <= rate


def test_a_block_held_unspent_by_one_container_is_what_another_may_be_refused_at_most(quotas: Stack) -> None:
    one, other = _containers(quotas, rate=10, places=0, block=4)
    one.take_rate("ann")  # takes 4 creates, spends 1: holds 3
    admitted: list[bool] = []
    _admitted(other, 10, with_place=False, results=admitted)
    assert sum(admitted) == 10 - 4  # the 3 the first holds (block - 1 at most) are refused to the second
    assert one.held("ann") == (3, 0)
    mine: list[bool] = []
    _admitted(one, 5, with_place=False, results=mine)
    assert mine == [True, True, True, False, False]  # spent where they are held: the minute's 10 in all
    assert one.usage("ann").created_this_minute == 10


def test_a_flow_spends_the_containers_block_and_gives_its_unspent_places_back(quotas: Stack) -> None:
    (one,) = _containers(quotas, rate=10, places=8, block=4, count=1)
    one.take_rate("ann", with_place=True)  # holds 3 creates and 3 places
    assert DynamoQuotaStore(quotas.table_name).unfinished("ann") == 4
    one.take_rate("ann", 5)  # a flow of 5: 3 held + 2 from the item; the 3 places given back in the same write
    store = DynamoQuotaStore(quotas.table_name)
    assert store.unfinished("ann") == 1 and store.rate_used("ann", 29_000_000) == 4 + 2 and one.held("ann") == (0, 0)
