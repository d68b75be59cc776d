"""The local stack as a user runs it (`python -m infra.local`), in a subprocess, over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from infra.local.issuer import read_stack_state
from infra.local.token import mint_token
from tests.target_server import TargetServer

ROOT = Path(__file__).resolve().parents[2]
STACK_NAME = "jobq-it"
READY = "jobq local stack ready: "
RULE_INTERVAL_SECONDS = 2
# A queue's policy (rate limit, groups, webhook) reaches the consumers within a second instead of 5 s:
# a test that changes one waits this out (plus a margin) before it relies on it.
POLICY_CACHE_SECONDS = 1


@dataclass
class LocalStackProcess:
    api_url: str
    websocket_url: str
    aws_endpoint: str
    state_dir: Path
    process: subprocess.Popen[str]

    def token(self, user: str, *, admin: bool = False) -> str:
        return mint_token(user, admin=admin, state_dir=self.state_dir)

    def client(self, user: str, *, admin: bool = False) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.token(user, admin=admin)}"}, timeout=10
        )

    def sqs(self) -> Any:
        return boto3.client(
            "sqs", endpoint_url=self.aws_endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    def dlq_bodies(self, queue: str) -> list[str]:
        sqs = self.sqs()
        url = sqs.get_queue_url(QueueName=f"{STACK_NAME}-{queue}-dlq")["QueueUrl"]
        out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, MessageAttributeNames=["All"])
        return [m["Body"] for m in out.get("Messages", [])]


# `python -m infra.local`, with the garbage collector on tests/conftest.py's thresholds: the stack's
# CPU time is the suite's (~15 % less at start and idle); what it does is unchanged.
RUN_LOCAL_STACK = "import gc, runpy; gc.set_threshold(50_000, 20, 100); runpy.run_module('infra.local', run_name='__main__', alter_sys=True)"


# Package scope: a worker stops its stack when it moves on to a file outside tests/integration (pytest
# tears a package's fixtures down before the next item outside it) instead of keeping it idle for
# the rest of the session; an idle stack still runs its pollers and its rules every 2 s (about 8 %
# of a core). A worker that comes back to an integration file starts a fresh one; the tests never
# relied on what another file left in the stack (on xdist any file may get a stack of its own).
@pytest.fixture(scope="package")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackProcess]:
    state_dir = tmp_path_factory.mktemp("jobq-local")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBQ_"))}
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_LOCAL_STACK, "--port", "0", "--aws-port", "0", "--ws-port", "0", "--stack-name", STACK_NAME,
         "--state-dir", str(state_dir), "--no-access-log", "--log-level", "WARNING",
         # The CleanupFunction's and HealthFunction's rules every 2 s instead of hourly / every 5 minutes.
         "--rule-interval", str(RULE_INTERVAL_SECONDS)],
        cwd=ROOT,
        # Live events: progress coalesced per 100 ms instead of per second, so a short job shows several.
        # Webhooks: a failed delivery comes back after about a second instead of 5 s doubling.
        env={**env, "PYTHONUNBUFFERED": "1", "JOBQ_VIDEO_STEP_SECONDS": "0.05", "JOBQ_REALTIME_PROGRESS_INTERVAL_MS": "100",
             "JOBQ_WEBHOOK_BACKOFF_MS": "500", "JOBQ_POLICY_CACHE_SECONDS": str(POLICY_CACHE_SECONDS)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    # ~10 s alone, far longer while other stacks start beside it; pytest-timeout (120 s) bounds the first setup too
    deadline = time.monotonic() + 180
    lines: list[str] = []
    api_url = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(READY):
            api_url = line[len(READY):].split()[0]
            break
    if not api_url:
        process.kill()
        pytest.fail("the local stack did not start:\n" + "".join(lines[-40:]))
    # keep draining its output so it never blocks on a full pipe
    import threading

    log = state_dir / "stack.log"
    threading.Thread(target=_drain, args=(process, log), daemon=True).start()
    state = read_stack_state(state_dir) or {}
    stack = LocalStackProcess(
        api_url=api_url, websocket_url=state["websocketUrl"], aws_endpoint=state["awsEndpoint"], state_dir=state_dir, process=process
    )
    yield stack
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def _drain(process: subprocess.Popen[str], log: Path) -> None:
    assert process.stdout is not None
    with log.open("a") as sink:
        for line in process.stdout:
            sink.write(line)
            sink.flush()


@pytest.fixture(scope="session")
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def wait_for_status(client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()["data"]
        if job["status"] in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stayed {job.get('status')} (wanted {statuses}): {job}")
