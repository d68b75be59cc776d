"""Powertools Logger, Tracer and metrics shared by every entry point.

Tracing costs its import (the X-Ray SDK, ~0.1 s) only where it is on: ``traced`` builds the
Tracer at a handler's first invocation when the function runs on Lambda with tracing
enabled, and is a plain call everywhere else (tests, the local stack, ``POWERTOOLS_TRACE_DISABLED``).

Metrics are emitted one EMF line each (``single_metric``) with the queue as dimension:
an API call or a batch may touch several queues, and the local stack runs many
handlers in threads, so no shared per-invocation buffer is used.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "jobq"))
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "jobq")

Handler = TypeVar("Handler", bound=Callable[..., Any])


def tracing_enabled() -> bool:
    """Powertools' own rule: on Lambda (LAMBDA_TASK_ROOT), not under ``sam local``, not switched off."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() in ("1", "true", "yes", "on")
    return bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL") and not disabled


def traced(handler: Handler) -> Handler:
    """``Tracer.capture_lambda_handler`` when tracing is on, built at the first invocation."""
    chosen: list[Callable[..., Any]] = []

    @functools.wraps(handler)
    def entry(event: Any, context: Any) -> Any:
        if not chosen:  # a race here builds two equivalent wrappers; either is fine
            if tracing_enabled():
                from aws_lambda_powertools import Tracer

                tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "jobq"))
                chosen.append(tracer.capture_lambda_handler(handler, capture_response=False))
            else:
                chosen.append(handler)
        return chosen[0](event, context)

    return entry  # type: ignore[return-value]  # same signature as handler, by functools.wraps


def emit(name: str, queue: str, value: float = 1, unit: MetricUnit = MetricUnit.Count) -> None:
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE, default_dimensions={"queue": queue}):
        pass


@contextmanager
def job_log_keys(job_id: str, queue: str) -> Iterator[None]:
    """Every log line inside carries the job id and the queue (per thread: the local stack uses threads)."""
    logger.thread_safe_append_keys(job_id=job_id, queue=queue)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(["job_id", "queue"])
