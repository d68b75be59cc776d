"""The Python client (jobq_client.Client) against the local stack, over HTTP."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import httpx
import pytest

from jobq_client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    NotAvailable,
    NotFound,
    ServerError,
    Unauthorized,
    WaitTimeout,
)
from shared.client_models import JobPublic
from shared.queue_models import QueueSummary
from shared.schedule_models import Schedule
from shared.status import JobStatus
from tests.integration.conftest import LocalStackProcess
from tests.target_server import TargetServer

pytestmark = pytest.mark.integration

EMAIL = {"to": "bob@example.com", "subject": "Hi", "body": "Hello"}


def client_for(stack: LocalStackProcess, user: str, *, admin: bool = False, **kwargs: Any) -> Client:
    return Client(stack.api_url, stack.token(user, admin=admin), **kwargs)


def register(stack: LocalStackProcess, job_type: str, url: str) -> None:
    with stack.client("root", admin=True) as admin:
        response = admin.put(f"/queues/email-sending/processors/{job_type}", json={"kind": "http", "url": url, "timeoutSeconds": 5})
        assert response.status_code == 200, response.text


class FlakyTransport(httpx.HTTPTransport):
    """The real transport, with faults injected around it: answers lost after the API handled
    the request, or 503/429 answers before it reaches the API."""

    def __init__(self, *, lose_answers: int = 0, refuse_with: list[int] | None = None) -> None:
        super().__init__()
        self.lose_answers = lose_answers
        self.refuse_with = list(refuse_with or [])
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.refuse_with:
            return httpx.Response(self.refuse_with.pop(0), json={"message": "Service Unavailable"}, headers={"Retry-After": "0"})
        response = super().handle_request(request)
        if self.lose_answers:
            self.lose_answers -= 1
            response.read()
            raise httpx.ReadError("connection reset after the request was sent", request=request)
        return response


def test_add_then_wait_returns_the_finished_job_typed_as_the_api_models_it(local_stack: LocalStackProcess) -> None:
    with client_for(local_stack, "cl-carol") as jobq:
        job = jobq.add("email-sending", "send-email", EMAIL, attempts=2)
        done = jobq.wait(job.job_id, timeout=30)

    assert isinstance(job, JobPublic) and job.status in (JobStatus.WAITING, JobStatus.ACTIVE, JobStatus.COMPLETED)
    assert job.max_attempts == 2 and job.user_id == "cl-carol"
    assert done.status is JobStatus.COMPLETED and done.result["to"] == "bob@example.com"
    assert done.history[-1].outcome == "completed"


def video(formats: int) -> dict[str, Any]:
    return {"videoUrl": "s3://in/c.mov", "formats": [f"f{i}" for i in range(formats)]}


def test_wait_follows_a_running_job_by_push_reading_it_only_at_the_start_and_the_end(local_stack: LocalStackProcess) -> None:
    transport = FlakyTransport()  # the real transport, counting requests
    seen: list[tuple[str, float]] = []
    with client_for(local_stack, "cl-erin", transport=transport) as jobq:
        job = jobq.add("video-processing", "transcode-video", video(60))  # ~3 s of steps: several progress pushes
        updates = list(jobq.follow(job.job_id, timeout=60))
        seen = [(u.via, u.job.progress) for u in updates]

    assert {via for via, _ in seen} == {"push"}
    final = updates[-1].job
    assert final.status is JobStatus.COMPLETED and len(final.result["outputs"]) == 60
    progress = [p for _, p in seen if isinstance(p, int | float) and 0 < p < 100]
    assert len(progress) >= 2 and progress == sorted(progress)  # several progress reports, in order
    reads = [r for r in transport.requests if r.method == "GET" and r.url.path == f"/jobs/{job.job_id}"]
    assert len(reads) == 2  # the start and the final job: everything between was pushed


def test_wait_polls_when_the_websocket_is_unavailable(local_stack: LocalStackProcess) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = f"ws://127.0.0.1:{closed.getsockname()[1]}/live"
    with client_for(local_stack, "cl-erin", websocket_url=nowhere) as jobq:
        job = jobq.add("video-processing", "transcode-video", video(3))
        updates = list(jobq.follow(job.job_id, timeout=60))
        done = jobq.wait(jobq.add("email-sending", "send-email", EMAIL).job_id, timeout=30)

    assert {u.via for u in updates} == {"poll"} and "cannot open" in (updates[0].note or "")
    assert updates[-1].job.status is JobStatus.COMPLETED and done.status is JobStatus.COMPLETED


def test_a_create_whose_answer_is_lost_is_retried_and_makes_one_job(local_stack: LocalStackProcess) -> None:
    transport = FlakyTransport(lose_answers=1)
    marker = uuid.uuid4().hex
    owner = f"idem-{marker[:8]}"
    with client_for(local_stack, owner, transport=transport, backoff=0.01) as jobq:
        job = jobq.add("email-sending", "send-email", {**EMAIL, "body": marker})
        mine = list(jobq.iter_jobs())

    posts = [r for r in transport.requests if r.method == "POST"]
    assert len(posts) == 2, "the lost answer was retried"
    assert posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
    assert [j.job_id for j in mine] == [job.job_id]


def test_503_and_429_answers_are_retried_with_backoff(local_stack: LocalStackProcess) -> None:
    transport = FlakyTransport(refuse_with=[503, 429])
    delays: list[float] = []
    with client_for(local_stack, "cl-carol", transport=transport, sleep=delays.append) as jobq:
        job = jobq.add("email-sending", "send-email", EMAIL)

    assert job.job_id and len(transport.requests) == 3
    assert len(delays) == 2 and all(d >= 0 for d in delays)


def test_a_retry_is_not_repeated_after_a_5xx_since_it_may_have_happened(local_stack: LocalStackProcess) -> None:
    transport = FlakyTransport(refuse_with=[502])
    with client_for(local_stack, "cl-carol", transport=transport, sleep=lambda _: None) as jobq, pytest.raises(ServerError) as raised:
        jobq.retry("does-not-matter")

    assert len(transport.requests) == 1 and raised.value.status == 502


def test_iter_jobs_hides_paging_and_lists_newest_first(local_stack: LocalStackProcess) -> None:
    owner = f"pager-{uuid.uuid4().hex[:8]}"
    with client_for(local_stack, owner) as jobq:
        created = [jobq.add("email-sending", "send-email", {**EMAIL, "body": str(i)}).job_id for i in range(7)]
        listed = [j.job_id for j in jobq.iter_jobs(page_size=3)]
        first_two = [j.job_id for j in jobq.iter_jobs(page_size=3, limit=2)]

    assert listed == list(reversed(created))
    assert first_two == listed[:2]


def test_add_bulk_reports_each_item(local_stack: LocalStackProcess) -> None:
    with client_for(local_stack, "cl-carol") as jobq:
        result = jobq.add_bulk([
            {"queue": "email-sending", "type": "send-email", "data": EMAIL},
            {"queue": "no-such-queue", "type": "send-email", "data": EMAIL},
        ])

    assert (result.created, result.failed) == (1, 1)
    assert result.results[0].job is not None and result.results[1].error is not None


def test_api_errors_raise_one_class_per_kind(local_stack: LocalStackProcess) -> None:
    with client_for(local_stack, "cl-carol") as jobq:
        with pytest.raises(NotFound):
            jobq.get("no-such-job")
        with pytest.raises(BadRequest) as bad:
            jobq.add("no-such-queue", "send-email", EMAIL)
        with pytest.raises(Forbidden):
            jobq.queues()
        job = jobq.add("email-sending", "send-email", EMAIL)
        jobq.wait(job.job_id, timeout=30)
        with pytest.raises(Conflict):
            jobq.cancel(job.job_id)
    with Client(local_stack.api_url, "not-a-token") as stranger, pytest.raises(Unauthorized):
        stranger.get(job.job_id)

    assert "no-such-queue" in bad.value.message


def test_another_user_cannot_read_my_job_through_the_client(local_stack: LocalStackProcess) -> None:
    with client_for(local_stack, "cl-carol") as carol, client_for(local_stack, "cl-mallory") as mallory:
        job = carol.add("email-sending", "send-email", EMAIL)
        with pytest.raises(NotFound):
            mallory.get(job.job_id)
        assert job.job_id not in {j.job_id for j in mallory.iter_jobs()}


def test_wait_gives_up_after_its_timeout(local_stack: LocalStackProcess) -> None:
    with client_for(local_stack, "cl-carol") as jobq:
        job = jobq.add("email-sending", "send-email", EMAIL, delay=60_000)
        with pytest.raises(WaitTimeout):
            jobq.wait(job.job_id, timeout=0.5)
        assert jobq.cancel(job.job_id).status is JobStatus.CANCELLED


def test_a_failed_job_is_retried_and_its_logs_read(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "client-once", f"{target.url}/fail-times/1")
    with client_for(local_stack, "cl-carol") as jobq:
        job = jobq.add("email-sending", "client-once", {"n": 1}, attempts=1)
        failed = jobq.wait(job.job_id, timeout=30)
        retried = jobq.retry(job.job_id)
        done = jobq.wait(job.job_id, timeout=30)
        lines = list(jobq.iter_logs(job.job_id))

    assert failed.status is JobStatus.FAILED
    assert retried.status is JobStatus.WAITING and retried.retries == 1
    assert done.status is JobStatus.COMPLETED and len(done.history) == 2
    assert isinstance(lines, list)


def test_queue_operations_as_an_admin(local_stack: LocalStackProcess) -> None:
    with client_for(local_stack, "root", admin=True) as admin:
        queues = admin.queues()
        paused = admin.pause_queue("report-generation")
        resumed = admin.resume_queue("report-generation")
        one = admin.queue("email-sending")
        metrics = admin.metrics("email-sending", hours=1)
        cleaned = admin.clean_queue("report-generation", status="completed", older_than_ms=3_600_000)

    assert {q.name for q in queues} >= {"email-sending", "report-generation", "video-processing"}
    assert all(isinstance(q, QueueSummary) for q in queues)
    assert paused.paused and not resumed.paused
    assert one.name == "email-sending" and one.live_stats.total >= 0
    assert metrics.resolution == "minute" and len(metrics.points) == 60
    assert cleaned.removed >= 0


def test_dead_letters_are_listed_redriven_and_purged(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "client-dead", f"{target.url}/always/400")
    with client_for(local_stack, "cl-carol") as carol, client_for(local_stack, "root", admin=True) as admin:
        job = carol.add("email-sending", "client-dead", {"n": 1}, attempts=1)
        assert carol.wait(job.job_id, timeout=30).status is JobStatus.FAILED
        listed = admin.dead_letters("email-sending")
        redriven = admin.redrive("email-sending", [job.job_id])
        assert carol.wait(job.job_id, timeout=30).status is JobStatus.FAILED  # the target still refuses it
        purged = admin.purge_dead_letters("email-sending")

    assert job.job_id in {d.job_id for d in listed.dead_letters}
    assert redriven.redriven == [job.job_id]
    assert purged.remaining == 0


def test_schedule_operations_as_an_admin(local_stack: LocalStackProcess) -> None:
    name = f"client-{uuid.uuid4().hex[:8]}"
    with client_for(local_stack, "root", admin=True) as admin:
        created = admin.add_schedule(name, "email-sending", "send-email", EMAIL, cron="0 3 * * *", timezone="Europe/Paris", limit=5)
        listed = admin.schedules()
        edited = admin.update_schedule(name, every=600_000, limit=9)
        paused = admin.pause_schedule(name)
        resumed = admin.resume_schedule(name)
        job = admin.trigger_schedule(name)
        admin.delete_schedule(name)
        with pytest.raises(NotFound):
            admin.schedule(name)

    assert isinstance(created, Schedule) and created.next_run_at and created.timezone == "Europe/Paris"
    assert name in {s.name for s in listed}
    assert (edited.cron, edited.every, edited.limit, edited.timezone) == (None, 600_000, 9, "Europe/Paris")
    assert (paused.state, resumed.state) == ("paused", "active")
    assert job.job_id.startswith(f"repeat:{name}:manual:")


def test_what_the_api_does_not_offer_yet_says_so(local_stack: LocalStackProcess) -> None:
    with client_for(local_stack, "cl-carol") as jobq:
        job = jobq.add("email-sending", "send-email", EMAIL)
        flow = jobq.flow(job.job_id)  # the API has flows now (issue 14): a job without children is a flow of one
        assert flow["jobId"] == job.job_id and flow["children"] == []
        if not jobq._offers_remove():
            with pytest.raises(NotAvailable):
                jobq.remove(job.job_id)


def test_the_async_client_adds_waits_and_pages_without_blocking_the_loop(local_stack: LocalStackProcess) -> None:
    owner = f"async-{uuid.uuid4().hex[:8]}"

    async def scenario() -> tuple[list[JobPublic], list[str]]:
        async with AsyncClient(local_stack.api_url, local_stack.token(owner)) as jobq:
            created = await asyncio.gather(*(jobq.add("email-sending", "send-email", {**EMAIL, "body": str(i)}) for i in range(3)))
            done = await asyncio.gather(*(jobq.wait(job.job_id, timeout=30) for job in created))
            listed = [job.job_id async for job in jobq.iter_jobs(page_size=2)]
            with pytest.raises(NotFound):
                await jobq.get("no-such-job")
            return done, listed

    # A loop of its own, not asyncio.run: that leaves the main thread without a current loop, and
    # Mangum (the unit tests' Lambda entry, later in the same process) asks for one.
    loop = asyncio.new_event_loop()
    try:
        done, listed = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert all(isinstance(job, JobPublic) and job.status is JobStatus.COMPLETED for job in done)
    assert sorted(listed) == sorted(job.job_id for job in done)
