"""What the maintenance runs report: the HealthFunction's per queue and per run, the CleanupFunction's per run.

Stored by the report store (shared/adapters/reports.py), read back by shared/reports.py and served
by GET /queues, GET /health/detailed and GET /scheduler/health.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.models import CamelModel, QueueDepth

HealthStatus = Literal["healthy", "warning", "error"]


def worst(statuses: list[HealthStatus]) -> HealthStatus:
    """``error`` beats ``warning`` beats ``healthy`` (none: healthy)."""
    order: dict[HealthStatus, int] = {"healthy": 0, "warning": 1, "error": 2}
    return max(statuses, key=lambda s: order[s], default="healthy")


# ---- the HealthFunction (shared/health.py) ------------------------------------------------------------
class Recovery(CamelModel):
    stalled_retried: int = 0
    stalled_failed: int = 0
    stalled_cancelled: int = 0
    stalled_resent: int = 0
    orphans_enqueued: int = 0
    overdue_enqueued: int = 0
    half_created_flow_jobs_removed: int = 0  # a POST /flows that died between its transactions (shared/flow_events.py FlowSweep)
    flow_leaves_released: int = 0


class Recount(CamelModel):
    """A queue's counters checked against Queries of its jobs (``QUEUE#<q> / RECOUNT``).

    ``drift`` is counted minus stored. A drift is corrected (an ADD, so stream batches applied
    meanwhile stay counted) only when the next recount finds the same drift: a difference the
    stream has not caught up with yet (or a GSI still propagating) changes between two runs.
    """

    checked_at: str
    checked_at_ms: int
    counted: dict[str, int]
    drift: dict[str, int] = Field(default_factory=dict)
    corrected: dict[str, int] = Field(default_factory=dict)


class QueueHealth(CamelModel):
    """One queue's health as the HealthFunction last found it (``QUEUE#<q> / HEALTH``)."""

    queue: str
    status: HealthStatus
    reasons: list[str] = Field(default_factory=list)
    checked_at: str
    paused: bool = False
    counts: dict[str, int] = Field(default_factory=dict)
    failure_rate: float = 0.0
    finished_last_hour: int = 0
    dlq_depth: int = 0
    queue_depth: QueueDepth = Field(default_factory=QueueDepth)
    oldest_waiting_age_ms: int | None = None
    recovery: Recovery = Field(default_factory=Recovery)
    recount: Recount | None = None  # when this run recounted the queue
    # Targets whose circuit breaker is not closed (shared/breakers.py): type -> open | half_open.
    breakers: dict[str, str] = Field(default_factory=dict)
    # Targets whose health check failed (shared/target_health.py): type -> why.
    unreachable_targets: dict[str, str] = Field(default_factory=dict)
    # Attempts in the last hour over twice their type's average duration there (seed 000's alert): type -> count.
    slow_attempts: dict[str, int] = Field(default_factory=dict)


class HealthRun(CamelModel):
    """What one HealthFunction run did (``MAINTENANCE / HEALTH``)."""

    ran_at: str
    duration_ms: int
    status: HealthStatus
    queues: dict[str, QueueHealth]
    errors: dict[str, str] = Field(default_factory=dict)
    # Firings of schedules that could not be delivered or whose job could not be created
    # (template.yaml ScheduleFiringsDeadLetterQueue); None where the stack has no such queue.
    failed_schedule_firings: int | None = None
    # Stream batches the EventsFunction gave up on (template.yaml EventsFailedBatches): counters and
    # metric buckets missed them; every queue's health is ``error`` while any wait there.
    discarded_stream_batches: int | None = None
    reasons: list[str] = Field(default_factory=list)


# ---- the CleanupFunction (shared/retention.py) ------------------------------------------------------------
class Removed(CamelModel):
    by_age: int = 0
    by_count: int = 0


class CleanupRun(CamelModel):
    """What one CleanupFunction run removed (``MAINTENANCE / CLEANUP``)."""

    ran_at: str
    duration_ms: int
    removed: dict[str, dict[str, Removed]] = Field(default_factory=dict)  # queue -> status -> counts
    total_removed: int = 0
    incomplete: bool = False  # stopped at its time or delete budget; the next run goes on
    errors: dict[str, str] = Field(default_factory=dict)
