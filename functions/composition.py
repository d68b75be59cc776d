"""The Lambda functions' composition root: settings, clock, adapters and services, built once per container.

Each function's handler parses its event and calls what a builder here returns; nothing else
in ``functions/``, ``shared/`` or ``processors/`` reads the environment. Each builder imports
what it builds, so a function's cold start imports its own part only (the consumer never loads
the health sweep). The live-events functions have their own root (functions/realtime/services.py).

Importing this module inside Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set) validates the settings
(shared/settings.py ``validate_at_cold_start``): a function deployed without its table fails its
init with one error naming every missing or invalid variable, before any event. Tests and the
local stack build the services when they first use them, after they set the environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from shared import clock as clocks
from shared.adapters.configuration import use_settings
from shared.settings import Settings, get_settings, validate_at_cold_start

if TYPE_CHECKING:
    from shared.executions import ExecutionEnds
    from shared.flow_events import FlowEvents
    from shared.health import HealthSweep
    from shared.retention import Retention
    from shared.schedules import ScheduleService
    from shared.worker import Worker

validate_at_cold_start()
use_settings(get_settings)  # the module-level adapters (counters, policies, the queue directory) read these


def settings() -> Settings:
    """The container's settings (read and validated once)."""
    return get_settings()


_clock: clocks.Clock = clocks.now_ms


def use_clock(clock: clocks.Clock | None) -> None:
    """Build the services on ``clock`` (None: the wall clock): the local stack passes its own, which
    tests move forward. The services built so far are forgotten, so none keeps the old one."""
    global _clock
    _clock = clock or clocks.now_ms
    reset()


def clock() -> clocks.Clock:
    """The services' clock: the wall clock unless the process passed its own (``use_clock``)."""
    return _clock


@lru_cache(maxsize=1)
def worker() -> Worker:
    """The consumer's use case: claims, runs and finishes the jobs of its queue's records."""
    from processors.registry import ProcessorRegistry
    from shared.adapters.breakers import DynamoBreakerStore
    from shared.adapters.job_repository import JobStore
    from shared.breakers import Breakers
    from shared.catalog import ProcessorCatalog
    from shared.worker import Worker

    config = settings()
    store = JobStore(config.table_name)
    breakers = Breakers(DynamoBreakerStore(config.table_name), clock=clock(), cache_seconds=config.breaker_cache_seconds)
    registry = ProcessorRegistry(ProcessorCatalog(store, config.target_cache_seconds), breakers)
    # The jobs a processor adds are not checked against their queue's types: a consumer may not read
    # other queues' HTTP targets. A type no processor takes fails when it runs.
    return Worker(store, config, registry.resolve, clock=clock(), admit=registry.admit, holds_jobs=registry.holds_jobs)


@lru_cache(maxsize=1)
def schedule_service() -> ScheduleService:
    """The SchedulerFunction's use case: one firing of a recurring schedule creates its one job."""
    from shared.adapters import queues
    from shared.adapters.job_repository import JobStore
    from shared.catalog import ProcessorCatalog
    from shared.jobs import JobService
    from shared.schedules import ScheduleService, ScheduleStore

    config = settings()
    store = JobStore(config.table_name)
    jobs = JobService(store, queues.directory(), ProcessorCatalog(store, config.target_cache_seconds), config, clock=clock())
    return ScheduleService(ScheduleStore(config.table_name), jobs)


@lru_cache(maxsize=1)
def flow_events() -> FlowEvents:
    """The EventsFunction's flow part: children counted against their parents, parents moved on."""
    from shared.adapters.flows import FlowStore
    from shared.adapters.job_repository import JobStore
    from shared.adapters.scheduler import EventBridgeDelayedSchedules
    from shared.adapters.sqs import SqsJobMessages
    from shared.flow_events import FlowEvents
    from shared.transitions import Transitions

    config = settings()
    store = JobStore(config.table_name)
    transitions = Transitions(store, SqsJobMessages(), EventBridgeDelayedSchedules(config))
    return FlowEvents(store, FlowStore(store.table_name), transitions, clock=clock())


@lru_cache(maxsize=1)
def health_sweep() -> HealthSweep:
    """The HealthFunction's use case: recovery, recount and every queue's health."""
    from shared.adapters import queues
    from shared.adapters.job_repository import JobStore
    from shared.adapters.reports import DynamoReportStore
    from shared.health import HealthSweep

    config = settings()
    return HealthSweep(
        JobStore(config.table_name), queues.directory(), config, clock=clock(), reports=DynamoReportStore(config.table_name)
    )


@lru_cache(maxsize=1)
def retention() -> Retention:
    """The CleanupFunction's use case: every queue's retention."""
    from shared.adapters import queues
    from shared.adapters.job_repository import JobStore
    from shared.adapters.reports import DynamoReportStore
    from shared.retention import Retention

    config = settings()
    return Retention(JobStore(config.table_name), queues.directory(), config, clock=clock(), reports=DynamoReportStore(config.table_name))


@lru_cache(maxsize=1)
def execution_ends() -> ExecutionEnds:
    """The ExecutionEventsFunction's use case: a state machine's end ends the job that started it."""
    from shared.adapters.job_repository import JobStore
    from shared.executions import ExecutionEnds

    config = settings()
    return ExecutionEnds(JobStore(config.table_name), config, clock=clock())


def reset() -> None:
    """Tests: forget the services (they hold settings and clients of one environment)."""
    for builder in (worker, schedule_service, flow_events, health_sweep, retention, execution_ends):
        builder.cache_clear()
