"""Queue use cases for operators (admin only): stats, pause and resume, clean, metrics,
runtime settings and dead letters. The API routes call these; nothing here knows HTTP.

Costs, whatever the table holds: a queue's summary is one GetItem (its counters), one Query
of at most 60 minute buckets, one Query of one waiting job, the policy (cached) and its
targets, and two GetQueueAttributes. Pausing is one UpdateEventSourceMapping call: the
consumer's event source mapping is disabled (visible in the console), so jobs are accepted
and wait in SQS; resuming enables it and they drain. The local stack serves the same Lambda
API call for its emulated mappings.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from shared import dead_letters, flow_control, groups, health, stats, stats_models
from shared.access import Action, Identity, allows, authorize
from shared.adapters import counters, policies, queues
from shared.adapters.breakers import DynamoBreakerStore
from shared.adapters.consumer_switch import consumer_state, set_consumer_enabled, set_max_concurrency
from shared.adapters.limits import DynamoLimits
from shared.adapters.reports import DynamoReportStore
from shared.breakers import Breakers, BreakerState
from shared.clock import iso
from shared.errors import Conflict, Invalid, JobqError, NotFound
from shared.jobs import JobService, remove_delayed_schedule
from shared.models import BreakerSettings, HttpTarget, Job, LambdaTarget, QueueInfo, QueuePolicy, StateMachineTarget
from shared.observability import logger
from shared.ports import CounterStore, PolicyStore, ReportStore
from shared.queue_models import (
    READ_ONLY,
    BreakerView,
    BulkRemoval,
    CleanOptions,
    CleanRequest,
    CleanResult,
    DeadLetterList,
    GroupList,
    GroupPauseState,
    LiveStats,
    MetricPoint,
    MetricTotals,
    NotRemoved,
    PauseState,
    PriorityCounts,
    Processors,
    PurgeResult,
    QueueAction,
    QueueConfiguration,
    QueueMetrics,
    QueuePatch,
    QueueSummary,
    RedriveResult,
    RemovedJob,
    RetentionPolicy,
    TypeCost,
    UserCost,
)
from shared.reports import read_last_health_run
from shared.status import JobStatus


def _breaker_view(job_type: str, settings: BreakerSettings, state: BreakerState) -> BreakerView:
    return BreakerView(
        type=job_type,
        state=state.state,  # type: ignore[arg-type]  # one of the three: shared/breakers.py writes no other
        open_until=iso(state.open_until) if state.state == "open" and state.open_until else None,
        probe=state.probe if state.state == "half_open" else None,
        manual=state.manual,
        reason=state.reason,
        updated_at=state.updated_at,
        settings=settings,
    )


HOUR_MS = stats_models.HOUR_MS
MINUTE_RESOLUTION_MAX_HOURS = 6  # longer windows are answered per hour
MAX_USERS_IN_METRICS = 100  # the costliest users of the window
# What "finished before the cut-off" reads for each status a clean accepts.
_CLEAN_STAMP = {"completed": "completed_at", "failed": "failed_at", "cancelled": "cancelled_at"}


class QueueService:
    def __init__(
        self, jobs: JobService, *, policies: PolicyStore = policies, counters: CounterStore = counters, reports: ReportStore | None = None
    ) -> None:
        self.jobs = jobs
        self.policies = policies
        self.counters = counters
        self.reports = reports or DynamoReportStore(jobs.store.table_name)
        self.store = jobs.store
        self.directory = jobs.directory
        self.settings = jobs.settings
        self.clock = jobs.clock

    # ---- lookup ------------------------------------------------------------------------------------
    def queue(self, name: str, caller: Identity) -> QueueInfo:
        """The queue, for a caller who may at least see it (the route guard, api/access.py, checks the exact action)."""
        if not (caller.sees_everything or caller.groups):
            authorize(caller, Action.VIEW)
        known = self.directory.all()
        if name not in known:
            valid = ", ".join(sorted(known)) or "none configured"
            raise NotFound(f"queue '{name}' not found; queues: {valid}")
        authorize(caller, Action.VIEW, self.policies.get_policy(known[name]).access, queue=name)
        return known[name]

    # ---- summaries -------------------------------------------------------------------------------
    def overview(self, caller: Identity) -> list[QueueSummary]:
        """Every queue the caller may see: all for admins and readers, those its groups read or operate for others."""
        known = [
            q for q in sorted(self.directory.all().values(), key=lambda q: q.name) if allows(caller, Action.VIEW, self.policies.get_policy(q).access)
        ]
        if not known and not caller.sees_everything:
            authorize(caller, Action.INSPECT)
        if not known:
            return []
        checked = _health_checks(self.reports)
        with ThreadPoolExecutor(max_workers=min(8, len(known))) as pool:
            return list(pool.map(lambda q: self._summary(q, checked.get(q.name)), known))

    def describe(self, name: str, caller: Identity) -> QueueSummary:
        queue = self.queue(name, caller)
        summary = self._summary(queue, _health_checks(self.reports).get(queue.name))
        summary.consumer_state = consumer_state(queue)
        return summary

    def _summary(self, queue: QueueInfo, last_health_check: str | None = None) -> QueueSummary:
        now = self.clock()
        current = self.counters.read_stats(queue.name)
        hour = stats_models.summarize(stats_models.last_hour_minutes(self.counters, queue.name, now))
        policy = self.policies.get_policy(queue)
        depth, dlq_depth = queues.depths(queue)
        oldest = health.oldest_waiting_age(self.store, queue, now)
        # The HealthFunction's thresholds (shared/health.py), on what this summary read just now.
        status, reasons = health.assess(
            settings=self.settings,
            waiting=current.counts["waiting"],
            failure_rate=hour.failure_rate,
            finished_last_hour=hour.finished,
            dlq_depth=dlq_depth,
            oldest_waiting_age_ms=oldest,
            stalled=current.counts["stalled"],
            paused=policy.paused,
        )
        counts = current.counts
        return QueueSummary(
            name=queue.name,
            description=policy.description if policy.description is not None else queue.description,
            is_active=not policy.paused,
            paused=policy.paused,
            health_status=status,
            health_reasons=reasons,
            live_stats=LiveStats(**current.counts),
            by_priority={band: PriorityCounts(**counts) for band, counts in current.by_priority.items()},
            dlq_depth=dlq_depth,
            queue_depth=depth,
            processing_rate=round(hour.finished / 60, 3),
            failure_rate=round(hour.failure_rate, 4),
            average_processing_time=_round(hour.average_processing_ms),
            p95_processing_time=hour.p95_processing_ms,
            oldest_waiting_age=oldest,
            last_processed_at=current.last_processed_at,
            last_health_check=last_health_check,
            total_jobs=counts["total"],
            completed_jobs=counts["completed"],
            failed_jobs=counts["failed"],
            active_jobs=counts["active"],
            waiting_jobs=counts["waiting"],
            delayed_jobs=counts["delayed"],
            configuration=self._configuration(queue, policy),
        )

    def _configuration(self, queue: QueueInfo, policy: QueuePolicy) -> QueueConfiguration:
        catalog = self.jobs.catalog
        targets = self.store.list_targets(queue.name)
        http = {t: target for t, target in targets.items() if isinstance(target, HttpTarget)}
        functions = {t: target for t, target in targets.items() if isinstance(target, LambdaTarget)}
        machines = {t: target for t, target in targets.items() if isinstance(target, StateMachineTarget)}
        code = sorted(t for t in catalog.types(queue.name) if t not in targets and catalog.is_code_type(queue.name, t))
        return QueueConfiguration(
            concurrency=policy.max_concurrency or queue.max_concurrency,
            retry_attempts=policy.default_attempts,
            retry_delay=policy.default_backoff.delay,
            remove_on_complete=policy.remove_on_complete.max_count,
            remove_on_fail=policy.remove_on_fail.max_count,
            default_attempts=policy.default_attempts,
            default_backoff=policy.default_backoff,
            retention=RetentionPolicy(remove_on_complete=policy.remove_on_complete, remove_on_fail=policy.remove_on_fail),
            paused=policy.paused,
            access=policy.access,
            max_unfinished_jobs=policy.max_unfinished_jobs,
            max_unfinished_jobs_per_user=policy.max_unfinished_jobs_per_user,
            batch_size=queue.batch_size,
            max_concurrency=policy.max_concurrency or queue.max_concurrency,
            visibility_timeout=queue.visibility_timeout,
            max_receive_count=queue.max_receive_count,
            processors=Processors(code=code, http=http, functions=functions, state_machines=machines),
            webhook=policy.webhook,
            rate_limit=policy.rate_limit,
            default_timeout=policy.default_timeout,
            groups=policy.groups,
        )

    # ---- circuit breakers (shared/breakers.py) ---------------------------------------------------------
    def _breakers(self) -> Breakers:
        return Breakers(DynamoBreakerStore(self.settings.table_name), clock=self.clock, cache_seconds=0)

    def breakers(self, name: str, caller: Identity) -> list[BreakerView]:
        """Every target of the queue that has a breaker, with its state (one GetItem each)."""
        queue = self.queue(name, caller)
        breakers = self._breakers()
        return [
            _breaker_view(job_type, target.breaker, breakers.state(queue.name, job_type))
            for job_type, target in sorted(self.store.list_targets(queue.name).items())
            if target.breaker is not None
        ]

    def force_breaker(self, name: str, job_type: str, caller: Identity, *, open_: bool) -> BreakerView:
        queue = self.queue(name, caller)
        target = self.store.get_target(queue.name, job_type)
        if target is None or target.breaker is None:
            raise NotFound(f"type '{job_type}' on queue '{queue.name}' has no target with a circuit breaker")
        state = self._breakers().force(queue.name, job_type, open_=open_, by=caller.user_id)
        logger.info("circuit breaker forced", extra={"queue": queue.name, "type": job_type, "state": state.state, "by": caller.user_id})
        return _breaker_view(job_type, target.breaker, state)

    # ---- runtime settings ----------------------------------------------------------------------------
    def update(self, name: str, patch: QueuePatch, caller: Identity) -> QueueConfiguration:
        queue = self.queue(name, caller)
        current = self._configuration(queue, self.policies.get_policy(queue))
        changed = [
            f"{to_camel(field)} ({why})"
            for field, why in READ_ONLY.items()
            if field in patch.model_fields_set and getattr(patch, field) is not None and getattr(patch, field) != getattr(current, field)
        ]
        if changed:
            raise Invalid("read-only fields cannot be changed here: " + "; ".join(changed))
        patch = _one_name_per_setting(patch, current)
        try:
            targets = patch.targets(set(current.processors.code))
        except (ValueError, ValidationError) as err:
            raise Invalid(str(err).replace("Value error, ", "")) from err
        for job_type, target in targets.items():
            if target is None:
                if self.jobs.catalog.is_code_type(queue.name, job_type):
                    raise Conflict(f"type '{job_type}' on queue '{queue.name}' is handled by a code processor")
                if job_type in current.processors.http or job_type in current.processors.functions:
                    self.policies.delete_target(queue.name, job_type)
            elif (current.processors.http.get(job_type) or current.processors.functions.get(job_type)) != target:
                self.jobs.targets.put(queue.name, job_type, target, caller)  # validates the URL or the function, like PUT
        changes = _policy_changes(patch)
        # Limits may be removed with null; the access block replaces the stored one whole.
        changes.update({field: getattr(patch, field) for field in ("max_unfinished_jobs", "max_unfinished_jobs_per_user") if field in patch.model_fields_set})
        if patch.access is not None:
            changes["access"] = patch.access
        if "webhook" in patch.model_fields_set:  # null removes the queue's default webhook
            if patch.webhook is not None:
                try:
                    patch.webhook.check_url(allow_loopback_http=self.settings.allow_loopback_http_targets)
                except ValueError as err:
                    raise Invalid(f"webhook: {err}") from None
            changes["webhook"] = patch.webhook
        changes.update(self._flow_changes(queue, patch, current))
        policy = self.policies.update_policy(queue, lambda p: _apply(p, changes)) if changes else self.policies.get_policy(queue)
        logger.info("queue policy changed", extra={"queue": queue.name, "fields": sorted(patch.model_fields_set)})
        return self._configuration(queue, policy)

    def _flow_changes(self, queue: QueueInfo, patch: QueuePatch, current: QueueConfiguration) -> dict[str, Any]:
        """Rate limit, timeout and groups (null removes each); a new maxConcurrency goes to the event source mapping first."""
        given = patch.model_fields_set
        changes: dict[str, Any] = {field: getattr(patch, field) for field in ("rate_limit", "default_timeout", "groups") if field in given}
        try:
            flow_control.check_timeout(changes.get("default_timeout"), queue.consumer_timeout)
        except ValueError as err:
            raise Invalid(f"defaultTimeout: {err}") from None
        # One setting under two names (seed 000's concurrency): the one changed is the change.
        wanted = {v for v in (patch.max_concurrency, patch.concurrency) if v is not None and v != current.max_concurrency}
        if len(wanted) > 1:
            raise Invalid("concurrency and maxConcurrency are one setting and were changed to different values; give one")
        if wanted and (n := wanted.pop()) != current.max_concurrency:
            set_max_concurrency(queue, n)  # the mapping first: if that fails, the policy still tells the truth
            changes["max_concurrency"] = n
        return changes

    # ---- group keys (shared/groups.py) ------------------------------------------------------------------
    def groups(self, name: str, caller: Identity, *, limit: int) -> GroupList:
        return groups.busiest(self.queue(name, caller), DynamoLimits(self.settings.table_name), limit=limit, now=self.clock())

    def pause_group(self, name: str, key: str, caller: Identity, *, paused: bool) -> GroupPauseState:
        return groups.set_paused(self.queue(name, caller), key, paused=paused)

    # ---- pause and resume -----------------------------------------------------------------------------
    def pause(self, name: str, caller: Identity) -> PauseState:
        return self._switch(self.queue(name, caller), paused=True)

    def resume(self, name: str, caller: Identity) -> PauseState:
        return self._switch(self.queue(name, caller), paused=False)

    def _switch(self, queue: QueueInfo, *, paused: bool) -> PauseState:
        # The mapping first: if that fails, the policy still tells the truth.
        state = set_consumer_enabled(queue, enabled=not paused)
        policy = self.policies.update_policy(queue, lambda p: p.model_copy(update={"paused": paused}))
        logger.info("queue paused" if paused else "queue resumed", extra={"queue": queue.name, "consumer_state": state})
        return PauseState(name=queue.name, paused=policy.paused, is_active=not policy.paused, consumer_state=state)

    # ---- clean -----------------------------------------------------------------------------------------
    def clean(self, name: str, request: CleanRequest, caller: Identity) -> CleanResult:
        """Remove up to ``limit`` jobs of ``status`` that finished more than ``olderThan`` ms ago, oldest first."""
        queue = self.queue(name, caller)
        cutoff = self.clock() - request.older_than
        cutoff_iso = iso(cutoff)
        deadline = time.monotonic() + self.settings.admin_request_budget_seconds
        removed: list[str] = []
        cursor: str | None = None
        more = True
        # createdKey < cutoff is a superset of "finished before the cutoff" (a job finishes after it is created).
        with ThreadPoolExecutor(max_workers=8) as pool:
            while more and time.monotonic() < deadline:
                room = request.limit - len(removed)
                page, cursor = self.store.page_by_queue(
                    queue.name,
                    JobStatus(request.status),
                    limit=min(100, max(25, room)),
                    cursor=cursor,
                    newest_first=False,
                    created_before=cutoff_iso + "~",
                )
                due = [job for job in page if _finished_before(job, request.status, cutoff_iso)]
                removed.extend(job_id for job_id in pool.map(self._remove, due[:room]) if job_id)
                more = cursor is not None or len(due) > room
                if len(removed) >= request.limit:
                    break
        logger.info("queue cleaned", extra={"queue": queue.name, "status": request.status, "removed": len(removed)})
        return CleanResult(removed=len(removed), job_ids=removed, has_more=more)

    def _remove(self, job: Job) -> str | None:
        """Delete one job if it is still as read (status and version); its id, or None."""
        return job.job_id if self.store.delete_unchanged(job) else None

    # ---- seed 004: actions and bulk removal -----------------------------------------------------------
    def act(self, name: str, action: QueueAction, caller: Identity) -> PauseState | CleanResult:
        """``POST /queues/{name} {"action": ...}``: pause, resume, or clean with BullMQ's (grace, limit, type)."""
        if action.action == "pause":
            return self.pause(name, caller)
        if action.action == "resume":
            return self.resume(name, caller)
        options = action.options or CleanOptions()
        return self.clean(name, CleanRequest(older_than=options.grace, status=options.type, limit=options.limit), caller)

    def remove_jobs(
        self, name: str, caller: Identity, *, refs: list[tuple[str, str]] | None = None, status: JobStatus | None = None, limit: int = 1000
    ) -> BulkRemoval:
        """Remove the jobs named by ``(userId, jobId)`` refs, or up to ``limit`` jobs of ``status``, oldest first.

        Each delete is conditional on the job being as read, and running jobs are left alone, so
        nothing that started or changed meanwhile is lost; the answer lists what was removed."""
        queue = self.queue(name, caller)
        result = BulkRemoval(removed=[], not_removed=[])
        if refs is not None:
            for owner, job_id in refs:
                job = self.store.get(owner, job_id)  # the owner's namespace only
                if job is None or job.queue != queue.name:
                    result.not_removed.append(NotRemoved(job_id=job_id, reason=f"no job {owner}/{job_id} in queue {queue.name}"))
                else:
                    self._remove_one(job, result)
            return result
        if status in (JobStatus.ACTIVE, JobStatus.STALLED):
            raise Invalid(f"{status.value} jobs are running: cancel them (DELETE /jobs/{{jobId}}) instead of removing them")
        assert status is not None
        deadline = time.monotonic() + self.settings.admin_request_budget_seconds
        cursor: str | None = None
        while time.monotonic() < deadline and len(result.removed) < limit:
            page, cursor = self.store.page_by_queue(queue.name, status, limit=min(100, limit - len(result.removed)), cursor=cursor, newest_first=False)
            for job in page:
                self._remove_one(job, result)
            if cursor is None:
                break
        result.has_more = cursor is not None
        logger.info("jobs removed", extra={"queue": queue.name, "removed": len(result.removed), "status": status.value})
        return result

    def _remove_one(self, job: Job, result: BulkRemoval) -> None:
        if job.status in (JobStatus.ACTIVE, JobStatus.STALLED):
            result.not_removed.append(NotRemoved(job_id=job.job_id, reason=f"the job is {job.status.value}; cancel it first"))
        elif not self.store.delete_unchanged(job):
            result.not_removed.append(NotRemoved(job_id=job.job_id, reason="the job changed meanwhile; look again"))
        else:
            remove_delayed_schedule(job, self.settings)
            result.removed.append(RemovedJob(job_id=job.job_id, user_id=job.user_id, status=job.status.value))

    # ---- metrics ----------------------------------------------------------------------------------------
    def metrics(self, name: str, caller: Identity, *, hours: int, resolution: str | None = None) -> QueueMetrics:
        queue = self.queue(name, caller)
        if resolution is None:
            resolution = "minute" if hours <= MINUTE_RESOLUTION_MAX_HOURS else "hour"
        if resolution == "minute" and hours > self.settings.minute_bucket_retention_hours:
            raise Invalid(f"per-minute metrics are kept {self.settings.minute_bucket_retention_hours} hours; ask for resolution=hour")
        if resolution == "hour" and hours > self.settings.hour_bucket_retention_days * 24:
            raise Invalid(f"metrics are kept {self.settings.hour_bucket_retention_days} days")
        chosen: stats_models.Resolution = "minute" if resolution == "minute" else "hour"
        step = 60_000 if chosen == "minute" else HOUR_MS
        now = self.clock()
        last = stats.bucket_start(now, chosen)
        first = last - (hours * HOUR_MS // step - 1) * step
        found = {b.start_ms: b for b in self.counters.read_buckets(queue.name, first, chosen)}
        minutes = step / 60_000
        points = []
        for start in range(first, last + 1, step):
            b = found.get(start) or stats_models.Bucket(resolution=chosen, start_ms=start)
            points.append(
                MetricPoint(
                    timestamp=iso(start),
                    created=b.created,
                    completed=b.completed,
                    failed=b.failed,
                    retried=b.retried,
                    throughput=round(b.processed / minutes, 3),
                    average_processing_time=round(b.average_processing_ms, 1) if b.average_processing_ms is not None else None,
                    p95_processing_time=b.p95_processing_ms,
                )
            )
        window = stats_models.summarize(b for start, b in found.items() if start >= first)
        totals = MetricTotals(
            created=window.created,
            completed=window.completed,
            failed=window.failed,
            throughput=round(window.finished / (len(points) * minutes), 3),
            failure_rate=round(window.failure_rate, 4),
            average_processing_time=_round(window.average_processing_ms),
            p95_processing_time=window.p95_processing_ms,
        )
        types = stats_models.merge_types(b.types for start, b in found.items() if start >= first)
        cost_by_type = {
            job_type: TypeCost(
                attempts=f.attempts,
                cost_nano_usd=f.cost_nano_usd,
                cost_usd=round(f.cost_nano_usd / 1e9, 9),
                average_duration_ms=_round(f.average_ms),
                slow_attempts=f.slow_attempts(),
            )
            for job_type, f in sorted(types.items())
        }
        users = sorted(self.counters.read_user_costs(queue.name, first).items(), key=lambda kv: (-kv[1][0], kv[0]))[:MAX_USERS_IN_METRICS]
        cost_by_user = {user: UserCost(attempts=n, cost_nano_usd=cost, cost_usd=round(cost / 1e9, 9)) for user, (cost, n) in users}
        return QueueMetrics(
            queue=queue.name, hours=hours, resolution=chosen, points=points, totals=totals, cost_by_type=cost_by_type, cost_by_user=cost_by_user
        )

    # ---- jobs and dead letters ------------------------------------------------------------------------------
    def list_jobs(self, name: str, caller: Identity, *, status: JobStatus | None, limit: int, cursor: str | None) -> tuple[list[Job], str | None]:
        queue = self.queue(name, caller)
        return self.jobs.list_for_queue(caller, queue=queue.name, limit=limit, cursor=cursor, status=status)

    def dead_letters(self, name: str, caller: Identity, *, limit: int) -> DeadLetterList:
        queue = self.queue(name, caller)
        return dead_letters.peek(queue, self.store, limit=limit, hold_seconds=self.settings.dead_letter_peek_seconds)

    def redrive(
        self,
        name: str,
        caller: Identity,
        *,
        job_ids: list[str] | None,
        user_id: str | None = None,
        priority: int | None = None,
        attempts: int | None = None,
    ) -> RedriveResult:
        queue = self.queue(name, caller)
        result = dead_letters.redrive(
            queue,
            self.jobs,
            caller,
            job_ids=job_ids,
            user_id=user_id,
            budget_seconds=self.settings.admin_request_budget_seconds,
            priority=priority,
            attempts=attempts,
        )
        logger.info("dead letters redriven", extra={"queue": queue.name, "redriven": len(result.redriven), "requeued": len(result.requeued)})
        return result

    def purge_dead_letters(self, name: str, caller: Identity) -> PurgeResult:
        queue = self.queue(name, caller)
        result = dead_letters.purge(queue, self.jobs, budget_seconds=self.settings.admin_request_budget_seconds)
        logger.info("dead letters purged", extra={"queue": queue.name, "purged": result.purged})
        return result


def _round(ms: float | None) -> float | None:
    return round(ms, 1) if ms is not None else None


def _one_name_per_setting(patch: QueuePatch, current: QueueConfiguration) -> QueuePatch:
    """A read-modify-write of GET's configuration sends each setting under both its names (seed
    000's ``retryAttempts``, ``retryDelay``, ``removeOnComplete: N`` and jobq's); the name the
    client changed is the change, the one sent back as it was is dropped. Both changed to
    different values: a 400 naming them."""
    dropped: dict[str, None] = {}
    # (seed name, jobq name, their values in the patch, their current values, the fields to drop
    # when the seed's / jobq's is the one sent back; None: the seed's is applied last anyway)
    pairs: list[tuple[str, str, Any, Any, Any, Any, str, str | None]] = [
        ("retryAttempts", "defaultAttempts", patch.retry_attempts, patch.default_attempts,
         current.retry_attempts, current.default_attempts, "retry_attempts", "default_attempts"),
    ]
    if patch.default_backoff is not None:
        pairs.append(("retryDelay", "defaultBackoff.delay", patch.retry_delay, patch.default_backoff.delay,
                      current.retry_delay, current.default_backoff.delay, "retry_delay", None))
    for field in ("remove_on_complete", "remove_on_fail"):
        number = getattr(patch, field)
        from_retention = getattr(patch.retention, field) if patch.retention is not None else None
        if isinstance(number, int) and from_retention is not None:
            was = getattr(current, field)
            pairs.append((to_camel(field), f"retention.{to_camel(field)}.maxCount", number, from_retention.max_count, was, was, field, None))
    for alias, name, alias_value, value, alias_was, was, alias_field, own_field in pairs:
        if alias_value is None or value is None or alias_value == value:
            continue
        if alias_value == alias_was:
            dropped[alias_field] = None  # sent back unchanged: the other name carries the change
        elif value == was:
            if own_field is not None:
                dropped[own_field] = None
        else:
            raise Invalid(f"{alias} and {name} are one setting and were changed to different values ({alias_value}, {value}); give one")
    return patch.model_copy(update=dropped) if dropped else patch


def _policy_changes(patch: QueuePatch) -> dict[str, Any]:
    """What a PATCH changes in the stored policy; seed 000's names and numbers mapped to jobq's fields.

    Values are model objects or ``("max_count", n)`` for a bare number (keep the newest n; the age stays)."""
    given = patch.model_fields_set
    changes: dict[str, Any] = {}
    if "retry_attempts" in given and patch.retry_attempts is not None:
        changes["default_attempts"] = patch.retry_attempts
    if "default_attempts" in given and patch.default_attempts is not None:
        changes["default_attempts"] = patch.default_attempts
    if "default_backoff" in given and patch.default_backoff is not None:
        changes["default_backoff"] = patch.default_backoff
    if "retry_delay" in given and patch.retry_delay is not None:
        changes["retry_delay"] = patch.retry_delay
    if "description" in given:
        changes["description"] = patch.description
    for field in ("remove_on_complete", "remove_on_fail"):
        from_retention = getattr(patch.retention, field) if patch.retention is not None else None
        value = getattr(patch, field) if field in given else None
        if from_retention is not None:
            changes[field] = from_retention
        if isinstance(value, int):
            changes[field + "_count"] = value
        elif value is not None:
            changes[field] = value
    return changes


def _apply(policy: QueuePolicy, changes: dict[str, Any]) -> QueuePolicy:
    update = {
        k: v
        for k, v in changes.items()
        if k
        in (
            "default_attempts",
            "default_backoff",
            "description",
            "remove_on_complete",
            "remove_on_fail",
            "access",
            "max_unfinished_jobs",
            "max_unfinished_jobs_per_user",
            "webhook",
            "rate_limit",
            "default_timeout",
            "groups",
            "max_concurrency",
        )
    }
    updated = policy.model_copy(update=update)
    if "retry_delay" in changes:
        updated = updated.model_copy(update={"default_backoff": updated.default_backoff.model_copy(update={"delay": changes["retry_delay"]})})
    for field in ("remove_on_complete", "remove_on_fail"):
        if field + "_count" in changes:
            retention = getattr(updated, field).model_copy(update={"max_count": changes[field + "_count"]})
            updated = updated.model_copy(update={field: retention})
    return updated


def _health_checks(reports: ReportStore) -> dict[str, str]:
    """queue -> when the HealthFunction last assessed it (one GetItem: its last run's report)."""
    try:
        run = read_last_health_run(reports)
    except JobqError:
        return {}
    return {name: health.checked_at for name, health in run.queues.items()} if run else {}


def _finished_before(job: Job, status: str, cutoff_iso: str) -> bool:
    stamp = getattr(job, _CLEAN_STAMP[status]) or job.updated_at
    return job.status.value == status and stamp < cutoff_iso


__all__ = ["QueueService", "consumer_state", "set_consumer_enabled"]
