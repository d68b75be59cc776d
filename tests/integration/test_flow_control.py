"""Flow control through the local stack, over HTTP: its emulated event source mappings run the consumers at once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from shared.clock import parse_iso
from tests.integration.conftest import POLICY_CACHE_SECONDS, LocalStackProcess, wait_for_status
from tests.target_server import TargetServer

QUEUE = "email-sending"


@pytest.fixture
def admin(local_stack: LocalStackProcess) -> Iterator[httpx.Client]:
    with local_stack.client("root", admin=True) as client:
        yield client


@pytest.fixture
def flow(local_stack: LocalStackProcess, admin: httpx.Client) -> Iterator[httpx.Client]:
    """alice's client; the queue's flow settings are taken off again afterwards (the stack is shared)."""
    with local_stack.client("alice") as client:
        yield client
    response = admin.patch(f"/queues/{QUEUE}", json={"rateLimit": None, "groups": None, "defaultTimeout": None})
    assert response.status_code == 200, response.text


def register(admin: httpx.Client, job_type: str, url: str) -> None:
    response = admin.put(f"/queues/{QUEUE}/processors/{job_type}", json={"kind": "http", "url": url, "timeoutSeconds": 10})
    assert response.status_code == 200, response.text


def create(client: httpx.Client, job_type: str, **options: object) -> str:
    response = client.post("/jobs", json={"queue": QUEUE, "type": job_type, "data": {}, "options": options})
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["jobId"])


def test_a_rate_limit_set_at_runtime_is_never_exceeded_by_the_running_consumers(
    local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, flow: httpx.Client
) -> None:
    register(admin, "limited", f"{target.url}/ok")
    assert admin.patch(f"/queues/{QUEUE}", json={"rateLimit": {"max": 2, "duration": 2000}}).status_code == 200
    time.sleep(POLICY_CACHE_SECONDS + 0.5)  # the consumers' policy cache (JOBQ_POLICY_CACHE_SECONDS)

    job_ids = [create(flow, "limited") for _ in range(8)]
    jobs = [wait_for_status(flow, job_id, {"completed"}, timeout=60) for job_id in job_ids]

    starts = [parse_iso(j["startedAt"]) for j in jobs]
    # The limiter counts a start when it admits the job; startedAt is stamped at the claim just after, so under
    # load a start admitted at a window's very end may carry the next window's time: those are not held against it.
    late = Counter(s // 2000 for s in starts if s % 2000 < 500)
    assert max(n - late[w] for w, n in Counter(s // 2000 for s in starts).items()) <= 2
    assert all(j["attempts"] == 1 for j in jobs)  # waiting for the limit spent no attempt


def test_a_job_past_its_timeout_ends_its_attempt_timed_out_and_retries(
    local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, flow: httpx.Client
) -> None:
    register(admin, "sluggish", f"{target.url}/slow/3")

    job_id = create(flow, "sluggish", timeout=400, attempts=2, backoff={"type": "fixed", "delay": 500})

    job = wait_for_status(flow, job_id, {"failed"}, timeout=30)
    assert [h["outcome"] for h in job["history"]] == ["timed_out", "timed_out"]
    assert job["attempts"] == 2 and "timed out after 400 ms" in job["error"]


def _max_overlap(jobs: list[dict[str, object]]) -> int:
    """The most of these jobs running at once, from their attempts' start and end times."""
    edges = sorted(
        (parse_iso(str(when)), step)
        for job in jobs
        for record in job["history"]  # type: ignore[attr-defined]
        for when, step in ((record["startedAt"], 1), (record["endedAt"], -1))
    )
    running = most = 0
    for _, step in edges:  # an end at the same ms as a start sorts first (-1 < 1): touching is not overlapping
        running += step
        most = max(most, running)
    return most


def test_a_keys_active_jobs_never_exceed_its_max_active_while_other_keys_run_beside_it(
    local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, flow: httpx.Client
) -> None:
    register(admin, "per-key", f"{target.url}/slow/0.4")
    response = admin.patch(f"/queues/{QUEUE}", json={"groups": {"maxActive": 2, "overrides": {"tiny": {"maxActive": 1}}}})
    assert response.status_code == 200, response.text
    time.sleep(POLICY_CACHE_SECONDS + 0.5)  # the consumers' policy cache

    acme = [create(flow, "per-key", group="acme") for _ in range(8)]
    tiny = [create(flow, "per-key", group="tiny") for _ in range(4)]
    other = [create(flow, "per-key") for _ in range(6)]  # no key: not limited
    done = {job_id: wait_for_status(flow, job_id, {"completed"}, timeout=90) for job_id in acme + tiny + other}

    assert _max_overlap([done[i] for i in acme]) == 2  # the limit binds (10 consumers would run more)
    assert _max_overlap([done[i] for i in tiny]) == 1
    assert all(job["attempts"] == 1 for job in done.values())  # waiting for a slot spent no attempt
    groups = {g["key"]: g for g in admin.get(f"/queues/{QUEUE}/groups").json()["data"]["groups"]}
    assert groups["acme"]["started"] >= 8 and groups["acme"]["active"] == 0


def test_a_critical_job_overtakes_a_backlog_of_low_jobs_from_the_same_tenant(
    local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, flow: httpx.Client
) -> None:
    register(admin, "lane", f"{target.url}/slow/0.1")
    before = admin.get(f"/queues/{QUEUE}").json()["data"]["configuration"]["maxConcurrency"]
    assert admin.patch(f"/queues/{QUEUE}", json={"maxConcurrency": 2}).status_code == 200
    try:
        assert admin.post(f"/queues/{QUEUE}/pause").status_code == 200
        jobs = [{"queue": QUEUE, "type": "lane", "data": {"i": i}, "options": {"priority": "low"}} for i in range(80)]
        response = flow.post("/jobs/bulk", json={"jobs": jobs})
        assert response.status_code in (200, 201), response.text
        low = [r["job"]["jobId"] for r in response.json()["data"]["results"]]
        assert admin.post(f"/queues/{QUEUE}/resume").status_code == 200
        time.sleep(1.5)  # both consumers busy with low batches

        critical = wait_for_status(flow, create(flow, "lane", priority="critical"), {"completed"}, timeout=60)
        lows = [wait_for_status(flow, job_id, {"completed"}, timeout=120) for job_id in low]
    finally:
        admin.patch(f"/queues/{QUEUE}", json={"maxConcurrency": before})
        admin.post(f"/queues/{QUEUE}/resume")

    started = parse_iso(critical["startedAt"])
    behind = [j for j in lows if parse_iso(j["startedAt"]) > started]
    assert len(behind) >= 30, f"only {len(behind)} of 80 low jobs started after the critical one"
    stats = admin.get(f"/queues/{QUEUE}").json()["data"]["byPriority"]
    assert set(stats) >= {"critical", "low"}


@pytest.mark.parametrize("mode", ["throttle", "debounce", "keepLastIfActive"])
def test_each_deduplication_mode_through_the_local_stack(
    local_stack: LocalStackProcess, target: TargetServer, admin: httpx.Client, flow: httpx.Client, mode: str
) -> None:
    # keepLastIfActive: the first job runs 4 s, so the two adds that follow it still find it active on a loaded machine.
    register(admin, "dedup", f"{target.url}/slow/{4 if mode == 'keepLastIfActive' else 1.5}")
    key = {"key": f"report-{mode}-{time.time_ns()}", "mode": mode, **({"ttlSeconds": 60} if mode == "throttle" else {})}

    def add(value: int, **options: object) -> tuple[int, dict[str, object]]:
        body = {"queue": QUEUE, "type": "dedup", "data": {"v": value}, "options": {"deduplication": key, **options}}
        response = flow.post("/jobs", json=body)
        assert response.status_code in (200, 201), response.text
        return response.status_code, response.json()["data"]

    if mode == "throttle":  # ignored for the ttl, even after the first finished
        status, first = add(1)
        wait_for_status(flow, str(first["jobId"]), {"completed"}, timeout=30)
        again_status, again = add(2)
        assert (status, again_status, again["jobId"]) == (201, 200, first["jobId"])
    elif mode == "debounce":  # the pending job takes the newest data; its delay restarts
        _, first = add(1, delay=6000)  # room for a loaded machine: the second add must find it still pending
        time.sleep(1.5)
        again_status, again = add(2, delay=6000)
        assert (again_status, again["jobId"]) == (200, first["jobId"])
        job = wait_for_status(flow, str(first["jobId"]), {"completed"}, timeout=30)
        assert job["data"] == {"v": 2} and job["attempts"] == 1
        # 1.5 s later + the restarted 6 s, less the claim's 1 s early tolerance: the first message (due at 6 s) slept again
        assert parse_iso(job["startedAt"]) >= parse_iso(str(first["createdAt"])) + 6400
    else:  # one running, one waiting beside it: the newest data wins; no groups policy on the queue
        _, running = add(1)
        wait_for_status(flow, str(running["jobId"]), {"active"}, timeout=30)
        second_status, second = add(2)
        third_status, third = add(3)
        assert second_status == 201 and second["jobId"] != running["jobId"]
        assert (third_status, third["jobId"]) == (200, second["jobId"])
        while flow.get(f"/jobs/{running['jobId']}").json()["data"]["status"] == "active":  # ten consumers are free meanwhile
            assert flow.get(f"/jobs/{second['jobId']}").json()["data"]["status"] == "waiting"
            time.sleep(0.1)
        first = wait_for_status(flow, str(running["jobId"]), {"completed"}, timeout=30)
        job = wait_for_status(flow, str(second["jobId"]), {"completed"}, timeout=30)
        assert job["data"] == {"v": 3} and job["attempts"] == 1  # waiting spent no attempt
        assert _max_overlap([first, job]) == 1
        ended = parse_iso(first["history"][-1]["endedAt"])
        assert ended <= parse_iso(job["startedAt"]) < ended + 5000  # once the first ended, and soon after
        calls = [c for c in target.calls if c.job_id in (running["jobId"], second["jobId"])]
        assert [c.payload["data"] for c in calls] == [{"v": 1}, {"v": 3}]
