"""What the two periodic runs over every queue share: the health sweep (shared/health.py) and retention (shared/retention.py).

Both walk each queue's jobs of one status through the byQueueStatus pages, read the queue's
policy and counters, and store a report of the run; the services they are given are the same.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.adapters import counters, policies
from shared.adapters.job_repository import JobStore
from shared.adapters.queues import QueueDirectory
from shared.adapters.reports import DynamoReportStore
from shared.clock import now_ms
from shared.models import Job, QueueInfo, QueuePolicy
from shared.ports import CounterStore, ReportStore
from shared.settings import Settings
from shared.status import JobStatus


class QueueSweep:
    """A run over every queue's jobs: the store, the queues, their policies and counters, and where the run is reported."""

    def __init__(
        self,
        store: JobStore,
        directory: QueueDirectory,
        settings: Settings,
        *,
        clock: Callable[[], int] = now_ms,
        policy: Callable[[QueueInfo], QueuePolicy] = policies.get_policy,
        counters: CounterStore = counters,
        reports: ReportStore | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.settings = settings
        self.clock = clock
        self.policy = policy
        self.counters = counters
        self.reports = reports or DynamoReportStore(store.table_name)

    def _page(
        self, queue: QueueInfo, status: JobStatus, *, limit: int, newest_first: bool, cursor: str | None = None, before: str | None = None
    ) -> tuple[list[Job], str | None]:
        """One page of the queue's jobs in ``status`` (oldest or newest first), created before ``before`` when given."""
        return self.store.page_by_queue(queue.name, status, limit=limit, cursor=cursor, newest_first=newest_first, created_before=before)


__all__ = ["QueueSweep"]
