"""The health sweep the HealthFunction runs (an EventBridge rule): recovery, recount and each queue's health.

Per queue, every few minutes (``HealthSweep.check_health``):

* **stalled jobs**: active jobs whose lease ran out (their consumer died: a timeout, a
  crash). Found by a Query of ``QUEUE#<q>#active`` (as many as the consumers can hold at
  once). Out of attempts -> ``failed``, with the message in the DLQ; cancel requested ->
  ``cancelled``; otherwise -> ``stalled`` and a fresh message, so the next consumer
  reclaims it and counts an attempt (shared/worker.py). Jobs left ``stalled`` (the send
  failed) are re-sent from a Query of ``QUEUE#<q>#stalled``.
* **orphans**: jobs stored ``waiting`` but never enqueued (a crash between the write and
  the send, a failed send after a retry), and ``delayed`` jobs whose wake-up never came
  (a lost schedule). A waiting job untouched for ``orphan_grace_seconds`` (oldest first)
  or a delayed job that long overdue gets one wake-up message; duplicates are harmless
  (a consumer acknowledges a job it cannot claim), and the ids woken in the last
  ``orphan_resend_seconds`` are remembered (``QUEUE#<q> / SWEEP``), so a backlog is not
  re-sent on every run. Delayed jobs are walked a page per run with a cursor kept there
  too. A paused queue is not swept: nothing there is being picked up on purpose.
* **health**: ``healthy | warning | error`` from the seed's thresholds: failure rate over
  10 % in the last hour -> error; more than 100 waiting, a DLQ that is not empty, an old
  oldest waiting job (5 min: warning, 30 min: error), stalled jobs, a target's open circuit
  breaker, an unreachable target (its healthUrl, or a Lambda function not Active:
  shared/target_health.py), attempts over twice their type's average duration in the last
  hour (from the minute buckets' per-type histograms) -> warning. Stored as
  ``QUEUE#<q> / HEALTH`` (read by GET /queues and GET /health/detailed) and emitted as
  metrics.

Retention (the CleanupFunction) is shared/retention.py; what the runs report is shared/report_models.py,
stored by shared/adapters/reports.py and read back by shared/reports.py.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from functools import cached_property

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from shared import lifecycle, reports, stats, stats_models
from shared.adapters import consumer_switch, policies, queues
from shared.adapters.job_repository import JobStore
from shared.adapters.sqs import SqsJobMessages
from shared.clock import iso, parse_iso
from shared.errors import Conflict, JobqError
from shared.models import Job, JobRef, QueueInfo, QueuePolicy
from shared.observability import NAMESPACE, logger
from shared.ports import JobRepository
from shared.priority import priority_band
from shared.queue_sweep import QueueSweep
from shared.report_models import HealthRun, HealthStatus, QueueHealth, Recount, Recovery, worst
from shared.settings import Settings
from shared.status import JobStatus
from shared.transitions import Transitions

STALLED_ERROR = lifecycle.LEASE_EXPIRED


# ---- thresholds (pure) -------------------------------------------------------------------------------
def assess(
    *,
    settings: Settings,
    waiting: int,
    failure_rate: float,
    finished_last_hour: int,
    dlq_depth: int,
    oldest_waiting_age_ms: int | None,
    stalled: int,
    paused: bool,
    discarded_stream_batches: int = 0,
) -> tuple[HealthStatus, list[str]]:
    """The seed's thresholds: ``error`` beats ``warning`` beats ``healthy``; every crossed one is a reason."""
    errors: list[str] = []
    warnings: list[str] = []
    if discarded_stream_batches:
        errors.append(
            f"{discarded_stream_batches} stream batch{'es were' if discarded_stream_batches != 1 else ' was'} discarded: "
            "counts are recounted, metrics of that time miss them (purge the events-failed-batches queue once reviewed)"
        )
    if finished_last_hour >= settings.health_min_finished and failure_rate > settings.health_failure_rate:
        errors.append(
            f"failure rate {failure_rate:.0%} over the last hour ({finished_last_hour} finished) is above {settings.health_failure_rate:.0%}"
        )
    if dlq_depth > 0:
        warnings.append(f"the dead-letter queue holds {dlq_depth} message{'s' if dlq_depth != 1 else ''}")
    if stalled:
        warnings.append(f"{stalled} stalled job{'s' if stalled != 1 else ''} recovered (a consumer timed out or crashed)")
    if not paused:  # a paused queue holds its jobs on purpose
        if waiting > settings.health_max_waiting:
            warnings.append(f"{waiting} jobs waiting (more than {settings.health_max_waiting})")
        if oldest_waiting_age_ms is not None:
            age_s = oldest_waiting_age_ms // 1000
            if age_s > settings.health_oldest_error_seconds:
                errors.append(f"the oldest waiting job has waited {_duration(age_s)} (more than {_duration(settings.health_oldest_error_seconds)})")
            elif age_s > settings.health_oldest_warning_seconds:
                warnings.append(f"the oldest waiting job has waited {_duration(age_s)} (more than {_duration(settings.health_oldest_warning_seconds)})")
    if errors:
        return "error", errors + warnings
    if warnings:
        return "warning", warnings
    return "healthy", []


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _round_ms(ms: float | None) -> int:
    return round(ms) if ms is not None else 0


def _restore_consumer(queue: QueueInfo, policy: QueuePolicy, settings: Settings) -> None:
    """A pause or a runtime maxConcurrency survives a redeploy: the mapping is set back to the policy.

    The cached policy only says whether to look; what is restored comes from a consistent read, so
    a policy cached before a resume never pauses the queue again."""
    if not (policy.paused or policy.max_concurrency):
        return
    try:
        fresh, _ = policies.read_policy(queue)
        if not (fresh.paused or fresh.max_concurrency):
            return
        consumer_switch.reconcile(
            queue, paused=fresh.paused, max_concurrency=fresh.max_concurrency, settle_seconds=settings.consumer_settle_seconds
        )
    except JobqError as err:
        logger.warning("consumer mapping not checked against the policy", extra={"queue": queue.name, "error": err.message})


def oldest_waiting_age(store: JobRepository, queue: QueueInfo, now: int, *, scan: int = 100) -> int | None:
    """How long the longest-waiting of the oldest few waiting jobs has waited, in ms.

    A retried job waits since its retry (``updatedAt``), so the few created first are read
    and the longest wait among them counts. None when nothing waits.
    """
    # Waiting jobs are not indexed by state (docs/data-model.md): the queue's newest ``scan`` entries are read.
    jobs, _ = store.page_by_queue(queue.name, JobStatus.WAITING, limit=scan, scan_entries=scan)
    return max((max(0, now - parse_iso(j.updated_at)) for j in jobs), default=None)


def recounted(store: JobStore, queue_name: str) -> dict[str, int]:
    """What a queue's ``STATS`` item should hold, from Queries: per status, ``total``, and per priority
    band ``<band>.waiting/delayed/active``. No index keys waiting and active jobs: one pass over the
    queue's entries reads them all (the queue's size in read units) and counts those two statuses and
    the bands; the other statuses are COUNT Queries of their index."""
    unfinished: Counter[str] = Counter()
    cursor: str | None = None
    while True:
        jobs, cursor = store.page_by_queue(queue_name, None, limit=100, cursor=cursor, scan_entries=100)
        for job in jobs:
            unfinished[job.status.value] += 1
            if job.status.value in stats.PRIORITY_STATUSES:
                unfinished[f"{priority_band(job.priority)}.{job.status.value}"] += 1
        if cursor is None:
            break
    scanned = (JobStatus.WAITING, JobStatus.ACTIVE)
    counted = {s.value: unfinished[s.value] if s in scanned else store.count_by_queue(queue_name, s) for s in JobStatus}
    counted["total"] = sum(counted.values())
    return counted | {name: unfinished[name] for name in stats.PRIORITY_COUNT_NAMES}


# ---- the runs ---------------------------------------------------------------------------------------------
class HealthSweep(QueueSweep):
    """What the HealthFunction runs: per queue, recovery of stalled and orphaned jobs, a recount when due, its health."""

    @cached_property
    def transitions(self) -> Transitions:
        """Every status change the sweep makes goes through the lifecycle's one writer."""
        return Transitions(self.store, SqsJobMessages())

    # ---- health ----------------------------------------------------------------------------------------
    def check_health(self) -> HealthRun:
        started = time.monotonic()
        now = self.clock()
        results: dict[str, QueueHealth] = {}
        errors: dict[str, str] = {}
        discarded = self._discarded_stream_batches(errors)
        previous = reports.read_last_health_run(self.reports)
        # New discarded batches: recount every queue now rather than at the next interval.
        force = discarded is not None and discarded > ((previous.discarded_stream_batches or 0) if previous else 0)
        for queue in sorted(self.directory.all(refresh=True).values(), key=lambda q: q.name):
            try:
                results[queue.name] = self.check_queue(queue, discarded_stream_batches=discarded or 0, force_recount=force)
            except JobqError as err:  # one queue's trouble must not hide the others'
                errors[queue.name] = err.message
                logger.error("health check of a queue failed", extra={"queue": queue.name, "error": err.message})
        failed_firings, reasons = self._failed_schedule_firings(errors)
        run = HealthRun(
            ran_at=iso(now),
            duration_ms=int((time.monotonic() - started) * 1000),
            status=worst([h.status for h in results.values()] + (["error"] if errors else []) + (["warning"] if reasons else [])),
            queues=results,
            errors=errors,
            failed_schedule_firings=failed_firings,
            discarded_stream_batches=discarded,
            reasons=reasons,
        )
        self.reports.put_run("HEALTH", run)
        return run

    def _failed_schedule_firings(self, errors: dict[str, str]) -> tuple[int | None, list[str]]:
        if not self.settings.schedule_dead_letters_url:
            return None, []
        try:
            count = queues.dead_letters_in(self.settings.schedule_dead_letters_url, "the failed schedule firings queue")
        except JobqError as err:
            errors["scheduleFirings"] = err.message
            return None, []
        if count:
            logger.warning("schedule firings failed", extra={"count": count})
            return count, [f"{count} schedule firing{'s' if count != 1 else ''} failed and wait in the failed-firings queue"]
        return 0, []

    def _discarded_stream_batches(self, errors: dict[str, str]) -> int | None:
        if not self.settings.events_failed_batches_url:
            return None
        try:
            return queues.dead_letters_in(self.settings.events_failed_batches_url, "the events-failed-batches queue")
        except JobqError as err:
            errors["streamBatches"] = err.message
            return None

    def recount(self, queue: QueueInfo, *, force: bool = False) -> Recount | None:
        """Check the queue's counters against Queries when due (or forced, or a drift awaits confirmation)."""
        now = self.clock()
        previous = reports.read_recount(self.reports, queue.name)
        due = force or previous is None or bool(previous.drift) or now - previous.checked_at_ms >= self.settings.recount_interval_seconds * 1000
        if not due:
            return None
        counted = recounted(self.store, queue.name)
        stored = self.counters.read_raw_counts(queue.name)
        drift = {name: counted[name] - stored.get(name, 0) for name in counted if counted[name] != stored.get(name, 0)}
        corrected: dict[str, int] = {}
        if drift and previous is not None and previous.drift == drift:
            self.counters.correct_counts(queue.name, drift)
            corrected, drift = drift, {}
            logger.warning("queue counters corrected by a recount", extra={"queue": queue.name, "corrected": corrected})
        elif drift:
            logger.info("queue counters differ from a recount; checking again next run", extra={"queue": queue.name, "drift": drift})
        result = Recount(checked_at=iso(now), checked_at_ms=now, counted=counted, drift=drift, corrected=corrected)
        self.reports.put_queue_report(queue.name, "RECOUNT", result)
        return result

    def check_queue(self, queue: QueueInfo, *, discarded_stream_batches: int = 0, force_recount: bool = False) -> QueueHealth:
        now = self.clock()
        policy = self.policy(queue)
        _restore_consumer(queue, policy, self.settings)
        recovery = self.recover_stalled(queue)
        if not policy.paused:
            recovery.orphans_enqueued, recovery.overdue_enqueued = self.wake_orphans(queue)
        recovery.half_created_flow_jobs_removed, recovery.flow_leaves_released = self.sweep_flows(queue)
        recount = self.recount(queue, force=force_recount)
        counts = self.counters.read_counts(queue.name)
        minutes = stats_models.last_hour_minutes(self.counters, queue.name, now)
        hour = stats_models.summarize(minutes)
        types = stats_models.merge_types(b.types for b in minutes)
        slow = {job_type: f.slow_attempts() for job_type, f in sorted(types.items()) if f.slow_attempts()}
        depth, dlq_depth = queues.depths(queue)
        oldest = oldest_waiting_age(self.store, queue, now, scan=self.settings.sweep_scan_entries)
        stalled = recovery.stalled_retried + recovery.stalled_failed + recovery.stalled_cancelled
        status, reasons = assess(
            settings=self.settings,
            waiting=counts.get("waiting", 0),
            failure_rate=hour.failure_rate,
            finished_last_hour=hour.finished,
            dlq_depth=dlq_depth,
            oldest_waiting_age_ms=oldest,
            stalled=stalled,
            paused=policy.paused,
            discarded_stream_batches=discarded_stream_batches,
        )
        breakers, breaker_reasons = self._breakers(queue)
        if breaker_reasons:
            status, reasons = worst([status, "warning"]), [*reasons, *breaker_reasons]
        if slow:
            status = worst([status, "warning"])
            reasons = [
                *reasons,
                *(f"{n} attempts of {job_type} took over twice its average ({_round_ms(types[job_type].average_ms)} ms) in the last hour" for job_type, n in slow.items()),
            ]
        unreachable = self._unreachable_targets(queue)
        if unreachable:
            status = worst([status, "warning"])
            reasons = [*reasons, *(f"target of {job_type} is unreachable: {why}" for job_type, why in unreachable.items())]
        health = QueueHealth(
            queue=queue.name,
            status=status,
            reasons=reasons,
            checked_at=iso(now),
            paused=policy.paused,
            counts=counts,
            failure_rate=round(hour.failure_rate, 4),
            finished_last_hour=hour.finished,
            dlq_depth=dlq_depth,
            queue_depth=depth,
            oldest_waiting_age_ms=oldest,
            recovery=recovery,
            recount=recount,
            breakers=breakers,
            unreachable_targets=unreachable,
            slow_attempts=slow,
        )
        self.reports.put_queue_report(queue.name, "HEALTH", health, status=status, reasons=reasons)
        self._emit(health, stalled)
        if status != "healthy":
            logger.warning("queue is not healthy", extra={"queue": queue.name, "status": status, "reasons": reasons})
        return health

    def _breakers(self, queue: QueueInfo) -> tuple[dict[str, str], list[str]]:
        """The targets whose circuit breaker is open or probing: one Query of the targets, a GetItem per guarded one."""
        from shared.adapters.breakers import DynamoBreakerStore
        from shared.breakers import CLOSED, Breakers

        guarded = [t for t, target in self.store.list_targets(queue.name).items() if target.breaker is not None]
        if not guarded:
            return {}, []
        reader = Breakers(DynamoBreakerStore(self.settings.table_name), clock=self.clock, cache_seconds=0)
        states = {job_type: reader.state(queue.name, job_type) for job_type in sorted(guarded)}
        not_closed = {job_type: s for job_type, s in states.items() if s.state != CLOSED}
        reasons = [f"the circuit breaker of {job_type} is {s.state.replace('_', '-')}: {s.reason or 'no reason recorded'}" for job_type, s in not_closed.items()]
        return {job_type: s.state for job_type, s in not_closed.items()}, reasons

    def _unreachable_targets(self, queue: QueueInfo) -> dict[str, str]:
        from shared.target_health import unreachable_targets

        return unreachable_targets(self.store.list_targets(queue.name), allow_loopback_http=self.settings.allow_loopback_http_targets)

    def _emit(self, health: QueueHealth, stalled: int) -> None:
        """One EMF line per queue and run (dimension ``queue``)."""
        metrics = EphemeralMetrics(namespace=NAMESPACE)
        metrics.add_dimension("queue", health.queue)
        metrics.add_metric("QueueHealth", MetricUnit.Count, {"healthy": 0, "warning": 1, "error": 2}[health.status])
        metrics.add_metric("JobsWaiting", MetricUnit.Count, health.counts.get("waiting", 0))
        metrics.add_metric("DeadLetterDepth", MetricUnit.Count, health.dlq_depth)
        metrics.add_metric("FailureRate", MetricUnit.Percent, health.failure_rate * 100)
        if health.oldest_waiting_age_ms is not None:
            metrics.add_metric("OldestWaitingAge", MetricUnit.Seconds, health.oldest_waiting_age_ms / 1000)
        metrics.add_metric("StalledJobsRecovered", MetricUnit.Count, stalled)
        metrics.add_metric("BreakersOpen", MetricUnit.Count, len(health.breakers))
        metrics.add_metric("UnreachableTargets", MetricUnit.Count, len(health.unreachable_targets))
        metrics.add_metric("SlowAttempts", MetricUnit.Count, sum(health.slow_attempts.values()))
        metrics.add_metric("OrphanedJobsEnqueued", MetricUnit.Count, health.recovery.orphans_enqueued + health.recovery.overdue_enqueued)
        metrics.flush_metrics()

    # ---- stalled jobs ------------------------------------------------------------------------------------
    def recover_stalled(self, queue: QueueInfo) -> Recovery:
        recovery = Recovery()
        now = self.clock()
        # No index keys active jobs: a run reads at most 20 pages of the queue's entries, newest first,
        # and the next run goes on where it stopped (round robin), so a queue holding more jobs than a
        # run reads is still covered in full, over several runs, at the same cost per run.
        state = self.reports.get_sweep_state(queue.name)
        cursor: str | None = state.get("activeCursor")
        for _ in range(20):
            jobs, cursor = self._page(queue, JobStatus.ACTIVE, limit=self.settings.maintenance_batch, newest_first=False, cursor=cursor)
            for job in jobs:
                if job.lease_until is not None and job.lease_until < now:
                    self._recover(queue, job, recovery)
            if cursor is None:
                break
        if cursor != state.get("activeCursor"):
            self.reports.put_sweep_state(queue.name, {**state, "activeCursor": cursor})
        # Stalled jobs whose wake-up could not be sent when they were found.
        grace_ms = self.settings.orphan_grace_seconds * 1000
        jobs, _ = self._page(queue, JobStatus.STALLED, limit=self.settings.maintenance_batch, newest_first=False)
        left = [j for j in jobs if parse_iso(j.updated_at) < now - grace_ms]
        recovery.stalled_resent = len(self._wake(queue, left, now))
        return recovery

    def _recover(self, queue: QueueInfo, job: Job, recovery: Recovery) -> None:
        """A job whose lease ran out: cancelled if asked, failed if that was its last attempt, else stalled and woken."""
        now = self.clock()
        policy = self.policy(queue)
        if job.cancel_requested:
            change, counter = lifecycle.cancel(job, now=now, policy=policy, reason=STALLED_ERROR), "stalled_cancelled"
        elif job.attempts >= job.max_attempts:
            error = f"the consumer stopped during the final attempt ({STALLED_ERROR})"
            change, counter = lifecycle.fail(job, token=None, error=error, now=now, policy=policy), "stalled_failed"
        else:
            change, counter = lifecycle.stall(job, now=now), "stalled_retried"
        try:
            self.transitions.apply(change, queue)
        except Conflict:
            return  # it moved on meanwhile (its worker finished, another run got it): nothing to recover
        except JobqError as err:  # one job's trouble (SQS or DynamoDB unavailable) must not stop the sweep
            logger.error("could not recover a stalled job; the next run tries again", extra={"job_id": job.job_id, "error": err.message})
            return
        setattr(recovery, counter, getattr(recovery, counter) + 1)

    # ---- orphans ------------------------------------------------------------------------------------------
    def wake_orphans(self, queue: QueueInfo) -> tuple[int, int]:
        """``(waiting woken, delayed woken)``: jobs nobody will pick up without a new message."""
        now = self.clock()
        grace_ms = self.settings.orphan_grace_seconds * 1000
        state = self.reports.get_sweep_state(queue.name)
        # Keyed by [owner, id] as JSON text: job ids are unique per owner only.
        resent: dict[str, int] = {
            token: at for token, at in state.get("resent", {}).items() if at > now - self.settings.orphan_resend_seconds * 1000
        }
        # Waiting (no index keys it): a page of the queue's entries created before the grace, going on
        # from where the last run stopped (round robin), so an orphan older than one page is found too.
        waiting, waiting_cursor = self._page(
            queue, JobStatus.WAITING, limit=self.settings.maintenance_batch, newest_first=False, before=iso(now - grace_ms),
            cursor=state.get("waitingCursor"),
        )  # fmt: skip
        stale = [j for j in waiting if parse_iso(j.updated_at) < now - grace_ms and _token(j) not in resent]
        # Delayed: a page per run, round robin, for the ones long past due.
        delayed, cursor = self._page(
            queue, JobStatus.DELAYED, limit=self.settings.maintenance_batch, newest_first=False, cursor=state.get("delayedCursor")
        )
        overdue = [j for j in delayed if j.run_at and parse_iso(j.run_at) < now - grace_ms and _token(j) not in resent]
        woken_waiting = self._wake(queue, stale, now)
        woken_delayed = self._wake(queue, overdue, now)
        for ref in woken_waiting + woken_delayed:
            resent[_token(ref)] = now
            logger.warning("orphaned job enqueued", extra={"job_id": ref.job_id, "queue": queue.name})
        if len(resent) > 1000:  # keep the item small: the oldest entries go first
            resent = dict(sorted(resent.items(), key=lambda kv: kv[1])[-1000:])
        self.reports.put_sweep_state(queue.name, {**state, "resent": resent, "delayedCursor": cursor, "waitingCursor": waiting_cursor})
        return len(woken_waiting), len(woken_delayed)

    def sweep_flows(self, queue: QueueInfo) -> tuple[int, int]:
        """``(removed, released)``: a page of the queue's ``waiting-children`` jobs (round robin over runs),
        the half-created trees among them removed and their held leaves released (shared/flow_events.py FlowSweep)."""
        from shared.adapters.flows import FlowStore
        from shared.flow_events import FlowSweep

        if not self.counters.read_counts(queue.name).get(JobStatus.WAITING_CHILDREN.value):
            return 0, 0  # no parent waits on this queue: no scan
        now = self.clock()
        older_than = now - self.settings.flow_orphan_grace_seconds * 1000
        state = self.reports.get_sweep_state(queue.name)
        jobs, cursor = self._page(
            queue, JobStatus.WAITING_CHILDREN, limit=self.settings.maintenance_batch, newest_first=False, cursor=state.get("flowCursor"),
            before=iso(older_than),
        )  # fmt: skip
        outcome = FlowSweep(self.store, FlowStore(self.store.table_name), self.transitions).sweep(queue, jobs, older_than=older_than, now=now)
        if cursor != state.get("flowCursor"):
            self.reports.put_sweep_state(queue.name, {**state, "flowCursor": cursor})
        return outcome.removed, outcome.released

    def _wake(self, queue: QueueInfo, jobs: list[Job], now: int) -> list[JobRef]:
        """Send the jobs' wake-ups with their routes (group, priority, keepLastIfActive key), as a create does."""
        if not jobs:
            return []
        refs = [JobRef.of(j) for j in jobs]
        unsent = queues.send_jobs(queue, [(ref, 0) for ref in refs], {JobRef.of(j): queues.Route.of(j) for j in jobs})
        if unsent:
            logger.warning("could not enqueue some jobs; the next run retries", extra={"queue": queue.name, "count": len(unsent)})
        return [ref for ref in refs if ref not in unsent]


def _token(job: Job | JobRef) -> str:
    return json.dumps([job.user_id, job.job_id], separators=(",", ":"))


