"""The API's composition root: route dependencies as ``Annotated`` aliases, who calls, and the services.

The services are built once per container from the settings. Imported inside Lambda (the
ApiFunction), it validates the settings first: a missing or invalid variable fails the init,
named (shared/settings.py ``validate_at_cold_start``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request

from api.auth import identity_of
from api.cursors import CursorSigner, signer_for
from shared import clock as clocks
from shared.adapters import queues
from shared.adapters.audit import DynamoAuditStore
from shared.adapters.configuration import use_settings
from shared.adapters.flows import FlowStore
from shared.adapters.job_repository import JobStore
from shared.adapters.reports import DynamoReportStore
from shared.audit import AuditLog
from shared.catalog import ProcessorCatalog
from shared.flow_service import FlowService
from shared.jobs import Identity, JobService
from shared.ports import ReportStore
from shared.schedules import ScheduleService, ScheduleStore
from shared.settings import Settings, get_settings, validate_at_cold_start

validate_at_cold_start()
use_settings(get_settings)  # the module-level adapters (counters, policies, the queue directory) read these

_clock: clocks.Clock = clocks.now_ms


def use_clock(clock: clocks.Clock | None) -> None:
    """Build the services on ``clock`` (None: the wall clock): the local stack passes its own. Forgets the services built so far."""
    global _clock
    _clock = clock or clocks.now_ms
    for builder in (job_service, flow_service, schedule_service, audit_log):
        builder.cache_clear()


def clock() -> clocks.Clock:
    """The API's clock: the routes' timestamps and every service's."""
    return _clock


@lru_cache(maxsize=1)
def job_service() -> JobService:
    settings = get_settings()
    store = JobStore(settings.table_name)
    jobs = JobService(store, queues.directory(), ProcessorCatalog(store, settings.target_cache_seconds), settings, clock=_clock)
    jobs.tree_remover = FlowService(jobs, FlowStore(store.table_name), jobs.transitions).remove_tree  # removing a parent removes its tree
    return jobs


@lru_cache(maxsize=1)
def flow_service() -> FlowService:
    jobs = job_service()
    return FlowService(jobs, FlowStore(jobs.store.table_name), jobs.transitions)



@lru_cache(maxsize=1)
def schedule_service() -> ScheduleService:
    jobs = job_service()
    return ScheduleService(ScheduleStore(jobs.settings.table_name), jobs)


@lru_cache(maxsize=1)
def cursor_signer() -> CursorSigner:
    return signer_for(get_settings())


@lru_cache(maxsize=1)
def audit_log() -> AuditLog:
    settings = get_settings()
    return AuditLog(DynamoAuditStore(settings.table_name), retention_days=settings.audit_retention_days, clock=_clock)


@lru_cache(maxsize=1)
def report_store() -> ReportStore:
    return DynamoReportStore(get_settings().table_name)


def current_user(request: Request) -> Identity:
    return identity_of(request, get_settings())


CurrentUser = Annotated[Identity, Depends(current_user)]
Jobs = Annotated[JobService, Depends(job_service)]
Flows = Annotated[FlowService, Depends(flow_service)]
Schedules = Annotated[ScheduleService, Depends(schedule_service)]
Reports = Annotated[ReportStore, Depends(report_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Cursors = Annotated[CursorSigner, Depends(cursor_signer)]
