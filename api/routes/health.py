"""``GET /health`` (unauthenticated), in seed 000's shape, at the top level (no envelope):
``{status, timestamp, uptime, checks: {<name>: bool}, details}``.

The seed's service depends on MongoDB (jobs) and Redis (the queues); jobq depends on DynamoDB
and SQS. Its checks keep the seed's names and mean what jobq has in their place:

    database  the jobs table answers (DynamoDB; MongoDB's role in the seed)   = dynamodb
    redis     the queues' backend answers (SQS; Redis's role in the seed)      = sqs
    queues    at least one queue is configured and every one of them answers
    memory    this container uses under 85 % of its memory (the seed's alert threshold)

``dynamodb`` and ``sqs`` are there under their own names too; ``details`` says how each
probe went (``latencyMs``, and the error when one failed).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Jobs
from api.models import Check, Health, Memory
from shared.adapters import queues
from shared.clock import iso
from shared.errors import JobqError

router = APIRouter(tags=["health"])

# The route is public: answer from a short cache so it cannot be used to run up AWS calls.
CACHE_SECONDS = 10.0
MEMORY_LIMIT_SHARE = 0.85
_STARTED = time.monotonic()
_cached: tuple[float, int, dict[str, object]] | None = None


def uptime_seconds() -> int:
    """Seconds this container has been running (on Lambda: since its cold start)."""
    return int(time.monotonic() - _STARTED)


def _check(probe: Callable[[], object]) -> Check:
    started = time.monotonic()
    try:
        probe()
    except JobqError as err:
        return Check(status="down", latency_ms=int((time.monotonic() - started) * 1000), message=err.message)
    return Check(status="up", latency_ms=int((time.monotonic() - started) * 1000))


def memory() -> Memory:
    """Resident memory against the function's memory size (the machine's memory outside Lambda)."""
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/self/statm") as statm:
            used = int(statm.read().split()[1]) * page
    except (OSError, ValueError, IndexError):
        used = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    configured = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    total = int(configured) * 1024 * 1024 if configured and configured.isdigit() else os.sysconf("SC_PHYS_PAGES") * page
    return Memory(heap_used=round(used / 2**20), heap_total=round(total / 2**20), usage=f"{100 * used / total:.2f}%")


@router.get(
    "/health",
    response_model=Health,
    summary="Liveness and dependency reachability (seed 000's shape; no envelope)",
    responses={503: {"model": Health, "description": "A dependency is down"}},
)
def health(jobs: Jobs) -> JSONResponse:
    global _cached
    if _cached and time.monotonic() - _cached[0] < CACHE_SECONDS:
        return JSONResponse(status_code=_cached[1], content={**_cached[2], "uptime": uptime_seconds()})

    configured: dict[str, Any] = {}

    def sqs() -> None:
        configured.update(jobs.directory.all())
        for queue in configured.values():
            queues.ping(queue)

    probes = {"dynamodb": _check(jobs.store.ping), "sqs": _check(sqs)}
    used = memory()
    memory_ok = float(used.usage.rstrip("%")) < MEMORY_LIMIT_SHARE * 100
    up = {name: probe.status == "up" for name, probe in probes.items()}
    checks = {
        "database": up["dynamodb"],
        "redis": up["sqs"],
        "queues": up["sqs"] and bool(configured),
        "memory": memory_ok,
        **up,
    }
    # Memory near the limit is worth a look but is not an outage: it does not make the service unhealthy.
    healthy = checks["database"] and checks["queues"]
    body = Health(
        status="healthy" if healthy else "unhealthy",
        timestamp=iso(jobs.clock()),
        uptime=uptime_seconds(),
        version="0.1.0",
        checks=checks,
        details={
            "queues": len(configured),
            "memory": used.model_dump(by_alias=True),
            "probes": {name: probe.model_dump(by_alias=True, exclude_none=True) for name, probe in probes.items()},
        },
    )
    status = 200 if healthy else 503
    content = body.model_dump(mode="json", by_alias=True)
    _cached = (time.monotonic(), status, content)
    return JSONResponse(status_code=status, content=content)
