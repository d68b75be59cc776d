"""Target health: the HealthFunction probes targets that declare a check and reports the unreachable ones.

HTTP targets' health URLs are a server on 127.0.0.1; Lambda targets are the local stack's stand-ins
behind its Lambda API (GetFunction), as in tests/unit/test_lambda_targets.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from api.main import handler as api_handler
from functions.health.handler import handler as health_handler
from infra.local.esm import MappingRegistry
from infra.local.functions import LocalFunctions, function_arn
from infra.local.lambda_api import LambdaApi
from shared.adapters import lambda_functions, policies
from shared.clock import iso, now_ms
from shared.models import HttpTarget, LambdaTarget
from shared.settings import get_settings
from shared.target_health import unreachable_targets
from tests.unit.api_events import admin, http_event
from tests.unit.conftest import FakeLambdaContext, Stack
from tests.unit.test_health_function import EVENT


class HealthEndpoints:
    """GET /ok answers 200, /down 503, /slow after 5 s."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/slow":
                    time.sleep(5)
                self.send_response(200 if self.path == "/ok" else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoints() -> Iterator[HealthEndpoints]:
    server = HealthEndpoints()
    yield server
    server.stop()


@pytest.fixture
def lambda_api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaApi]:
    api = LambdaApi(MappingRegistry(), functions=LocalFunctions({})).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", api.url)
    get_settings.cache_clear()
    lambda_functions.reset()
    yield api
    api.stop()
    lambda_functions.reset()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_targets_show_with_their_reason_in_the_queues_health_and_health_detailed(
    stack: Stack, endpoints: HealthEndpoints, lambda_api: LambdaApi
) -> None:
    policies.reset_cache()
    put = stack.store.put_target
    at = iso(now_ms())
    put("email-sending", "healthy-http", HttpTarget(url=endpoints.url("/jobs"), health_url=endpoints.url("/ok")), now=at)
    put("email-sending", "failing-http", HttpTarget(url=endpoints.url("/jobs"), health_url=endpoints.url("/down")), now=at)
    put("email-sending", "gone-http", HttpTarget(url=endpoints.url("/jobs"), health_url=f"http://127.0.0.1:{closed_port()}/health"), now=at)
    put("email-sending", "unchecked-http", HttpTarget(url=f"http://127.0.0.1:{closed_port()}/jobs"), now=at)  # no healthUrl: not probed
    put("email-sending", "live-fn", LambdaTarget(function_arn=function_arn("jobq-local-echo", "us-east-1")), now=at)
    put("email-sending", "missing-fn", LambdaTarget(function_arn=function_arn("jobq-local-not-deployed", "us-east-1")), now=at)

    report = health_handler(EVENT, FakeLambdaContext(remaining_ms=120_000))

    email = report["queues"]["email-sending"]
    assert set(email["unreachableTargets"]) == {"failing-http", "gone-http", "missing-fn"}
    assert email["unreachableTargets"]["failing-http"] == "answered 503"
    assert email["unreachableTargets"]["gone-http"].startswith("cannot connect")
    assert "missing-fn" in email["unreachableTargets"]
    assert email["status"] == "warning" and any(r.startswith("target of failing-http is unreachable: answered 503") for r in email["reasons"])
    response = api_handler(http_event("GET", "/health/detailed", claims=admin()), FakeLambdaContext())
    body: dict[str, Any] = json.loads(response["body"])
    assert body["data"]["queues"]["email-sending"]["unreachableTargets"] == email["unreachableTargets"]


def test_a_health_url_is_held_to_the_target_address_rules_when_probed() -> None:
    probed: list[str] = []
    target = HttpTarget(url="https://worker.example.com/jobs", health_url="https://10.0.0.7/health")

    found = unreachable_targets({"t": target}, allow_loopback_http=False, http=lambda url, timeout: probed.append(url) or None)

    assert probed == [] and found["t"].startswith("healthUrl refused")


def test_the_probes_of_a_run_share_one_time_budget(endpoints: HealthEndpoints) -> None:
    targets = {
        f"t{i}": HttpTarget(url=endpoints.url("/jobs"), health_url=endpoints.url("/slow")) for i in range(3)
    }
    began = time.monotonic()

    found = unreachable_targets(targets, allow_loopback_http=True, budget_seconds=1.0)

    assert time.monotonic() - began < 3
    assert found["t0"] == "no answer within 1.0 s"
    assert found["t1"] == found["t2"] == "not probed: the health check ran out of time"


def test_a_lambda_target_may_opt_out_of_its_health_check() -> None:
    target = LambdaTarget(function_arn=function_arn("jobq-local-not-deployed", "us-east-1"), health_check=False)

    assert unreachable_targets({"t": target}, allow_loopback_http=True, function=lambda arn: "down") == {}
    assert "healthCheck" in target.model_dump(by_alias=True) and "healthCheck" not in LambdaTarget(function_arn=target.function_arn).model_dump(by_alias=True)
