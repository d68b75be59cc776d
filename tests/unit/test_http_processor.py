"""The built-in http processor against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from processors.http import run_http_target
from shared.errors import PermanentJobError, RetryableJobError
from shared.models import HttpTarget
from shared.settings import get_settings
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
