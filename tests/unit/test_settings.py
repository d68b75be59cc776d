"""The environment a function is deployed with is checked once, at its cold start (before any event)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest

from shared.settings import Bounds, ConfigurationError, Secret, Settings, parse_setting, validate_at_cold_start

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


# The settings are not a pydantic model (shared/settings.py); a variable is read as the pydantic model
# that preceded it read the same string, and a bad one is refused with the same words.
SAMPLES = {
    int: ["5", " 5 ", "+5", "-5", "05", "5.0", "+0.0", "1_000", "5.5", "5.", "1e3", "0x10", "", " ", "nan", "true", "٣", "0", "64", "65", "3650"],
    float: ["5", " 2.5 ", "-1", ".5", "5.", "1e3", "1_000", "inf", "-inf", "nan", "Infinity", "0x10", "", "soon", "٣", "0", "60", "60.5", "1e400"],
    bool: ["true", "True", "TRUE", "on", "On", "t", "y", "yes", "1", "false", "off", "f", "n", "no", "0", " yes", "2", "", "maybe"],
    str: ["", " ", "jobq-table", "٣"],
}


def _as_pydantic_reads(kind: type, bounds: Bounds | None, text: str) -> tuple[str, Any]:
    from pydantic import Field, SecretStr, TypeAdapter, ValidationError

    limits = {name: getattr(bounds, name) for name in ("ge", "gt", "le", "min_length") if bounds is not None and getattr(bounds, name) is not None}
    adapter: TypeAdapter[Any] = TypeAdapter(Annotated[SecretStr if kind is Secret else kind, Field(**limits)])
    try:
        value = adapter.validate_python(text)
    except ValidationError as err:
        return "error", err.errors()[0]["msg"]
    return "value", value.get_secret_value() if kind is Secret else value


def _as_read(kind: type, bounds: Bounds | None, text: str) -> tuple[str, Any]:
    try:
        value = parse_setting(kind, bounds, text)
    except ValueError as err:
        return "error", str(err)
    return "value", value.get_secret_value() if kind is Secret else value


def test_every_setting_reads_a_variable_as_the_pydantic_model_did() -> None:
    for name, (kind, bounds, _) in Settings._fields.items():
        for text in SAMPLES.get(kind, SAMPLES[str]):
            read, before = _as_read(kind, bounds, text), _as_pydantic_reads(kind, bounds, text)
            same = read == before or (read[0] == before[0] == "value" and math.isnan(read[1]) and math.isnan(before[1]))
            assert same, (name, text, read, before)


def test_reading_the_settings_imports_no_pydantic() -> None:
    code = "import sys, shared.settings; shared.settings.get_settings(); print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=_lambda_environ(JOBQ_TABLE_NAME="t", JOBQ_QUEUES_PARAMETER_PATH="/q/"),
                         capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_the_cursor_key_is_not_shown_when_the_settings_are_printed() -> None:
    settings = Settings.from_environ({"JOBQ_TABLE_NAME": "t", "JOBQ_QUEUES_PARAMETER_PATH": "/q/", "JOBQ_CURSOR_KEY": "hunter2"})
    assert settings.cursor_key.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)


def test_a_setting_out_of_its_bounds_is_named_with_its_limit() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ({"JOBQ_TABLE_NAME": "", "JOBQ_QUEUES_PARAMETER_PATH": "/q/", "JOBQ_INDEX_SHARDS": "65"})
    assert str(caught.value) == (
        "the function's environment is not valid: JOBQ_TABLE_NAME: String should have at least 1 character; "
        "JOBQ_INDEX_SHARDS: Input should be less than or equal to 64"
    )
