"""Shared arrangements for the scheduling and maintenance unit tests: the stack's schedule
group and scheduler settings in the environment, services on the real store, jobs in any state."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from shared.adapters import clients, queues
from shared.catalog import ProcessorCatalog
from shared.clock import iso, now_ms
from shared.jobs import Identity, JobService
from shared.models import AttemptRecord, Job
from shared.schedules import ScheduleService, ScheduleStore
from shared.settings import get_settings
from shared.status import JobStatus
from tests.unit.conftest import STACK, Stack

GROUP = STACK  # template.yaml: ScheduleGroup Name is the stack's name
ROLE_ARN = f"arn:aws:iam::123456789012:role/{STACK}-SchedulerRole"
TARGET_ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{STACK}-SchedulerFunction"
ADMIN = Identity("root", is_admin=True)
ALICE = Identity("alice")


@dataclass
class Scheduling:
    stack: Stack
    jobs: JobService
    schedules: ScheduleService

    @property
    def scheduler(self) -> Any:
        return clients.client("scheduler")

    def schedule(self, name: str) -> dict[str, Any]:
        return self.scheduler.get_schedule(Name=name, GroupName=GROUP)

    def schedule_names(self) -> list[str]:
        return sorted(s["Name"] for s in self.scheduler.list_schedules(GroupName=GROUP)["Schedules"])


@pytest.fixture(name="scheduling")
def scheduling_fixture(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Scheduling:
    """Import ``scheduling_fixture`` into a test module to use ``scheduling``."""
    return with_scheduler(stack, monkeypatch)


def with_scheduler(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Scheduling:
    """The stack's scheduler settings in the environment, and the services on the real store."""
    monkeypatch.setenv("JOBQ_SCHEDULE_GROUP", GROUP)
    monkeypatch.setenv("JOBQ_SCHEDULER_ROLE_ARN", ROLE_ARN)
    monkeypatch.setenv("JOBQ_SCHEDULER_TARGET_ARN", TARGET_ARN)
    get_settings.cache_clear()
    from api import deps

    deps.job_service.cache_clear()  # the API's services see the scheduler settings too
    deps.schedule_service.cache_clear()
    settings = get_settings()
    stack.settings = settings
    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), settings)
    return Scheduling(stack=stack, jobs=jobs, schedules=ScheduleService(ScheduleStore(stack.table_name), jobs))


def put_job(
    stack: Stack,
    status: JobStatus,
    *,
    queue: str = "email-sending",
    created_ms: int | None = None,
    updated_ms: int | None = None,
    finished_ms: int | None = None,
    **fields: Any,
) -> Job:
    """A job stored in ``status`` as the service would have left it (and never enqueued)."""
    created = created_ms if created_ms is not None else now_ms()
    updated = updated_ms if updated_ms is not None else (finished_ms if finished_ms is not None else created)
    values: dict[str, Any] = {
        "job_id": fields.pop("job_id", str(uuid.uuid4())),
        "queue": queue,
        "type": "send-email",
        "user_id": "alice",
        "status": status,
        "data": {"to": "a@example.com", "subject": "Hi", "body": "Hello"},
        "created_at": iso(created),
        "updated_at": iso(updated),
    }
    if status is JobStatus.COMPLETED:
        values["completed_at"] = iso(finished_ms or updated)
    elif status is JobStatus.FAILED:
        values["failed_at"] = iso(finished_ms or updated)
    elif status is JobStatus.CANCELLED:
        values["cancelled_at"] = iso(finished_ms or updated)
    elif status is JobStatus.ACTIVE:
        values.setdefault("history", [AttemptRecord(attempt=fields.get("attempts", 1), started_at=iso(updated))])
    values.update(fields)
    job = Job(**values)
    stack.store.create(job)
    return job
