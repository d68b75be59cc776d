"""Faults injected into the real clients with botocore's ``before-send`` hook.

A hook registered first on a client's events stops a chosen call before it is sent (so
neither AWS nor moto, whose in-process stub listens to the same event, ever sees it) and
raises what botocore raises when a service keeps answering that error: the ``ClientError``
(code, message, HTTP status) once botocore's own retries are spent, or a connection error
(which botocore itself retries first, each retry meeting the hook again). Nothing of jobq
is replaced.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError

from shared.adapters import clients


def _json_error(status: int, code: str, message: str) -> tuple[int, str, str]:
    return status, code, message


THROTTLED = _json_error(400, "ProvisionedThroughputExceededException", "The level of configured provisioned throughput for the table was exceeded.")
INTERNAL_ERROR = _json_error(500, "InternalServerError", "Internal server error")
SQS_UNAVAILABLE = _json_error(503, "ServiceUnavailable", "Service is unavailable")


@dataclass
class Fault:
    """How many calls it answered, and the bodies of the calls it saw."""

    hits: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def failing(
    service: str,
    operation: str,
    *,
    response: tuple[int, str, str] | None = THROTTLED,
    when: Callable[[dict[str, Any]], bool] = lambda body: True,
    times: int | None = None,
    after: int = 0,
    connection_error: bool = False,
) -> Iterator[Fault]:
    """Answer ``service.operation`` calls for which ``when(request body)`` holds with ``response``
    (or a connection error), at most ``times`` times (every time when None), letting the first
    ``after`` such calls through. ``response=None``: only record the calls (a spy)."""
    fault = Fault()
    passed = [0]
    events = clients.client(service).meta.events

    def hook(request: Any, **kwargs: Any) -> None:
        body = json.loads(request.body or b"{}") if request.body and request.body[:1] == b"{" else {}
        if not when(body) or (times is not None and fault.hits >= times):
            return None
        if passed[0] < after:
            passed[0] += 1
            return None
        fault.hits += 1
        fault.seen.append(body)
        if connection_error:
            raise EndpointConnectionError(endpoint_url=request.url)
        if response is None:
            return None
        status, code, message = response
        raise ClientError(
            {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status, "MaxAttemptsReached": True}},
            operation,
        )

    name = f"before-send.{clients.client(service).meta.service_model.service_id.hyphenize()}.{operation}"
    events.register_first(name, hook)
    try:
        yield fault
    finally:
        events.unregister(name, hook)


def writes_status(status: str) -> Callable[[dict[str, Any]], bool]:
    """An UpdateItem that writes ``status`` onto a job."""

    def check(body: dict[str, Any]) -> bool:
        values = body.get("ExpressionAttributeValues") or {}
        return {"S": status} in values.values() and ":expected_status" in values and values[":expected_status"] != {"S": status}

    return check
