"""The built-in http processor against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from processors.http import run_http_target
from shared.errors import PermanentJobError, RetryableJobError, Unavailable
from shared.models import HttpTarget
from shared.settings import Settings, get_settings
from shared.worker import LeaseLost
from tests.target_server import TargetServer


class Job:
    """Just the fields the http processor reads (a JobContext's public face)."""

    job_id = "job-1"
    user_id = "alice"
    queue = "email-sending"
    type = "call"
    data: dict[str, Any] = {"to": "a@example.com"}
    attempt = 2
    max_attempts = 3
    waited_for_children = False  # not a flow's parent: no childrenValues in the payload

    @property
    def settings(self) -> Settings:
        return get_settings()  # the worker passes the composition root's settings

    def check_interrupted(self) -> None:
        """Never cancelled here (the cancel of a request in flight: tests/unit/test_seed_000.py)."""

    def time_left(self, cap_seconds: float | None = None) -> float | None:
        return cap_seconds  # no job timeout: the target's own


@pytest.fixture(autouse=True)
def local_stack_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As in the local stack: http to loopback targets is allowed."""
    monkeypatch.setenv("JOBQ_ALLOW_LOOPBACK_HTTP_TARGETS", "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_consumer_refuses_a_target_that_became_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQ_ALLOW_LOOPBACK_HTTP_TARGETS", "false")
    get_settings.cache_clear()
    with pytest.raises(PermanentJobError, match="may not be called"):
        run_http_target(HttpTarget(url="https://169.254.169.254/latest/meta-data/"), Job())  # type: ignore[arg-type]


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def call(target: TargetServer, path: str, timeout: float = 2) -> Any:
    return run_http_target(HttpTarget(url=f"{target.url}{path}", timeout_seconds=timeout), Job())  # type: ignore[arg-type]


def test_2xx_completes_with_the_response_json(target: TargetServer) -> None:
    assert call(target, "/ok") == {"echo": {"to": "a@example.com"}, "attempt": 2}
    sent = target.calls[0].payload
    assert sent == {"jobId": "job-1", "userId": "alice", "queue": "email-sending", "type": "call", "data": {"to": "a@example.com"}, "attempt": 2, "maxAttempts": 3}


def test_a_non_json_2xx_body_is_kept_as_text(target: TargetServer) -> None:
    assert call(target, "/text") == {"status": 200, "body": "plain words"}


@pytest.mark.parametrize("status", [400, 404, 422])
def test_4xx_is_permanent(target: TargetServer, status: int) -> None:
    with pytest.raises(PermanentJobError, match=str(status)):
        call(target, f"/always/{status}")


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_5xx_and_429_are_retried(target: TargetServer, status: int) -> None:
    with pytest.raises(RetryableJobError, match=str(status)):
        call(target, f"/always/{status}")


def test_a_timeout_is_retried(target: TargetServer) -> None:
    with pytest.raises(RetryableJobError, match="unreachable"):
        call(target, "/slow/2", timeout=0.3)


def test_a_refused_connection_is_retried() -> None:
    with pytest.raises(RetryableJobError, match="unreachable"):
        run_http_target(HttpTarget(url="http://127.0.0.1:9/nothing", timeout_seconds=1), Job())  # type: ignore[arg-type]


def test_redirects_are_not_followed(target: TargetServer) -> None:
    with pytest.raises(PermanentJobError, match="redirects"):
        call(target, "/redirect")
    assert [c.path for c in target.calls] == ["/redirect"]


def test_https_only_on_aws_loopback_http_only_in_the_local_stack() -> None:
    HttpTarget(url="https://worker.example.com/jobs").check_url(allow_loopback_http=False, resolve=lambda host, port: ["93.184.216.34"])
    with pytest.raises(ValueError, match="https"):
        HttpTarget(url="http://127.0.0.1:8080/jobs").check_url(allow_loopback_http=False)
    HttpTarget(url="http://127.0.0.1:8080/jobs").check_url(allow_loopback_http=True)
    HttpTarget(url="http://localhost:8080/jobs").check_url(allow_loopback_http=True)
    with pytest.raises(ValueError, match="127.0.0.1"):
        HttpTarget(url="http://10.0.0.5/jobs").check_url(allow_loopback_http=True)


class Watched(Job):
    """A job whose reads answer as told: unavailable first, then taken over by another worker."""

    def __init__(self, *answers: type[BaseException] | None) -> None:
        self.answers = list(answers)
        self.looks = 0

    def check_interrupted(self) -> None:
        self.looks += 1
        answer = self.answers.pop(0) if self.answers else None
        if answer is Unavailable:
            raise Unavailable("throttled")
        if answer is not None:
            raise answer("as told")


def test_a_look_at_the_job_that_fails_does_not_fail_the_attempt(target: TargetServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQ_HTTP_CANCEL_POLL_SECONDS", "0.1")
    get_settings.cache_clear()
    job = Watched(Unavailable, Unavailable)
    assert run_http_target(HttpTarget(url=f"{target.url}/slow/0.5", timeout_seconds=5), job) == {"slow": True}  # type: ignore[arg-type]
    assert job.looks >= 3


def test_a_job_taken_over_by_another_worker_stops_the_request_without_telling_the_target(target: TargetServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBQ_HTTP_CANCEL_POLL_SECONDS", "0.1")
    get_settings.cache_clear()
    started = time.monotonic()
    with pytest.raises(LeaseLost):
        run_http_target(HttpTarget(url=f"{target.url}/slow/5", timeout_seconds=10, cancel_url=f"{target.url}/ok"), Watched(None, LeaseLost))  # type: ignore[arg-type]
    assert time.monotonic() - started < 2
    assert [c.path for c in target.calls] == ["/slow/5"]  # no cancel notice: the job was not cancelled
