"""What a deploy relies on: the consumer's cold start, and a template SAM accepts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_consumer_does_not_import_the_web_stack() -> None:
    code = (
        "import sys, functions.consumer.handler; "
        "print(','.join(m for m in ('fastapi', 'starlette', 'mangum', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "POWERTOOLS_TRACE_DISABLED": "true"})
    assert out.stdout.strip() == ""


def _after_consumer_cold_start(expression: str) -> str:
    """What ``expression`` prints in a fresh interpreter once the consumer's handler and composition root are built."""
    code = f"import sys, functions.consumer.handler; from functions import composition; composition.worker(); print({expression})"
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "true", "JOBQ_TABLE_NAME": "jobq-test", "JOBQ_QUEUES_PARAMETER_PATH": "/jobq/test/"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_the_consumer_loads_flows_only_for_a_processor_that_adds_jobs() -> None:
    # shared/flows.py (POST /flows, follow-ups, children) is imported by JobContext.add_job/add_children,
    # children_values and the completion that writes them (shared/worker.py), not at cold start.
    assert _after_consumer_cold_start("','.join(m for m in ('shared.flows', 'shared.adapters.flows') if m in sys.modules)") == ""


def test_the_consumer_does_not_import_the_api_job_models() -> None:
    # The request, view and page models a client sends and sees (shared/client_models.py) are the API's.
    assert _after_consumer_cold_start("'shared.client_models' in sys.modules") == "False"


def test_a_lambda_init_runs_the_collector_again_with_the_init_frozen() -> None:
    # Inside Lambda the entry points import with the collector paused (shared/lambda_init.py); after
    # the init it runs, and skips what the init made. Elsewhere (tests, the local stack) nothing changes.
    code = "import gc, functions.consumer.handler, api.main; print(gc.isenabled(), gc.get_freeze_count() > 0)"
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "true", "JOBQ_TABLE_NAME": "jobq-test", "JOBQ_QUEUES_PARAMETER_PATH": "/jobq/test/",
           "AWS_DEFAULT_REGION": "us-east-1"}
    inside = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False,
                            env={**env, "AWS_LAMBDA_FUNCTION_NAME": "jobq-test"})
    assert inside.returncode == 0, inside.stderr[-2000:]
    assert inside.stdout.split() == ["True", "True"]
    outside = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False,
                             env={k: v for k, v in env.items() if k != "AWS_LAMBDA_FUNCTION_NAME"})
    assert outside.returncode == 0, outside.stderr[-2000:]
    assert outside.stdout.split() == ["True", "False"]


# A model's validator is built where it is first used (defer_build), not at import: a container
# pays only for the models its requests touch. (The settings, read at cold start, are not a model.)
_BUILT_AT_IMPORT = """
import sys
from pydantic._internal import _model_construction
built = []
complete = _model_construction.complete_model_class
def recording(cls, *args, **kwargs):
    built.append(f"{cls.__module__}.{cls.__qualname__}")
    return complete(cls, *args, **kwargs)
_model_construction.complete_model_class = recording
import fastapi  # its own models (fastapi.openapi.models) are not ours to defer
built.clear()
import MODULE
print(",".join(sorted(set(b for b in built if b.split(".")[0] in ("api", "shared", "processors", "functions")))))
"""


def test_cold_starts_build_no_model_validators() -> None:
    for module in ("functions.consumer.handler", "api.main"):
        out = subprocess.run([sys.executable, "-c", _BUILT_AT_IMPORT.replace("MODULE", module)], cwd=ROOT, capture_output=True,
                             text=True, check=True, env={**os.environ, "POWERTOOLS_TRACE_DISABLED": "true"})
        # The unparametrized Envelope is completed by pydantic when Envelope[X] is first made (no validator of any route).
        assert set(filter(None, out.stdout.strip().split(","))) <= {"api.envelope.Envelope"}, module


_ROUTE_FIELDS = """
import json, sys
from api import fastapi_cold_start
if sys.argv[1] == "eager":
    fastapi_cold_start.install = lambda: False  # the routes built as FastAPI builds them
import api.main
from fastapi.routing import APIRoute, APIRouter
fields = [
    field
    for name, module in sorted(sys.modules.items()) if name.startswith("api.routes.") and isinstance(getattr(module, "router", None), APIRouter)
    for route in module.router.routes if isinstance(route, APIRoute)
    for field in (*route.dependant.path_params, *route.dependant.query_params, *route.dependant.header_params,
                  *route.dependant.body_params, *([route.response_field] if route.response_field else []))
]
built = sum(fastapi_cold_start.built(field) for field in fields)
v1 = "pydantic.v1" in sys.modules
print(json.dumps({"fields": len(fields), "built": built, "v1": v1, "openapi": api.main.app.openapi()}, sort_keys=True))
"""


def _api_routes(mode: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _ROUTE_FIELDS, mode], cwd=ROOT, capture_output=True, text=True, check=False,
                         env={**os.environ, "POWERTOOLS_TRACE_DISABLED": "true"})
    assert out.returncode == 0, out.stderr[-2000:]
    return cast(dict[str, Any], json.loads(out.stdout))


def test_the_api_cold_start_builds_no_route_field_validators_and_documents_the_same_api() -> None:
    # api/fastapi_cold_start.py: FastAPI's validator of each parameter, body and response is made at its first
    # use. Counted before the OpenAPI document is asked for (which makes them all); the document is the
    # one FastAPI writes with every field built at import.
    deferred, eager = _api_routes("deferred"), _api_routes("eager")
    assert deferred["fields"] > 100 and deferred["built"] == 0
    assert eager["built"] == eager["fields"] == deferred["fields"]
    assert deferred["openapi"] == eager["openapi"]
    assert not deferred["v1"] and eager["v1"]  # FastAPI's pydantic v1 check imports pydantic.v1; ours looks only once it is


def test_a_route_declared_with_a_pydantic_v1_model_is_still_refused() -> None:
    import warnings

    from fastapi import APIRouter
    from fastapi.exceptions import FastAPIError

    import api.routes  # noqa: F401  # installs api/fastapi_cold_start.py

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pydantic import v1

    class OldBody(v1.BaseModel):
        name: str

    def create(body: OldBody) -> None: ...

    create.__annotations__ = {"body": OldBody, "return": None}  # the class itself: it is local, the module's are strings
    with pytest.raises(FastAPIError, match="pydantic.v1"):
        APIRouter().post("/old")(create)


def test_the_template_passes_sam_validate_lint() -> None:
    sam = shutil.which("sam", path=str(Path(sys.executable).parent)) or shutil.which("sam")
    assert sam, "aws-sam-cli is a dev requirement (requirements-dev.txt)"
    out = subprocess.run(
        [sam, "validate", "--lint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"},
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is a valid SAM Template" in out.stdout + out.stderr


@pytest.mark.timeout(600)  # as long as its sam build may take (subprocess timeout below): slower while other workers run
def test_sam_build_ships_each_function_only_what_it_imports(tmp_path: Path) -> None:
    sam = shutil.which("sam", path=str(Path(sys.executable).parent)) or shutil.which("sam")
    assert sam
    build = tmp_path / "build"
    out = subprocess.run(
        [sam, "build", "--build-dir", str(build), "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"},
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    consumers = sorted(build.glob("*/ConsumerFunction"))
    assert len(consumers) == 3  # one per nested queue application
    for consumer in consumers:
        assert (consumer / "functions" / "consumer" / "handler.py").is_file()
        assert (consumer / "processors" / "examples.py").is_file()
        assert not (consumer / "api").exists() and not (consumer / "fastapi").exists()
    api = build / "ApiFunction"
    assert (api / "api" / "main.py").is_file() and (api / "shared" / "catalog.py").is_file()
    assert {f.name for f in (api / "api" / "dashboard").iterdir()} >= {"index.html", "app.js", "app.css"}
    assert not (api / "jobq_client").exists()  # the client is not part of the service
    assert not (api / "processors").exists() and not (api / "functions").exists()  # the API does not ship the consumer
    for name in ("SchedulerFunction", "HealthFunction", "CleanupFunction"):
        assert not (build / name / "processors").exists()
    executions = build / "ExecutionEventsFunction"
    assert (executions / "functions" / "executions" / "handler.py").is_file() and (executions / "shared" / "executions.py").is_file()
    assert not (executions / "processors").exists() and not (executions / "api").exists()
    layer = build / "DependenciesLayer" / "python"
    assert (layer / "pydantic").is_dir() and (layer / "aws_lambda_powertools").is_dir()
    assert not (layer / "botocore").exists()  # the Lambda runtime has it
    assert (layer / "jwt").is_dir()  # the WebSocket $connect handler verifies tokens
    for function in ("RealtimeConnectionsFunction", "RealtimeEventsFunction", "WebhookDeliveryFunction"):
        assert (build / function / "functions" / "realtime" / "connections.py").is_file()
        assert not (build / function / "api").exists() and not (build / function / "functions" / "processors").exists()
