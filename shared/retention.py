"""Retention, per queue, hourly (the CleanupFunction): finished jobs removed by their queue's policy.

The queue's policy (shared/adapters/policies.py) removes ``completed`` jobs by ``removeOnComplete`` and
``failed``/``cancelled`` jobs by ``removeOnFail``: older than ``maxAgeSeconds``, and
beyond the newest ``maxCount``. Queries of ``QUEUE#<q>#<status>`` on byQueueStatus
(oldest first, ``created_before``), never a Scan; each delete is conditional on the job's
status and version, so a job retried meanwhile is kept. Every finished job also carries
the table's TTL (``expiresAt``, stamped when it finishes), which removes it for free if
no policy does first; idempotency and deduplication markers and schedule run markers are
removed by that TTL alone (they are keyed by a digest, so only TTL can find them without a
Scan, and readers already treat an expired marker as absent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from shared.clock import iso, parse_iso
from shared.errors import JobqError
from shared.models import Job, QueueInfo
from shared.models import Retention as RetentionRule
from shared.observability import emit, logger
from shared.queue_sweep import QueueSweep
from shared.report_models import CleanupRun, Removed
from shared.status import FINISHED, JobStatus


class Retention(QueueSweep):
    """What the CleanupFunction runs: every queue's finished jobs removed by its policy, the run reported."""

    def clean(self, *, time_left_ms: Callable[[], int] | None = None, max_deletes: int = 50_000) -> CleanupRun:
        """Apply every queue's retention; stops early (``incomplete``) when time or the delete budget runs out."""
        started = time.monotonic()
        now = self.clock()
        run = CleanupRun(ran_at=iso(now), duration_ms=0)
        budget = _Budget(max_deletes, time_left_ms)
        for queue in sorted(self.directory.all(refresh=True).values(), key=lambda q: q.name):
            try:
                policy = self.policy(queue)
                counts = self.counters.read_counts(queue.name)
                rules = (
                    (JobStatus.COMPLETED, policy.remove_on_complete),
                    (JobStatus.FAILED, policy.remove_on_fail),
                    (JobStatus.CANCELLED, policy.remove_on_fail),
                )
                for status, retention in rules:
                    removed = self.apply_retention(queue, status, retention, counts.get(status.value), budget)
                    if removed.by_age or removed.by_count:
                        run.removed.setdefault(queue.name, {})[status.value] = removed
                        run.total_removed += removed.by_age + removed.by_count
                        emit("JobsRemoved", queue.name, removed.by_age + removed.by_count)
            except JobqError as err:
                run.errors[queue.name] = err.message
                logger.error("retention of a queue failed", extra={"queue": queue.name, "error": err.message})
        run.incomplete = budget.exhausted
        run.duration_ms = int((time.monotonic() - started) * 1000)
        self.reports.put_run("CLEANUP", run)
        logger.info("retention applied", extra={"removed": run.total_removed, "incomplete": run.incomplete})
        return run

    def apply_retention(self, queue: QueueInfo, status: JobStatus, retention: RetentionRule, counted: int | None, budget: _Budget) -> Removed:
        removed = Removed()
        if retention.max_age_seconds is not None:
            removed.by_age = self._remove_older_than(queue, status, self.clock() - retention.max_age_seconds * 1000, budget)
        # The counters say whether there is anything beyond the newest N: the newest N are read only then
        # (or when the counters show nothing, which costs one empty Query if that is the truth).
        if retention.max_count is not None and (not counted or counted - removed.by_age > retention.max_count):
            removed.by_count = self._remove_beyond(queue, status, retention.max_count, budget)
        return removed

    def _remove_older_than(self, queue: QueueInfo, status: JobStatus, cutoff: int, budget: _Budget) -> int:
        """Jobs of ``status`` that finished before ``cutoff``: oldest first, only those created before it."""
        removed = 0
        cursor: str | None = None
        while not budget.exhausted:
            jobs, cursor = self._page(queue, status, limit=self.settings.maintenance_batch, newest_first=False, cursor=cursor, before=iso(cutoff))
            removed += self._delete([j for j in jobs if _finished_at(j) < cutoff], budget)
            if cursor is None:
                break
        return removed

    def _remove_beyond(self, queue: QueueInfo, status: JobStatus, keep: int, budget: _Budget) -> int:
        """All but the newest ``keep`` jobs of ``status``."""
        boundary: str | None = None
        if keep > 0:
            seen = 0
            cursor: str | None = None
            while seen < keep:
                jobs, cursor = self._page(queue, status, limit=min(1000, keep - seen), newest_first=True, cursor=cursor)
                seen += len(jobs)
                if jobs and seen >= keep:
                    last = jobs[keep - (seen - len(jobs)) - 1]
                    boundary = f"{last.created_at}#{last.job_id}"
                if cursor is None:
                    break
            if boundary is None:
                return 0  # fewer than ``keep``
        removed = 0
        cursor = None
        while not budget.exhausted:
            jobs, cursor = self._page(
                queue, status, limit=self.settings.maintenance_batch, newest_first=False, cursor=cursor, before=boundary or "~"
            )
            removed += self._delete(jobs, budget)
            if cursor is None:
                break
        return removed

    def _delete(self, jobs: list[Job], budget: _Budget) -> int:
        jobs = jobs[: budget.take(len(jobs))]
        if not jobs:
            return 0
        with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
            return sum(pool.map(self._delete_one, jobs))

    def _delete_one(self, job: Job) -> int:
        """Delete a finished job unless it changed since it was read (a retry, say), or its flow's
        parent has not finished yet (it may still read the child's result, or retry it)."""
        if job.parent is not None:
            parent = self.store.get(job.user_id, job.parent.job_id)
            if parent is not None and parent.status not in FINISHED:
                return 0
        return int(self.store.delete_unchanged(job))


class _Budget:
    """How many more deletes this run may do, and whether its time is up."""

    def __init__(self, deletes: int, time_left_ms: Callable[[], int] | None, reserve_ms: int = 10_000) -> None:
        self.left = deletes
        self.time_left_ms = time_left_ms
        self.reserve_ms = reserve_ms
        self.stopped = False

    @property
    def exhausted(self) -> bool:
        if self.left <= 0 or self.stopped:
            return True
        if self.time_left_ms is not None and self.time_left_ms() < self.reserve_ms:
            self.stopped = True
        return self.stopped

    def take(self, wanted: int) -> int:
        granted = 0 if self.exhausted else min(wanted, self.left)
        self.left -= granted
        return granted


def _finished_at(job: Job) -> int:
    stamp = job.completed_at or job.failed_at or job.cancelled_at or job.updated_at
    return parse_iso(stamp)
