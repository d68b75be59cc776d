"""The scheduler gateway's part the lifecycle needs: removing a delayed job's one-time schedule."""

from __future__ import annotations

from shared import scheduler
from shared.models import Job
from shared.store import JobRef


class EventBridgeDelayedSchedules:
    def remove(self, job: Job) -> None:
        scheduler.cancel_delayed(JobRef.of(job))
