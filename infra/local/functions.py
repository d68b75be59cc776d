"""Stand-ins for Lambda functions in the local stack: a function name bound to a Python callable.

The local Lambda API (lambda_api.py) serves ``Invoke`` for these, so a Lambda target's code
path (the lambda adapter, its client and its errors) is the one that runs on AWS. A stand-in
is ``handler(event, context)`` as a Lambda handler is; what it raises becomes a function
error (``X-Amz-Function-Error: Unhandled`` with ``errorType`` = the exception's class name).

Bind more by dotted path: ``JOBQ_LOCAL_FUNCTIONS="name=module:attr,other=module:attr"`` when
starting ``python3 dev.py local``, or ``LocalFunctions.bind(name, "module:attr")`` in a test.
Their ARNs are ``arn:aws:lambda:<region>:123456789012:function:<name>`` (moto's account),
and the local stack lists them all in ``LambdaTargetArns``.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from typing import Any

LOCAL_ACCOUNT = "123456789012"

Handler = Callable[[dict[str, Any], Any], Any]


class InvalidInput(Exception):
    """The error type the examples raise for data they can never process (a target may list it as permanent)."""


_attempts: dict[str, int] = {}
_lock = threading.Lock()


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Returns what it got: the job's data and the attempt."""
    return {"echo": event.get("data"), "attempt": event.get("attempt"), "jobId": event.get("jobId")}


def fail_first(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Raises RuntimeError on the first ``data.failTimes`` (default 1) attempts of a job, then succeeds."""
    times = int((event.get("data") or {}).get("failTimes", 1))
    key = f"{event.get('userId')}/{event.get('jobId')}"
    with _lock:
        _attempts[key] = _attempts.get(key, 0) + 1
        seen = _attempts[key]
    if seen <= times:
        raise RuntimeError(f"failing on purpose ({seen} of {times})")
    return {"succeededOnCall": seen}


def reject(event: dict[str, Any], context: Any) -> None:
    """Always raises InvalidInput."""
    raise InvalidInput(f"cannot process {event.get('type')}")


DEFAULTS: dict[str, str] = {
    "jobq-local-echo": "infra.local.functions:echo",
    "jobq-local-fail-first": "infra.local.functions:fail_first",
    "jobq-local-reject": "infra.local.functions:reject",
}


def _load(path: str) -> Handler:
    module, _, name = path.partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


class LocalFunctions:
    """The stand-ins by function name."""

    def __init__(self, bound: dict[str, str] | None = None) -> None:
        self._paths: dict[str, str] = dict(DEFAULTS)
        self._paths.update(bound if bound is not None else _from_environ())

    def bind(self, name: str, path: str) -> None:
        _load(path)  # fail now, not at the first invoke
        self._paths[name] = path

    def names(self) -> list[str]:
        return sorted(self._paths)

    def arns(self, region: str) -> list[str]:
        return [function_arn(name, region) for name in self.names()]

    def resolve(self, function: str) -> Handler | None:
        """The handler for a FunctionName as Lambda accepts it: a name, or an ARN with or without qualifier."""
        name = function
        if function.startswith("arn:"):
            parts = function.split(":")
            name = parts[6] if len(parts) >= 7 else ""
        path = self._paths.get(name)
        return _load(path) if path else None


def function_arn(name: str, region: str) -> str:
    return f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT}:function:{name}"


def _from_environ() -> dict[str, str]:
    bound: dict[str, str] = {}
    for part in os.environ.get("JOBQ_LOCAL_FUNCTIONS", "").split(","):
        name, sep, path = part.strip().partition("=")
        if sep and name and path:
            bound[name.strip()] = path.strip()
    return bound
