"""The environment a function is deployed with is checked once, at its cold start (before any event)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import ConfigurationError, Settings, validate_at_cold_start

ROOT = Path(__file__).resolve().parents[2]


def test_a_function_deployed_without_its_table_stops_with_a_message_naming_what_is_missing() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ({"JOBQ_QUEUE_CACHE_SECONDS": "5"})
    assert "JOBQ_TABLE_NAME" in str(caught.value) and "JOBQ_QUEUES_PARAMETER_PATH" in str(caught.value)


def test_a_setting_that_is_not_a_number_is_named_with_the_variable_that_holds_it() -> None:
    with pytest.raises(ConfigurationError, match="JOBQ_POLICY_CACHE_SECONDS"):
        Settings.from_environ({"JOBQ_TABLE_NAME": "t", "JOBQ_QUEUES_PARAMETER_PATH": "/q/", "JOBQ_POLICY_CACHE_SECONDS": "soon"})


def test_settings_are_read_from_their_jobq_variables() -> None:
    settings = Settings.from_environ(
        {"JOBQ_TABLE_NAME": "t", "JOBQ_QUEUES_PARAMETER_PATH": "/q/", "JOBQ_ALLOW_LOOPBACK_HTTP_TARGETS": "true", "OTHER": "x"}
    )
    assert settings.table_name == "t" and settings.allow_loopback_http_targets is True


def test_inside_lambda_a_missing_setting_fails_at_import_naming_the_variable() -> None:
    environ = {"AWS_LAMBDA_FUNCTION_NAME": "jobq-consumer", "JOBQ_QUEUES_PARAMETER_PATH": "/q/"}
    with pytest.raises(ConfigurationError, match="JOBQ_TABLE_NAME"):
        validate_at_cold_start(environ)


def test_outside_lambda_nothing_is_read_at_import() -> None:
    validate_at_cold_start({"JOBQ_QUEUES_PARAMETER_PATH": "/q/"})  # tests and the local stack set the environment later


# Every Lambda entry point (template.yaml, infra/queue.yaml), imported as Lambda's init imports it.
HANDLERS = [
    "api.main",
    "functions.consumer.handler",
    "functions.cleanup.handler",
    "functions.events.handler",
    "functions.executions.handler",
    "functions.health.handler",
    "functions.scheduler.handler",
    "functions.realtime.connections",
    "functions.realtime.stream",
    "functions.realtime.webhooks",
]


def _lambda_environ(**jobq: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("JOBQ_")}
    return {**keep, "AWS_LAMBDA_FUNCTION_NAME": "jobq-test", "AWS_DEFAULT_REGION": "us-east-1", **jobq}


def test_every_function_deployed_without_its_table_fails_its_cold_start_naming_the_variable() -> None:
    """Before any event: Lambda reports an init error, and the log names what is missing."""
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    try:\n        importlib.import_module(name)\n    except Exception as err:\n        print(name, type(err).__name__, err)\n    else:\n        print(name, 'imported')\n"
    out = subprocess.run(
        [sys.executable, "-c", script, *HANDLERS], env=_lambda_environ(JOBQ_QUEUES_PARAMETER_PATH="/q/"),
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True,
    ).stdout.splitlines()
    assert len(out) == len(HANDLERS)
    for line in out:
        assert "ConfigurationError" in line and "JOBQ_TABLE_NAME" in line, line


def test_a_function_deployed_with_its_settings_imports_without_reading_aws() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import functions.consumer.handler, api.main; print('ok')"],
        env=_lambda_environ(JOBQ_TABLE_NAME="t", JOBQ_QUEUES_PARAMETER_PATH="/q/"),
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
