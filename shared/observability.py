"""Powertools Logger, Tracer and metrics shared by every entry point.

Metrics are emitted one EMF line each (``single_metric``) with the queue as dimension:
an API call or a batch may touch several queues, and the local stack runs many
handlers in threads, so no shared per-invocation buffer is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "jobq"))
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "jobq"))
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "jobq")


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
