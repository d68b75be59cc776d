"""``GET /health``: liveness plus DynamoDB and SQS reachability (unauthenticated)."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Jobs
from api.envelope import Envelope
from api.models import Health, LivenessCheck
from shared.adapters import queues
from shared.clock import iso, now_ms
from shared.errors import JobqError

router = APIRouter(tags=["health"])

# The route is public: answer from a short cache so it cannot be used to run up AWS calls.
CACHE_SECONDS = 10.0
_cached: tuple[float, int, dict[str, object]] | None = None


def _check(probe: Callable[[], object]) -> LivenessCheck:
    started = time.monotonic()
    try:
        probe()
    except JobqError as err:
        return LivenessCheck(status="down", latency_ms=int((time.monotonic() - started) * 1000), message=err.message)
    return LivenessCheck(status="up", latency_ms=int((time.monotonic() - started) * 1000))


@router.get("/health", response_model=Envelope[Health], summary="Liveness and dependency reachability")
def health(jobs: Jobs) -> JSONResponse:
    global _cached
    if _cached and time.monotonic() - _cached[0] < CACHE_SECONDS:
        return JSONResponse(status_code=_cached[1], content=_cached[2])

    def sqs() -> None:
        for queue in jobs.directory.all().values():
            queues.ping(queue)

    checks = {"dynamodb": _check(jobs.store.ping), "sqs": _check(sqs)}
    healthy = all(c.status == "up" for c in checks.values())
    body = Health(status="healthy" if healthy else "unhealthy", timestamp=iso(now_ms()), version="0.1.0", checks=checks)
    status = 200 if healthy else 503
    content = {"success": healthy, "data": body.model_dump(mode="json")}
    _cached = (time.monotonic(), status, content)
    return JSONResponse(status_code=status, content=content)
