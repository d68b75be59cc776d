"""Flows on moto: follow-up jobs from processors, parents that wait for their children, failure policies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api.main import handler
from functions.consumer.handler import handler as consumer
from shared.adapters import policies
from shared.catalog import CODE_PROCESSORS, CodeProcessor
from shared.models import JobRef
from shared.status import JobStatus
from shared.worker import JobContext
from tests.unit.api_events import http_event, user
from tests.unit.conftest import FakeLambdaContext, Stack, sqs_event
from tests.unit.stream_feed import StreamFeed

A, B = "email-sending", "report-generation"
ALICE = user("alice")
BEHAVIOUR: dict[str, Callable[[JobContext], Any]] = {}


def flow_step(job: JobContext) -> Any:
    """The test's processor: what the job's data names in BEHAVIOUR, else echo."""
    return BEHAVIOUR.get(job.data.get("do", ""), lambda j: {"echo": j.data.get("n")})(job)


@pytest.fixture(autouse=True)
def step_processor(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for queue in (A, B, "video-processing"):
        monkeypatch.setitem(CODE_PROCESSORS, queue, {**CODE_PROCESSORS.get(queue, {}), "step": CodeProcessor("tests.unit.test_flows:flow_step")})
    policies.reset_cache()
    BEHAVIOUR.clear()
    yield
    BEHAVIOUR.clear()


def call(method: str, path: str, body: Any = None, claims: dict[str, str] = ALICE) -> tuple[int, Any]:
    route, _, query = path.partition("?")
    response = handler(http_event(method, route, body=body, claims=claims, query=query), FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def drain(stack: Stack, feed: StreamFeed, rounds: int = 30, queues: tuple[str, ...] = (A, B)) -> None:
    """Run consumers (of ``queues``) and the EventsFunction until nothing moves."""
    for _ in range(rounds):
        moved = False
        for queue in queues:
            while messages := stack.receive(queue):
                consumer(sqs_event(stack, queue, messages), FakeLambdaContext())
                moved = True
        if feed.deliver()["Records"]:
            moved = True
        if not moved:
            return


def status(stack: Stack, job_id: str) -> str:
    job = stack.store.get("alice", job_id)
    assert job is not None, job_id
    return job.status.value


def node(queue: str, n: int, *children: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"queue": queue, "type": "step", "data": {"n": n, **extra.pop("data", {})}, "children": list(children), **extra}


def test_a_processor_adds_a_follow_up_job_created_with_its_completion(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    BEHAVIOUR["chain"] = lambda j: {"next": j.add_job(B, "step", {"n": 2})}
    code, out = call("POST", "/jobs", {"queue": A, "type": "step", "data": {"do": "chain"}})
    assert code == 201
    drain(stack, feed)
    first = stack.store.get("alice", out["data"]["jobId"])
    assert first is not None and first.status is JobStatus.COMPLETED
    follow = stack.store.get("alice", first.result["next"])
    assert follow is not None and follow.status is JobStatus.COMPLETED and follow.result == {"echo": 2} and follow.queue == B


def test_a_three_level_tree_across_two_queues_completes_bottom_up(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    BEHAVIOUR["sum"] = lambda j: {"sum": sum(v["sum"] if "sum" in v else v["echo"] for v in j.children_values().values())}
    tree = node(A, 0, node(B, 1, node(A, 11), node(B, 12), data={"do": "sum"}), node(B, 2), data={"do": "sum"})
    code, out = call("POST", "/flows", tree)
    assert code == 201, out
    root = out["data"]["flowId"]
    assert out["data"]["jobs"] == 5 and status(stack, root) == "waiting-children" and status(stack, f"{root}:0") == "waiting-children"
    drain(stack, feed)
    assert stack.store.get("alice", root).result == {"sum": 11 + 12 + 2}  # type: ignore[union-attr]
    code, flow = call("GET", f"/flows/{root}")
    assert code == 200 and flow["data"]["status"] == "completed"
    assert [c["status"] for c in flow["data"]["children"]] == ["completed", "completed"]
    assert len(flow["data"]["children"][0]["children"]) == 2
    code, deps = call("GET", f"/jobs/{root}/dependencies?status=processed")
    assert code == 200 and {d["jobId"] for d in deps["data"]["dependencies"]} == {f"{root}:0", f"{root}:1"}
    assert deps["data"]["counts"] == {"pending": 0, "failed": 0, "total": 2}


def _fails(job: JobContext) -> Any:
    from shared.errors import PermanentJobError

    raise PermanentJobError("boom")


def test_a_failed_child_fails_its_parent_and_up_the_tree_by_default(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    BEHAVIOUR["fail"] = _fails
    _, out = call("POST", "/flows", node(A, 0, node(B, 1, node(A, 2, data={"do": "fail"}))))
    root = out["data"]["flowId"]
    drain(stack, feed)
    assert status(stack, f"{root}:0.0") == "failed" and status(stack, f"{root}:0") == "failed" and status(stack, root) == "failed"
    assert "child" in (stack.store.get("alice", root).error or "")  # type: ignore[union-attr]


def test_retrying_the_failed_child_resumes_the_parents(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    BEHAVIOUR["fail"] = _fails
    _, out = call("POST", "/flows", node(A, 0, node(B, 1, node(A, 2, data={"do": "fail"}))))
    root = out["data"]["flowId"]
    drain(stack, feed)
    BEHAVIOUR.pop("fail")  # fixed: it succeeds now
    code, _ = call("POST", f"/jobs/{root}:0.0/retry")
    assert code == 200
    drain(stack, feed)
    assert [status(stack, j) for j in (f"{root}:0.0", f"{root}:0", root)] == ["completed"] * 3


@pytest.mark.parametrize(
    ("policy", "parent_status", "dependency"),
    [
        ("continueParentOnFailure", "completed", "failed"),
        ("ignoreDependencyOnFailure", "completed", "ignored"),
        ("removeDependencyOnFailure", "completed", None),
        ("failParentOnFailure", "failed", "failed"),
    ],
)
def test_each_failure_policy(stack: Stack, policy: str, parent_status: str, dependency: str | None) -> None:
    feed = StreamFeed(stack.table_name)
    BEHAVIOUR["fail"] = _fails
    BEHAVIOUR["count"] = lambda j: {"values": len(j.children_values())}
    _, out = call("POST", "/flows", node(A, 0, node(B, 1), node(B, 2, data={"do": "fail"}, onFailure=policy), data={"do": "count"}))
    root = out["data"]["flowId"]
    drain(stack, feed)
    assert status(stack, root) == parent_status
    _, deps = call("GET", f"/jobs/{root}/dependencies")
    states = {d["jobId"]: d["dependency"] for d in deps["data"]["dependencies"]}
    assert states.get(f"{root}:1") == "failed" if dependency == "failed" else states.get(f"{root}:1") == dependency
    assert states[f"{root}:0"] == "processed"


def test_continue_parent_on_failure_starts_the_parent_before_its_other_children_finish(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    BEHAVIOUR["fail"] = _fails
    # the slow child is on a queue nobody drains here
    _, out = call("POST", "/flows", node(A, 0, node("video-processing", 1), node(B, 2, data={"do": "fail"}, onFailure="continueParentOnFailure")))
    root = out["data"]["flowId"]
    drain(stack, feed)
    assert status(stack, f"{root}:0") == "waiting" and status(stack, root) == "completed"


def test_a_redelivered_stream_batch_and_a_child_ending_again_change_no_parent_count(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    _, out = call("POST", "/flows", node(A, 0, node(B, 1), node("video-processing", 2)))
    root = out["data"]["flowId"]
    feed.deliver()
    while messages := stack.receive(B):
        consumer(sqs_event(stack, B, messages), FakeLambdaContext())
    event = feed.next_event()
    from functions.events.handler import handler as events

    for _ in range(3):  # Lambda retries the same batch
        events(event, FakeLambdaContext())
    from shared.adapters.flows import FlowStore

    counts = FlowStore(stack.table_name).counts(JobRef("alice", root))
    assert counts is not None and (counts.pending, counts.failed, counts.total) == (1, 0, 2)
    assert status(stack, root) == "waiting-children"


def test_cancelling_a_parent_cancels_its_unfinished_descendants(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    _, out = call("POST", "/flows", node(A, 0, node("video-processing", 1, node("video-processing", 11)), node(B, 2)))
    root = out["data"]["flowId"]
    while messages := stack.receive(B):
        consumer(sqs_event(stack, B, messages), FakeLambdaContext())
    code, _ = call("DELETE", f"/jobs/{root}")
    assert code == 200
    drain(stack, feed)
    assert status(stack, root) == "cancelled" and status(stack, f"{root}:0") == "cancelled" and status(stack, f"{root}:0.0") == "cancelled"
    assert status(stack, f"{root}:1") == "completed"


def test_removing_a_parent_removes_its_tree(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    _, out = call("POST", "/flows", node(A, 0, node("video-processing", 1, node("video-processing", 11)), node(B, 2)))
    root = out["data"]["flowId"]
    code, _ = call("DELETE", f"/jobs/{root}?action=remove")
    assert code == 200
    drain(stack, feed)
    assert all(stack.store.get("alice", j) is None for j in (root, f"{root}:0", f"{root}:0.0", f"{root}:1"))
    assert call("GET", f"/flows/{root}")[0] == 404


def test_a_processor_adds_children_and_runs_again_with_their_values(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)

    def fan_out(job: JobContext) -> Any:
        values = job.children_values()
        if not values:
            job.add_children([{"queue": B, "type": "step", "data": {"n": i}} for i in range(3)])
            return None
        return {"total": sum(v["echo"] for v in values.values())}

    BEHAVIOUR["fan"] = fan_out
    _, out = call("POST", "/jobs", {"queue": A, "type": "step", "data": {"do": "fan"}})
    drain(stack, feed)
    job = stack.store.get("alice", out["data"]["jobId"])
    assert job is not None and job.status is JobStatus.COMPLETED and job.result == {"total": 3}


def test_a_tree_larger_than_one_transaction_is_created_in_steps_a_crash_cannot_leave_half_visible(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staged path, with transactions of 10 items instead of 100 (moto copies the table per transaction)."""
    import shared.adapters.flows as flow_items
    import shared.flow_service as flows
    from shared.flow_models import FlowNode

    monkeypatch.setattr(flows, "MAX_TRANSACTION_ITEMS", 10)
    feed = StreamFeed(stack.table_name)
    BEHAVIOUR["count"] = lambda j: {"values": len(j.children_values())}
    tree = node(A, 0, *[node(B, i) for i in range(12)], data={"do": "count"}, options={"jobId": "big-flow"})
    real_write = flow_items.FlowStore.write
    calls = {"n": 0}

    def crash_on_third(self: Any, actions: list[dict[str, Any]]) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the API's container died")
        real_write(self, actions)

    monkeypatch.setattr(flow_items.FlowStore, "write", crash_on_third)
    with pytest.raises(RuntimeError):
        from api.deps import flow_service

        flow_service().create(FlowNode.model_validate(tree), __import__("shared.access", fromlist=["Identity"]).Identity(user_id="alice"))
    assert call("GET", "/flows/big-flow")[0] == 404  # no root: no flow to see
    drain(stack, feed)
    assert not [m for q in (A, B) for m in stack.receive(q)]  # and nothing of it ran
    monkeypatch.setattr(flow_items.FlowStore, "write", real_write)
    code, out = call("POST", "/flows", tree)  # the client's retry finishes it
    assert code == 201 and out["data"]["jobs"] == 13
    drain(stack, feed)
    assert stack.store.get("alice", "big-flow").result == {"values": 12}  # type: ignore[union-attr]


def test_seed_000_five_step_chain_passes_each_steps_result_on(stack: Stack) -> None:
    feed = StreamFeed(stack.table_name)
    code, out = call("POST", "/jobs", {"queue": "video-processing", "type": "discover-with-instagram", "data": {"businessName": "Restaurant", "location": "NYC"}})
    assert code == 201
    drain(stack, feed, queues=(B, "video-processing"))
    job = stack.store.get("alice", out["data"]["jobId"])
    steps = []
    while job is not None:
        assert job.status is JobStatus.COMPLETED and job.progress == 100, job
        steps.append((job.queue, job.type))
        job = stack.store.get("alice", job.result["next"]) if "next" in job.result else None
    assert [t for _, t in steps] == ["discover-with-instagram", "analyze-reels", "scrape-instagram-videos", "analyze-video-content", "generate-competitor-report"]
    assert {q for q, _ in steps} == {"video-processing", "report-generation"}


def test_an_http_target_adds_follow_up_jobs_in_its_answer(stack: Stack) -> None:
    from tests.target_server import TargetServer

    feed = StreamFeed(stack.table_name)
    admin_claims = {**ALICE, "sub": "root", "cognito:groups": "[admin]"}
    with TargetServer() as target:
        code, _ = call("PUT", f"/queues/{A}/processors/hand-over", {"kind": "http", "url": f"{target.url}/follow/{B}/step", "timeoutSeconds": 5}, claims=admin_claims)
        assert code == 200
        _, out = call("POST", "/jobs", {"queue": A, "type": "hand-over", "data": {"n": 1}})
        drain(stack, feed)
    first = stack.store.get("alice", out["data"]["jobId"])
    assert first is not None and first.status is JobStatus.COMPLETED and "jobq" not in first.result
    follow = stack.store.get("alice", f"{first.job_id}:n{first.version - 1}.0")
    assert follow is not None and follow.queue == B and follow.data == {"from": first.job_id} and follow.status is JobStatus.COMPLETED


def test_a_crash_after_the_completion_never_loses_nor_doubles_the_follow_ups(stack: Stack) -> None:
    """The completion and its follow-ups are one transaction: a redelivered message changes nothing."""
    feed = StreamFeed(stack.table_name)
    BEHAVIOUR["chain"] = lambda j: {"next": j.add_job(B, "step", {"n": 2})}
    _, out = call("POST", "/jobs", {"queue": A, "type": "step", "data": {"do": "chain"}})
    messages = stack.receive(A)
    consumer(sqs_event(stack, A, messages), FakeLambdaContext())
    consumer(sqs_event(stack, A, messages), FakeLambdaContext())  # the same delivery again (its delete was lost)
    drain(stack, feed)
    first = stack.store.get("alice", out["data"]["jobId"])
    assert first is not None and first.status is JobStatus.COMPLETED and first.attempts == 1
    jobs, _ = stack.store.page_by_user("alice", limit=50)
    assert sorted(j.job_id for j in jobs) == sorted([first.job_id, first.result["next"]])


def _sweep_later(stack: Stack) -> list[tuple[int, int]]:
    """The HealthFunction's flow sweep of both queues, run past the grace."""
    from shared.adapters import queues
    from shared.clock import now_ms
    from shared.health import HealthSweep

    later = now_ms() + stack.settings.flow_orphan_grace_seconds * 1000 + 1000
    sweep = HealthSweep(stack.store, queues.directory(), stack.settings, clock=lambda: later)
    return [sweep.sweep_flows(queues.directory().get(q)) for q in (A, B)]


def test_the_health_sweep_removes_a_tree_whose_creation_crashed_before_its_root(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.adapters.flows as flow_items
    import shared.flow_service as flows
    from shared.access import Identity
    from shared.flow_models import FlowNode

    monkeypatch.setattr(flows, "MAX_TRANSACTION_ITEMS", 10)
    feed = StreamFeed(stack.table_name)
    tree = node(A, 0, node(A, 1, *[node(B, i) for i in range(5)]), *[node(B, i) for i in range(8)], options={"jobId": "crashed"})
    real_write = flow_items.FlowStore.write
    calls = {"n": 0}

    def crash_on_third(self: Any, actions: list[dict[str, Any]]) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the API's container died")
        real_write(self, actions)

    monkeypatch.setattr(flow_items.FlowStore, "write", crash_on_third)
    with pytest.raises(RuntimeError):
        from api.deps import flow_service

        flow_service().create(FlowNode.model_validate(tree), Identity(user_id="alice"))
    monkeypatch.setattr(flow_items.FlowStore, "write", real_write)
    written = [f"crashed:{i}" for i in range(9)] + [f"crashed:0.{i}" for i in range(5)]
    left = [j for j in written if stack.store.get("alice", j) is not None]
    assert left and call("GET", "/flows/crashed")[0] == 404  # half of it stored, none of it visible

    on_a = [j for j in left if j == "crashed:0"]
    feed.deliver()  # the queues' counters learn of the waiting jobs (the sweep skips a queue where none waits)
    assert _sweep_later(stack) == [(len(on_a), 0), (len(left) - len(on_a), 0)]
    drain(stack, feed)

    assert [j for j in written if stack.store.get("alice", j) is not None] == []
    assert not [m for q in (A, B) for m in stack.receive(q)]  # nothing of it ran, before or after
    edges = flow_items.FlowStore(stack.table_name)
    assert all(edges.counts(JobRef("alice", j)) is None for j in ("crashed", "crashed:0"))


def test_the_health_sweep_releases_the_leaves_of_a_tree_whose_creation_crashed_after_its_root(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.flow_service as flows
    from shared.access import Identity
    from shared.flow_models import FlowNode

    monkeypatch.setattr(flows, "MAX_TRANSACTION_ITEMS", 10)
    feed = StreamFeed(stack.table_name)
    BEHAVIOUR["count"] = lambda j: {"values": len(j.children_values())}
    tree = node(A, 0, *[node(B, i) for i in range(12)], data={"do": "count"}, options={"jobId": "unreleased"})
    real_release = flows.FlowService._release
    monkeypatch.setattr(flows.FlowService, "_release", lambda self, leaves, fresh=False: (_ for _ in ()).throw(RuntimeError("died")))
    with pytest.raises(RuntimeError):
        from api.deps import flow_service

        flow_service().create(FlowNode.model_validate(tree), Identity(user_id="alice"))
    monkeypatch.setattr(flows.FlowService, "_release", real_release)
    assert status(stack, "unreleased:0") == "waiting-children"
    feed.deliver()

    assert _sweep_later(stack) == [(0, 0), (0, 12)]
    drain(stack, feed)

    assert stack.store.get("alice", "unreleased").result == {"values": 12}  # type: ignore[union-attr]


def test_retention_never_removes_a_child_whose_parent_still_waits(stack: Stack) -> None:
    from shared.adapters import queues
    from shared.models import QueuePolicy, Retention
    from shared.retention import Retention as Cleanup

    info = queues.directory().get(B)
    policies.put_policy(info, QueuePolicy.defaults_for(info).model_copy(update={"remove_on_complete": Retention(max_count=0)}))
    policies.reset_cache()
    feed = StreamFeed(stack.table_name)
    tree = node(A, 0, node(B, 1), node(B, 2, options={"delay": 600_000}), options={"jobId": "kept"})
    assert call("POST", "/flows", tree)[0] == 201
    drain(stack, feed)
    assert (status(stack, "kept"), status(stack, "kept:0"), status(stack, "kept:1")) == ("waiting-children", "completed", "delayed")

    Cleanup(stack.store, queues.directory(), stack.settings).clean()

    assert stack.store.get("alice", "kept:0") is not None  # its parent waits: it may still read this result
    assert call("DELETE", "/jobs/kept:1")[0] == 200  # the other child cancelled: the parent fails (failParentOnFailure)
    drain(stack, feed)
    assert status(stack, "kept") == "failed"
    Cleanup(stack.store, queues.directory(), stack.settings).clean()
    assert stack.store.get("alice", "kept:0") is None  # its parent finished: retention applies again


def test_retrying_a_failed_parent_runs_it_alone_with_its_processed_childrens_values_as_bullmq_does(stack: Stack) -> None:
    """BullMQ's job.retry() on a parent (reprocessJob) moves only that job back to wait: its failed
    children stay failed. jobq's POST /jobs/{parent}/retry does the same; retrying the failed child
    instead is what runs the child and resumes the parent."""
    feed = StreamFeed(stack.table_name)
    BEHAVIOUR["fail"] = _fails
    BEHAVIOUR["count"] = lambda j: {"values": sorted(j.children_values())}
    _, out = call("POST", "/flows", node(A, 0, node(B, 1), node(B, 2, data={"do": "fail"}), data={"do": "count"}))
    root = out["data"]["flowId"]
    drain(stack, feed)
    assert status(stack, root) == "failed"
    BEHAVIOUR.pop("fail")

    assert call("POST", f"/jobs/{root}/retry")[0] == 200
    drain(stack, feed)

    assert status(stack, root) == "completed" and status(stack, f"{root}:1") == "failed"  # the child did not run again
    assert stack.store.get("alice", root).result == {"values": [f"{root}:0"]}  # type: ignore[union-attr]
    _, deps = call("GET", f"/jobs/{root}/dependencies?status=failed")
    assert [d["jobId"] for d in deps["data"]["dependencies"]] == [f"{root}:1"]


def test_a_waiting_parent_shows_in_the_queue_counts_the_dashboard_totals_and_the_listing(stack: Stack) -> None:
    from api.deps import job_service, schedule_service
    from shared.access import Identity
    from shared.dashboard import build_dashboard
    from shared.queue_admin import QueueService
    from tests.unit.api_events import admin

    feed = StreamFeed(stack.table_name)
    assert call("POST", "/flows", node(A, 0, node(B, 1, options={"delay": 600_000}), options={"jobId": "waits"}))[0] == 201
    feed.deliver()

    _, queue = call("GET", f"/queues/{A}", claims=admin())
    board = build_dashboard(QueueService(job_service()), schedule_service(), Identity("root", is_admin=True)).model_dump(by_alias=True)
    _, listing = call("GET", f"/jobs?queue={A}&status=waiting-children", claims=admin())

    assert queue["data"]["liveStats"]["waiting-children"] == 1
    assert board["totals"]["waiting-children"] == 1  # GET /dashboard's data (the page's route shadows it: it is served at /dashboard)
    assert [j["jobId"] for j in listing["data"]["jobs"]] == ["waits"]


def test_a_parent_failed_by_its_child_is_a_failed_job_but_not_a_second_failure_in_the_metric_buckets(stack: Stack) -> None:
    """One fault, one failure in the failure rate: the buckets count the child's failed attempt, not the parent it fails.

    The listing and the counters show both jobs failed; the stream batch that fails the parent, delivered
    again (a retried batch), changes nothing.
    """
    from functions.events.handler import handler as events
    from tests.unit.api_events import admin

    feed = StreamFeed(stack.table_name)
    BEHAVIOUR["fail"] = _fails
    _, out = call("POST", "/flows", node(A, 0, node(A, 1, data={"do": "fail"})))
    root = out["data"]["flowId"]
    for _ in range(10):
        drain(stack, feed, rounds=1, queues=(A,))
        if status(stack, root) == "failed":
            break
    assert status(stack, f"{root}:0") == "failed" and status(stack, root) == "failed"
    batch = feed.next_event()  # the parent's waiting-children -> failed, and what followed it
    assert batch["Records"], "the parent's failure is on the stream"
    events(batch, FakeLambdaContext())
    events(batch, FakeLambdaContext())  # redelivered
    _, queue = call("GET", f"/queues/{A}", claims=admin())
    _, metrics = call("GET", f"/queues/{A}/metrics?hours=1", claims=admin())
    assert queue["data"]["liveStats"]["failed"] == 2
    assert metrics["data"]["totals"]["failed"] == 1


def test_a_redrive_of_all_dead_letters_revives_a_parent_failed_by_its_child_through_the_childs_copy(stack: Stack) -> None:
    """The DLQ holds the failed child's copy only; redriving it puts the parent back to waiting for it, so it
    runs after its child (a copy of the parent would have run it alone, before its child's new attempt)."""
    from tests.unit.api_events import admin

    feed = StreamFeed(stack.table_name)
    BEHAVIOUR["fail"] = _fails
    _, out = call("POST", "/flows", node(A, 0, node(A, 1, data={"do": "fail"})))
    root = out["data"]["flowId"]
    drain(stack, feed, queues=(A,))
    assert status(stack, root) == "failed"
    _, letters = call("GET", f"/queues/{A}/dead-letters?limit=10", claims=admin())
    assert [d["jobId"] for d in letters["data"]["deadLetters"]] == [f"{root}:0"]

    BEHAVIOUR.pop("fail")  # fixed: it succeeds now
    code, redrive = call("POST", f"/queues/{A}/dead-letters/redrive", {}, claims=admin())
    assert code == 200 and redrive["data"]["redriven"] == [f"{root}:0"]
    drain(stack, feed, queues=(A,))
    child, parent = stack.store.get("alice", f"{root}:0"), stack.store.get("alice", root)
    assert child is not None and parent is not None
    assert (child.status, parent.status) == (JobStatus.COMPLETED, JobStatus.COMPLETED)
    assert parent.history[-1].started_at >= child.history[-1].ended_at  # type: ignore[operator]
