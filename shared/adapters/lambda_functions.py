"""Lambda functions as job processors: one synchronous Invoke per attempt.

The client here has its own configuration: the read timeout is the target's (a function may
run up to 15 minutes) and botocore never retries an Invoke by itself, because a retried
RequestResponse invoke runs the function twice; the job's own retries and backoff decide.

Locally the Lambda API is the local stack's (infra/local/lambda_api.py serves Invoke for its
stand-in functions), reached through ``AWS_ENDPOINT_URL_LAMBDA`` as on AWS through Lambda.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from shared.adapters.aws_errors import aws_errors

# What Lambda accepts as a synchronous invocation's payload.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class Invocation:
    """What a function answered: its return value, or the error it raised."""

    payload: Any
    function_error: str | None  # "Unhandled" (the function raised), or None
    error_type: str | None = None
    error_message: str | None = None
    executed_version: str | None = None


@cache
def _client(read_timeout: int) -> Any:
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=3, read_timeout=read_timeout)
    return boto3.session.Session().client("lambda", config=config)


def reset() -> None:
    _client.cache_clear()


def invoke(function_arn: str, payload: dict[str, Any], *, timeout_seconds: float) -> Invocation:
    """Invoke ``function_arn`` and wait for its answer (``Unavailable``/``Throttled``/``NotFound`` on AWS errors)."""
    client = _client(max(1, int(timeout_seconds) + 1))
    with aws_errors(f"cannot invoke {function_arn}"):
        out = client.invoke(FunctionName=function_arn, InvocationType="RequestResponse", Payload=json.dumps(payload).encode())
        raw = out["Payload"].read()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        body = raw[:2000].decode("utf-8", "replace")
    error = out.get("FunctionError")
    if error:
        details = body if isinstance(body, dict) else {}
        return Invocation(
            payload=None,
            function_error=str(error),
            error_type=str(details.get("errorType") or "Error"),
            error_message=str(details.get("errorMessage") or body or "")[:2000],
            executed_version=out.get("ExecutedVersion"),
        )
    return Invocation(payload=body, function_error=None, executed_version=out.get("ExecutedVersion"))


__all__ = ["MAX_PAYLOAD_BYTES", "Invocation", "invoke", "reset"]
