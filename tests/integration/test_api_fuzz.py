"""Schemathesis over every route of the local stack's OpenAPI document, as a user and as an admin.

Each operation gets ``JOBQ_FUZZ_EXAMPLES`` generated requests (valid and invalid bodies, paths
and query strings), each sent once with a user's token and once with an admin's, through the
API Gateway emulation like any client. Half of them name a real queue and job type (in the
path and in job bodies), so the fuzzing reaches past "unknown queue" into the queues' routes
and job creation. Nothing a client sends may answer 5xx, and every answer must match the
response schema its route declares. Failures are collected over all operations and reported
together (one line per operation, role and check), so one run shows everything to fix.

It runs on a local stack of its own: the fuzzing pauses, purges and reconfigures real queues,
which must not disturb the other integration tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from infra.local.token import mint_token
from shared.catalog import CODE_PROCESSORS

ROOT = Path(__file__).resolve().parents[2]
READY = "jobq local stack ready: "
FUZZ_EXAMPLES = int(os.environ.get("JOBQ_FUZZ_EXAMPLES", "10"))
CHECKS: list[Callable[..., Any]] = [not_a_server_error, response_schema_conformance]
REAL_TYPES = {queue: next(iter(types)) for queue, types in CODE_PROCESSORS.items()}


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(API URL, state dir) of a local stack started for this module."""
    state_dir = tmp_path_factory.mktemp("jobq-fuzz")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBQ_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local", "--port", "0", "--aws-port", "0", "--stack-name", "jobq-fuzz",
         "--state-dir", str(state_dir), "--no-access-log", "--log-level", "WARNING"],
        cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1", "JOBQ_VIDEO_STEP_SECONDS": "0.01"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lines and lines[-1].startswith(READY)):
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
    if not lines or not lines[-1].startswith(READY):
        process.kill()
        pytest.fail("the local stack did not start:\n" + "".join(lines[-40:]))
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    yield lines[-1][len(READY):].split()[0], state_dir
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def _with_real_names(case: Any) -> Any:
    """The same request naming a real queue and one of its job types wherever it names one."""
    queue = sorted(REAL_TYPES)[len(str(case.path_parameters or case.body)) % len(REAL_TYPES)]
    if case.path_parameters and "name" in case.path_parameters and case.path.startswith("/queues"):
        case.path_parameters["name"] = queue
    if case.path_parameters and "job_type" in case.path_parameters:
        case.path_parameters["job_type"] = REAL_TYPES[queue]
    bodies = case.body.get("jobs") if isinstance(case.body, dict) and isinstance(case.body.get("jobs"), list) else [case.body]
    for body in bodies:
        if isinstance(body, dict) and "queue" in body:
            body["queue"], body["type"] = queue, REAL_TYPES[queue]
    return case


def _fuzz(operation: Any, roles: dict[str, dict[str, str]], failures: dict[tuple[str, str, str], str], counts: dict[str, int]) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @given(case=st.tuples(operation.as_strategy(), st.booleans()).map(lambda drawn: _with_real_names(drawn[0]) if drawn[1] else drawn[0]))
    @settings(
        max_examples=FUZZ_EXAMPLES,
        phases=[Phase.generate],
        deadline=None,
        derandomize=True,  # the same requests on every run: a failure in CI reproduces locally
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        for role, headers in roles.items():
            response = case.call(headers=headers, timeout=15)
            counts["requests"] += 1
            counts[f"{role} {response.status_code}"] = counts.get(f"{role} {response.status_code}", 0) + 1
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except AssertionError as failure:  # schemathesis raises a subclass listing every failed check
                failures.setdefault(
                    (label, role, str(failure).splitlines()[0][:120] if str(failure) else type(failure).__name__),
                    f"{response.status_code} for {case.method} {case.formatted_path} query={case.query} "
                    f"body={str(case.body)[:200]}: {str(failure)[:600]}",
                )

    run()


@pytest.mark.timeout(600)  # its own stack's start-up and ~700 requests: slower while other workers run
def test_no_route_answers_5xx_or_breaks_its_declared_schema_for_users_or_admins(fuzz_stack: tuple[str, Path]) -> None:
    api_url, state_dir = fuzz_stack
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    roles = {
        "user": {"Authorization": f"Bearer {mint_token('fuzz-user', state_dir=state_dir)}"},
        "admin": {"Authorization": f"Bearer {mint_token('fuzz-admin', admin=True, state_dir=state_dir)}"},
    }
    failures: dict[tuple[str, str, str], str] = {}
    counts = {"operations": 0, "requests": 0}

    for result in schema.get_all_operations():
        counts["operations"] += 1
        _fuzz(result.ok(), roles, failures, counts)

    print(f"schemathesis: {counts['operations']} operations, {counts['requests']} requests, {len(failures)} failures")
    print(sorted((k, v) for k, v in counts.items() if " " in k))
    assert counts["operations"] >= 30 and counts["requests"] >= counts["operations"] * 2
    assert not failures, "\n".join(f"{op} as {role}: {text}" for (op, role, _), text in sorted(failures.items()))
