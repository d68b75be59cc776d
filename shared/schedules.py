"""Recurring schedules (BullMQ's repeatable jobs): create, list, get, pause, resume, delete, trigger,
and what happens when one fires.

A schedule is two things kept in step:

* its record in DynamoDB, ``pk=SCHEDULES  sk=SCHEDULE#<name>``: the job template (queue,
  type, data, options), the recurrence as the client wrote it, the run limit and the run
  count, its state (``active|paused|completed``) and its last run;
* its EventBridge Scheduler schedule ``repeat-<name>`` in the stack's group
  (shared/adapters/scheduler.py), which does the timing and invokes the SchedulerFunction with the
  scheduled time.

A firing creates exactly one job, however often it is delivered: the job id is
``repeat:<name>:<scheduled time>`` in the schedule creator's namespace (the ``:`` keeps
client ids, which cannot hold it, from ever creating or blocking it), and the run is reserved first with one transaction
that writes a marker ``pk=SCHEDULE#<name> sk=RUN#<scheduled time>`` (conditional on its
absence, with a TTL) and counts the run on the record (conditional on the schedule being
active and under its limit). A redelivery finds the marker and only makes sure the job
exists (JobService.create returns the existing job for an existing id); a firing past the
limit is dropped and the schedule is disabled and marked ``completed``.

Firings are also counted per hour (``pk=SCHEDULER sk=RUNS#<hour>#<shard>``) for
``GET /scheduler/metrics``; the shard spreads schedules that fire in the same second.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared import cron
from shared.access import Action, Identity, authorize
from shared.adapters import scheduler
from shared.adapters.schedules import ScheduleStore
from shared.client_models import JobCreate
from shared.clock import iso, parse_iso
from shared.errors import Conflict, Invalid, JobqError, NotFound, PayloadTooLarge, Unavailable
from shared.jobs import JobService, require_admin
from shared.models import Job, json_size
from shared.observability import emit, logger
from shared.schedule_models import (  # noqa: F401  (re-exported: the routes import them from here)
    SCHEDULE_NAME_PATTERN,
    FiringResult,
    Schedule,
    ScheduleCreate,
    SchedulePage,
    SchedulePatch,
    ScheduleState,
)


# ---- use cases -----------------------------------------------------------------------------------------
def firing_job_id(name: str, scheduled_time: str) -> str:
    """``repeat:<name>:<YYYYMMDDTHHMMSSZ>``: the same firing always names the same job. Service
    ids contain ``:`` and client ids cannot, so no client can create or block a firing's job."""
    when = datetime.fromtimestamp(parse_iso(scheduled_time) / 1000, tz=UTC)
    return f"repeat:{name}:{when.strftime('%Y%m%dT%H%M%SZ')}"


def _firing_identity(schedule: Schedule) -> Identity:
    """A firing creates its job as the schedule's creator, with the admin role that creating a
    schedule needed: a queue's create groups restrict users, not the schedules admins set up."""
    return Identity(schedule.created_by, is_admin=True)


def manual_job_id(name: str) -> str:
    """``repeat:<name>:manual:<random>``: a job run by hand (POST /schedules/{name}/trigger)."""
    return f"repeat:{name}:manual:{uuid.uuid4().hex[:12]}"


def _utc(value: datetime) -> str:
    return iso(int(value.timestamp() * 1000))


class ScheduleService:
    def __init__(self, store: ScheduleStore, jobs: JobService) -> None:
        self.store = store
        self.jobs = jobs
        self.settings = jobs.settings
        self.clock = jobs.clock  # the composition root's, through the job service

    # ---- admin use cases -----------------------------------------------------------------------------
    def create(self, request: ScheduleCreate, caller: Identity) -> Schedule:
        require_admin(caller)
        recurrence = self._check(request)
        now = self.clock()
        schedule = Schedule(
            name=request.name,
            queue=request.queue,
            type=request.type,
            data=request.data,
            options=request.options.model_dump(by_alias=True, mode="json", exclude_none=True, exclude_defaults=True),
            cron=request.cron,
            timezone=recurrence.timezone,
            every=request.every,
            expression=recurrence.expression,
            start_date=_utc(request.start_date) if request.start_date else None,
            end_date=_utc(request.end_date) if request.end_date else None,
            limit=request.limit,
            description=request.description,
            created_by=caller.user_id,
            created_at=iso(now),
            updated_at=iso(now),
            schedule_name=scheduler.repeat_schedule_name(request.name),
        )
        self.store.create(schedule)  # the name is taken here, conditionally
        try:
            self._put_schedule(schedule, request, create=True)
        except Conflict:
            # A schedule left over by an interrupted delete: make it this one.
            self._put_schedule(schedule, request, create=False)
        except JobqError:
            self.store.delete(schedule.name)
            raise
        logger.info("schedule created", extra={"schedule": schedule.name, "expression": schedule.expression, "queue": schedule.queue})
        return self._public(schedule)

    def create_or_match(self, request: ScheduleCreate, caller: Identity) -> tuple[Schedule, bool]:
        """Create the schedule; if one of that name exists with the same definition, return it (``created`` False).

        A client that registers its schedules at every start (seed 000 names them by job type) gets
        the one it made before; a different definition under a taken name is a 409.
        """
        try:
            return self.create(request, caller), True
        except Conflict:
            existing = self.store.get(request.name)
            if existing is None or not request.same_as(existing):
                raise Conflict(
                    f"schedule '{request.name}' already exists with another definition; give another name, "
                    f"or DELETE /schedules/{request.name} first"
                ) from None
            return self._public(existing), False

    def _put_schedule(self, schedule: Schedule, request: ScheduleCreate, *, create: bool) -> None:
        scheduler.put_recurring(
            schedule.name,
            expression=schedule.expression,
            timezone=schedule.timezone,
            enabled=True,
            start=request.start_date,
            end=request.end_date,
            description=request.description or f"jobq: {schedule.type} on {schedule.queue}",
            create=create,
            settings=self.settings,
        )

    def _check(self, request: ScheduleCreate) -> cron.Recurrence:
        queue = self.jobs.directory.get(request.queue)
        if not self.jobs.catalog.has(queue.name, request.type):
            valid = ", ".join(sorted(self.jobs.catalog.types(queue.name))) or "none registered"
            raise Invalid(f"no processor for type '{request.type}' on queue '{queue.name}'; valid types: {valid}")
        size = json_size(request.data)
        if size > self.settings.max_data_bytes:
            raise PayloadTooLarge(f"data is {size} bytes; the limit is {self.settings.max_data_bytes}")
        self.jobs.check_data(queue.name, request.type, request.data)  # every firing's job must be accepted
        options = request.options
        if options.job_id or options.run_at or options.deduplication:
            raise Invalid("a schedule's options cannot have jobId, runAt or deduplication: every firing makes its own job")
        recurrence = cron.recurrence(cron=request.cron, every_ms=request.every, timezone=request.timezone)
        now = datetime.fromtimestamp(self.clock() / 1000, tz=UTC)
        if request.start_date and request.start_date < now - timedelta(minutes=5):
            raise Invalid("startDate is in the past; leave it out to start now")
        if request.end_date and request.end_date <= max(now, request.start_date or now):
            raise Invalid("endDate must be in the future and after startDate")
        return recurrence

    def list(self, caller: Identity, *, limit: int, cursor: str | None) -> tuple[list[Schedule], str | None]:
        authorize(caller, Action.INSPECT)  # readers too
        schedules, next_cursor = self.store.page(limit=limit, cursor=cursor)
        return [self._public(s) for s in schedules], next_cursor

    def get(self, name: str, caller: Identity) -> Schedule:
        authorize(caller, Action.INSPECT)  # readers too
        return self._public(self._require(name))

    def pause(self, name: str, caller: Identity) -> Schedule:
        require_admin(caller)
        schedule = self._require(name)
        if schedule.state == "completed":
            raise Conflict(f"schedule '{name}' has completed its {schedule.limit} runs; create a new one")
        if schedule.state == "active":
            scheduler.set_recurring_state(name, enabled=False, settings=self.settings)
            self.store.update(name, {"state": "paused", "updatedAt": iso(self.clock())})
        return self.get(name, caller)

    def resume(self, name: str, caller: Identity) -> Schedule:
        require_admin(caller)
        schedule = self._require(name)
        if schedule.state == "completed":
            raise Conflict(f"schedule '{name}' has completed its {schedule.limit} runs; create a new one")
        if schedule.state == "paused":
            scheduler.set_recurring_state(name, enabled=True, settings=self.settings)
            self.store.update(name, {"state": "active", "updatedAt": iso(self.clock())})
        return self.get(name, caller)

    def update(self, name: str, patch: SchedulePatch, caller: Identity) -> Schedule:
        """New cron, interval, time zone, limit or description; its runs, state and job template stay."""
        require_admin(caller)
        schedule = self._require(name)
        if schedule.state == "completed":
            raise Conflict(f"schedule '{name}' has completed its {schedule.limit} runs; create a new one")
        given = patch.model_fields_set
        cron_text, every = schedule.cron, schedule.every
        if "cron" in given and patch.cron is not None:
            cron_text, every = patch.cron, None
        elif "every" in given and patch.every is not None:
            cron_text, every = None, patch.every
        limit = patch.limit if "limit" in given else schedule.limit
        if limit is not None and limit <= schedule.run_count:
            raise Invalid(f"limit {limit} is not above the {schedule.run_count} runs already made")
        timezone = (patch.timezone or schedule.timezone) if "timezone" in given else schedule.timezone
        description = patch.description if "description" in given else schedule.description
        recurrence = cron.recurrence(cron=cron_text, every_ms=every, timezone=timezone)
        start = datetime.fromtimestamp(parse_iso(schedule.start_date) / 1000, tz=UTC) if schedule.start_date else None
        end = datetime.fromtimestamp(parse_iso(schedule.end_date) / 1000, tz=UTC) if schedule.end_date else None
        scheduler.put_recurring(
            name,
            expression=recurrence.expression,
            timezone=recurrence.timezone,
            enabled=schedule.state == "active",
            start=start,
            end=end,
            description=description or f"jobq: {schedule.type} on {schedule.queue}",
            create=False,
            settings=self.settings,
        )
        changes = {
            "cron": cron_text,
            "every": every,
            "timezone": recurrence.timezone,
            "expression": recurrence.expression,
            "limit": limit,
            "description": description,
            "updatedAt": iso(self.clock()),
        }
        if not self.store.update(name, changes):
            raise NotFound(f"schedule '{name}' not found")
        logger.info("schedule changed", extra={"schedule": name, "expression": recurrence.expression, "timezone": recurrence.timezone})
        return self.get(name, caller)

    def delete(self, name: str, caller: Identity) -> None:
        require_admin(caller)
        self._require(name)
        scheduler.delete_recurring(name, settings=self.settings)  # first: no firing after the record is gone
        self.store.delete(name)
        logger.info("schedule deleted", extra={"schedule": name})

    def trigger(self, name: str, caller: Identity) -> Job:
        """Run the schedule once now (``POST /scheduler/jobs/{name}/trigger``); does not count toward its limit."""
        require_admin(caller)
        schedule = self._require(name)
        job, _ = self.jobs.create(self._job_request(schedule), _firing_identity(schedule), service_job_id=manual_job_id(name))
        now = self.clock()
        self.store.update(
            name,
            {"lastRunAt": iso(now), "lastJobId": job.job_id, "manualRuns": schedule.manual_runs + 1, "updatedAt": iso(now)},
        )
        self.store.count_firing(name, "manual", now=now)
        logger.info("schedule triggered by hand", extra={"schedule": name, "job_id": job.job_id})
        return job

    # ---- a firing (the SchedulerFunction) ---------------------------------------------------------------
    def fire(self, name: str, scheduled_time: str) -> FiringResult:
        """Create the one job of ``name``'s firing at ``scheduled_time``; redeliveries change nothing."""
        now = self.clock()
        try:
            scheduled_time = iso(parse_iso(scheduled_time))
        except ValueError:
            logger.error("firing without a valid scheduled time", extra={"schedule": name, "scheduled_time": scheduled_time})
            return FiringResult(schedule=name, outcome="failed", reason=f"scheduled time {scheduled_time!r} is not a time")
        schedule = self.store.get(name)
        if schedule is None:
            # Its record is gone (deleted): make sure the Scheduler schedule is too.
            scheduler.delete_recurring(name, settings=self.settings)
            return self._counted(FiringResult(schedule=name, outcome="skipped", reason="no such schedule"), now)
        job_id = firing_job_id(name, scheduled_time)
        reservation = self.store.reserve_run(schedule, scheduled_time, job_id, now=now)
        if reservation == "refused":
            self._complete_if_done(schedule)
            reason = "schedule is " + ("at its run limit" if schedule.state == "active" else schedule.state)
            return self._counted(FiringResult(schedule=name, outcome="skipped", job_id=None, reason=reason), now)
        try:
            job, created = self.jobs.create(self._job_request(schedule), _firing_identity(schedule), service_job_id=job_id)
        except Unavailable:
            raise  # the run stays reserved; the retried delivery creates the job
        except JobqError as err:
            # Retrying cannot help (the queue or its processor went away, the data no longer fits).
            self.store.update(name, {"lastError": err.message, "updatedAt": iso(now)})
            logger.error("schedule firing could not create its job", extra={"schedule": name, "error": err.message})
            return self._counted(FiringResult(schedule=name, outcome="failed", job_id=job_id, reason=err.message), now)
        if reservation == "reserved" and schedule.limit is not None and schedule.run_count + 1 >= schedule.limit:
            self._complete_if_done(schedule)
        outcome: Literal["created", "duplicate"] = "created" if created and reservation == "reserved" else "duplicate"
        if outcome == "created":
            emit("ScheduledJobsCreated", schedule.queue)
        logger.info("schedule fired", extra={"schedule": name, "job_id": job.job_id, "outcome": outcome, "scheduled_time": scheduled_time})
        return self._counted(FiringResult(schedule=name, outcome=outcome, job_id=job.job_id), now)

    def _complete_if_done(self, schedule: Schedule) -> None:
        if schedule.limit is not None and self.store.mark_completed(schedule.name, now=self.clock()):
            scheduler.set_recurring_state(schedule.name, enabled=False, settings=self.settings)
            logger.info("schedule reached its run limit", extra={"schedule": schedule.name, "limit": schedule.limit})

    def _counted(self, result: FiringResult, now: int) -> FiringResult:
        self.store.count_firing(result.schedule, result.outcome, now=now)
        return result

    # ---- reading ---------------------------------------------------------------------------------------------
    def _require(self, name: str) -> Schedule:
        schedule = self.store.get(name)
        if schedule is None:
            raise NotFound(f"schedule '{name}' not found")
        return schedule

    @staticmethod
    def _job_request(schedule: Schedule) -> JobCreate:
        options = {k: v for k, v in schedule.options.items() if k not in ("jobId", "runAt", "deduplication")}
        return JobCreate.model_validate({"queue": schedule.queue, "type": schedule.type, "data": schedule.data, "options": options})

    def _public(self, schedule: Schedule) -> Schedule:
        return schedule.model_copy(update={"next_run_at": self.next_run(schedule)})

    def next_run(self, schedule: Schedule) -> str | None:
        if schedule.state != "active":
            return None
        now = datetime.fromtimestamp(self.clock() / 1000, tz=UTC)
        anchor_text = schedule.start_date or schedule.created_at
        anchor = datetime.fromtimestamp(parse_iso(anchor_text) / 1000, tz=UTC)
        try:
            recurrence = schedule.recurrence()
            after = max(now, anchor - timedelta(microseconds=1)) if schedule.start_date else now
            nxt = recurrence.next_after(after, anchor=anchor if schedule.every else None)
        except (Invalid, ValueError):
            return None
        if schedule.end_date and nxt > datetime.fromtimestamp(parse_iso(schedule.end_date) / 1000, tz=UTC):
            return None
        return _utc(nxt)

    def stats(self, caller: Identity, *, delayed_jobs: int | None) -> dict[str, Any]:
        authorize(caller, Action.INSPECT)
        schedules = [self._public(s) for s in self.store.all()]
        by_state = {state: sum(1 for s in schedules if s.state == state) for state in ("active", "paused", "completed")}
        upcoming = sorted((s for s in schedules if s.next_run_at), key=lambda s: s.next_run_at or "")[:10]
        now = self.clock()
        day = self.store.firing_counts(now - 86400_000, now)
        return {
            "repeating": {"total": len(schedules), **by_state},
            "names": sorted(s.name for s in schedules),
            "delayed": delayed_jobs,
            "totalRuns": sum(s.run_count for s in schedules),
            "manualRuns": sum(s.manual_runs for s in schedules),
            "runsLast24h": sum(b.get("created", 0) for b in day.values()),
            "schedulesWithErrors": sorted(s.name for s in schedules if s.last_error),
            "nextRuns": [{"name": s.name, "queue": s.queue, "type": s.type, "nextRunAt": s.next_run_at} for s in upcoming],
        }

    def metrics(self, caller: Identity, *, hours: int) -> dict[str, Any]:
        authorize(caller, Action.INSPECT)
        now = self.clock()
        since = now - hours * 3600_000
        counts = self.store.firing_counts(since, now)
        series: list[dict[str, Any]] = []
        for i in range(hours, -1, -1):
            hour = iso(now - i * 3600_000)[:13]
            bucket = counts.get(hour, {})
            series.append(
                {
                    "hour": hour + ":00:00Z",
                    "created": bucket.get("created", 0),
                    "duplicates": bucket.get("duplicate", 0),
                    "skipped": bucket.get("skipped", 0),
                    "failed": bucket.get("failed", 0),
                    "manual": bucket.get("manual", 0),
                }
            )
        totals = {key: sum(point[key] for point in series) for key in ("created", "duplicates", "skipped", "failed", "manual")}
        return {"hours": hours, "totals": totals, "series": series}
