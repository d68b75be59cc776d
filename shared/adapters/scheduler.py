"""EventBridge Scheduler access: one-time wake-ups for far delayed jobs, and recurring schedules.

Every schedule lives in the stack's own schedule group (``JOBQ_SCHEDULE_GROUP``), so an
operator sees them in the console; names tell the two kinds apart:

    delay-<jobId>-<h> at(<due time>) in UTC, ActionAfterCompletion DELETE. Its target is
                      the job's SQS queue itself (a templated target, through the
                      scheduler role) with the job's ordinary message as Input: nothing
                      runs in between, the consumer wakes up exactly as after an SQS delay.
    repeat-<name>     cron(...) in the schedule's time zone, or rate(...). Its target is
                      the SchedulerFunction (functions/scheduler/), with the scheduled
                      time in the Input, which creates the firing's one job
                      (shared/schedules.py).

How a job's first wake-up is sent (``enqueue``): a delay up to 15 minutes is the SQS
message's DelaySeconds; past that, a one-time schedule. ``cancel_delayed(ref)``
removes a job's one-time schedule (cancelling a delayed job). ``<h>`` is a hash of the
owner and the id: two users' jobs of the same id have two schedules.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from shared.adapters import clients, queues
from shared.adapters.aws_errors import aws_errors
from shared.client_models import JobOptions
from shared.clock import parse_iso
from shared.errors import Conflict, Invalid, NotFound, Unavailable
from shared.models import Job, JobRef, QueueInfo
from shared.observability import logger
from shared.settings import Settings

SQS_MAX_DELAY_MS = 15 * 60 * 1000
_NAME_OK = re.compile(r"^[0-9A-Za-z_.-]+$")
DELAY_PREFIX = "delay-"
REPEAT_PREFIX = "repeat-"
# Scheduler's own delivery retries; a job whose wake-up never arrives is found overdue by
# the HealthFunction (shared/health.py) and woken from there.
RETRY_POLICY = {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}


# ---- when ---------------------------------------------------------------------------------
def resolve_delay(options: JobOptions, now_ms: int, settings: Settings) -> int:
    """The delay in ms a job's options ask for: ``delay`` or ``runAt`` (a past runAt is 0)."""
    horizon_ms = settings.max_run_at_days * 86400 * 1000
    if options.run_at is not None:
        if options.delay:
            raise Invalid("give options.delay or options.runAt, not both")
        delay = max(0, int(options.run_at.timestamp() * 1000) - now_ms)
        if delay > horizon_ms:
            raise Invalid(f"options.runAt is more than {settings.max_run_at_days} days ahead")
        return delay
    if options.delay > horizon_ms:
        raise Invalid(f"options.delay is at most {horizon_ms} ms ({settings.max_run_at_days} days)")
    return options.delay


def needs_schedule(delay_ms: int) -> bool:
    """Past SQS's 15-minute message delay, a job's wake-up is a one-time Scheduler schedule."""
    return delay_ms > SQS_MAX_DELAY_MS


def at_expression(when_ms: int) -> str:
    """``at(yyyy-mm-ddThh:mm:ss)`` in UTC, rounded up to the second (never early)."""
    seconds = -(-when_ms // 1000)
    return "at(" + datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + ")"


# ---- names ----------------------------------------------------------------------------------
def delay_schedule_name(ref: JobRef) -> str:
    """``delay-<jobId>-<hash of owner and id>`` (readable in the console, unique per owner);
    ids a schedule name cannot hold (":" or too long) are only the hash: ``delayh-<hash>``."""
    digest = hashlib.sha256(json.dumps([ref.user_id, ref.job_id]).encode()).hexdigest()
    if len(ref.job_id) <= 40 and _NAME_OK.match(ref.job_id):
        return f"{DELAY_PREFIX}{ref.job_id}-{digest[:16]}"
    return "delayh-" + digest[:56]


def repeat_schedule_name(name: str) -> str:
    return REPEAT_PREFIX + name


# ---- the client -------------------------------------------------------------------------------
def _client() -> Any:
    return clients.client("scheduler")


def _group(settings: Settings) -> str:
    if not settings.schedule_group:
        raise Unavailable("no schedule group is configured (JOBQ_SCHEDULE_GROUP)")
    return settings.schedule_group


# ---- delayed jobs -------------------------------------------------------------------------------
def enqueue(queue: QueueInfo, job: Job, *, settings: Settings) -> None:
    """Send a new job's first wake-up: now, after an SQS delay, or from a one-time schedule."""
    if needs_schedule(job.delay):
        schedule_job(queue, job, settings=settings)
    else:
        queues.send_job(queue, JobRef.of(job), delay_seconds=-(-job.delay // 1000), route=queues.Route.of(job))


def _target(settings: Settings, arn: str, payload: str) -> dict[str, Any]:
    """A schedule's target; a firing Scheduler cannot deliver goes to the stack's failed-firings queue."""
    target: dict[str, Any] = {"Arn": arn, "RoleArn": settings.scheduler_role_arn, "Input": payload, "RetryPolicy": RETRY_POLICY}
    if settings.schedule_dead_letters_arn:
        target["DeadLetterConfig"] = {"Arn": settings.schedule_dead_letters_arn}
    return target


def schedule_job(queue: QueueInfo, job: Job, *, settings: Settings) -> str:
    """A one-time schedule that sends the job's message to its queue when it is due. Returns its name."""
    if not job.run_at:
        raise Invalid(f"job {job.job_id} has no runAt to schedule")
    name = delay_schedule_name(JobRef.of(job))
    try:
        with aws_errors(f"EventBridge Scheduler could not schedule job {job.job_id}"):
            _client().create_schedule(
                Name=name,
                GroupName=_group(settings),
                Description=f"jobq: wake delayed job {job.job_id} on {queue.name}"[:512],
                ScheduleExpression=at_expression(parse_iso(job.run_at)),
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                State="ENABLED",
                Target=_target(settings, queue.queue_arn, queues.message_body(JobRef.of(job), queue.name, queues.Route.of(job))),
            )
    except Conflict:
        pass  # a retried create: the schedule is there already
    logger.info("delayed job scheduled", extra={"job_id": job.job_id, "queue": queue.name, "run_at": job.run_at, "schedule": name})
    return name


def cancel_delayed(ref: JobRef, *, settings: Settings) -> bool:
    """Remove a delayed job's one-time schedule, if it has one. True if one was deleted.

    Safe to call for any job: a job delayed 15 minutes or less (an SQS delay) has none,
    and a schedule that already fired deleted itself.
    """
    if not settings.schedule_group:
        return False
    try:
        with aws_errors(f"EventBridge Scheduler could not remove the schedule of job {ref.job_id}"):
            _client().delete_schedule(Name=delay_schedule_name(ref), GroupName=settings.schedule_group)
    except NotFound:
        return False  # fired (and deleted itself) or never made
    logger.info("delayed job's schedule removed", extra={"job_id": ref.job_id})
    return True


# ---- recurring schedules ---------------------------------------------------------------------------
def firing_input(name: str) -> str:
    """What a recurring schedule passes its target: Scheduler fills in the context attributes."""
    return json.dumps(
        {
            "jobq": "schedule-firing",
            "schedule": name,
            "scheduledTime": "<aws.scheduler.scheduled-time>",
            "executionId": "<aws.scheduler.execution-id>",
            "attempt": "<aws.scheduler.attempt-number>",
        },
        separators=(",", ":"),
    )


def put_recurring(
    name: str,
    *,
    expression: str,
    timezone: str,
    enabled: bool,
    start: datetime | None = None,
    end: datetime | None = None,
    description: str = "",
    create: bool,
    settings: Settings,
) -> str:
    """Create (``create=True``) or update the Scheduler schedule of recurring schedule ``name``. Returns its ARN."""
    if not settings.scheduler_target_arn:
        raise Unavailable("no scheduler target is configured (JOBQ_SCHEDULER_TARGET_ARN)")
    params: dict[str, Any] = {
        "Name": repeat_schedule_name(name),
        "GroupName": _group(settings),
        "Description": (description or f"jobq recurring schedule {name}")[:512],
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": timezone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED" if enabled else "DISABLED",
        "Target": _target(settings, settings.scheduler_target_arn, firing_input(name)),
    }
    if start is not None:
        params["StartDate"] = start
    if end is not None:
        params["EndDate"] = end
    try:
        with aws_errors(f"EventBridge Scheduler could not save schedule '{name}'"):
            out = _client().create_schedule(**params) if create else _client().update_schedule(**params)
    except Conflict as err:
        raise Conflict(f"schedule '{name}' already exists") from err
    except NotFound as err:
        raise NotFound(f"schedule '{name}' has no EventBridge schedule") from err
    return str(out.get("ScheduleArn", ""))


def set_recurring_state(name: str, *, enabled: bool, settings: Settings) -> None:
    """Pause or resume: UpdateSchedule replaces the whole schedule, so it is read first."""
    group = _group(settings)
    try:
        with aws_errors(f"EventBridge Scheduler could not read schedule '{name}'"):
            current = _client().get_schedule(Name=repeat_schedule_name(name), GroupName=group)
    except NotFound as err:
        raise NotFound(f"schedule '{name}' has no EventBridge schedule") from err
    params = {
        key: current[key]
        for key in (
            "Name", "GroupName", "Description", "ScheduleExpression", "ScheduleExpressionTimezone",
            "FlexibleTimeWindow", "Target", "StartDate", "EndDate", "ActionAfterCompletion", "KmsKeyArn",
        )
        if current.get(key) is not None
    }
    params["State"] = "ENABLED" if enabled else "DISABLED"
    with aws_errors(f"EventBridge Scheduler could not {'resume' if enabled else 'pause'} schedule '{name}'"):
        _client().update_schedule(**params)


def delete_recurring(name: str, *, settings: Settings) -> bool:
    try:
        with aws_errors(f"EventBridge Scheduler could not delete schedule '{name}'"):
            _client().delete_schedule(Name=repeat_schedule_name(name), GroupName=_group(settings))
    except NotFound:
        return False
    return True


def ping(settings: Settings) -> None:
    """Scheduler reachable and the group there (GET /scheduler/health, /health/detailed)."""
    with aws_errors("EventBridge Scheduler could not read the schedule group"):
        _client().get_schedule_group(Name=_group(settings))


class EventBridgeDelayedSchedules:
    """The lifecycle's ``DelayedSchedules``: removing a delayed job's one-time schedule."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def remove(self, job: Job) -> None:
        cancel_delayed(JobRef.of(job), settings=self.settings)
