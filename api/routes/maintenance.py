"""``GET /health/detailed`` (admin): live dependency checks plus what the HealthFunction and the
CleanupFunction last found and did (shared/health.py, shared/retention.py)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.access import StackGuard
from api.deps import CurrentUser, Jobs, Reports
from api.envelope import Envelope, error_responses
from api.models import DetailedHealth, MaintenanceRuns
from api.routes.scheduler import check
from shared import cron
from shared.adapters import queues, scheduler
from shared.clock import iso, parse_iso
from shared.reports import read_last_cleanup_run, read_last_health_run

router = APIRouter(tags=["health"])
VERSION = "0.1.0"


def _stale_after_ms(rate: str) -> int:
    """A health report older than three periods of its rule means the rule is not running."""
    try:
        kind, body = cron.parse_expression(rate)
        period = cron.rate_ms(body) if kind == "rate" else 3_600_000
    except ValueError:
        period = 300_000
    return 3 * period


@router.get(
    "/health/detailed",
    response_model=Envelope[DetailedHealth],
    summary="Dependencies, each queue's health and the last maintenance runs (admin)",
    dependencies=[StackGuard],
    responses=error_responses(401, 403) | {503: {"model": Envelope[DetailedHealth], "description": "A dependency is down"}},
)
def detailed_health(caller: CurrentUser, jobs: Jobs, reports: Reports) -> JSONResponse:
    def sqs() -> None:
        for queue in jobs.directory.all().values():
            queues.ping(queue)

    checks = {
        "dynamodb": check(jobs.store.ping),
        "sqs": check(sqs),
        "scheduler": check(lambda: scheduler.ping(jobs.settings)),
    }
    reasons = [f"{name}: {c.message}" for name, c in checks.items() if c.status == "down"]
    health_run = cleanup_run = None
    if checks["dynamodb"].status == "up":
        health_run = read_last_health_run(reports)
        cleanup_run = read_last_cleanup_run(reports)
    now = jobs.clock()
    if health_run is None:
        reasons.append("the HealthFunction has not reported yet")
    else:
        if now - parse_iso(health_run.ran_at) > _stale_after_ms(jobs.settings.health_check_rate):
            reasons.append(f"the HealthFunction last reported at {health_run.ran_at} ({jobs.settings.health_check_rate})")
        for name, queue in sorted(health_run.queues.items()):
            reasons.extend(f"{name}: {reason}" for reason in queue.reasons)
        reasons.extend(f"{name}: health check failed: {error}" for name, error in sorted(health_run.errors.items()))
        reasons.extend(f"scheduler: {reason}" for reason in health_run.reasons)
    status: Literal["healthy", "degraded", "unhealthy"] = (
        "unhealthy" if any(c.status == "down" for c in checks.values()) else "degraded" if reasons else "healthy"
    )
    body = DetailedHealth(
        status=status,
        timestamp=iso(now),
        version=VERSION,
        reasons=reasons,
        checks=checks,
        queues=health_run.queues if health_run else {},
        maintenance=MaintenanceRuns(
            health=health_run.model_dump(mode="json", by_alias=True, exclude={"queues"}) if health_run else None,
            cleanup=cleanup_run.model_dump(mode="json", by_alias=True) if cleanup_run else None,
        ),
    )
    code = 503 if status == "unhealthy" else 200
    return JSONResponse(status_code=code, content={"success": code == 200, "data": body.model_dump(mode="json", by_alias=True)})
