"""Which processor runs a job: the code processor the catalog names, else the job type's HTTP target.

Only the consumers ship this package; the API knows the names alone (shared/catalog.py).
"""

from __future__ import annotations

import importlib
from functools import partial

from shared.breakers import Breakers, guarded
from shared.catalog import ProcessorCatalog, code_processor_path
from shared.errors import PermanentJobError
from shared.models import AnyTarget, Job, LambdaTarget, QueueInfo
from shared.worker import Processor


def _import(path: str) -> Processor:
    module, _, name = path.partition(":")
    processor: Processor = getattr(importlib.import_module(module), name)
    return processor


class ProcessorRegistry:
    """Resolves a job to its processor (the worker's ``ProcessorResolver``)."""

    def __init__(self, catalog: ProcessorCatalog, breakers: Breakers | None = None) -> None:
        self.catalog = catalog
        self.breakers = breakers

    def admit(self, queue: QueueInfo, job: Job) -> int | None:
        """Seconds a job must wait before it is claimed (its target's breaker is open), or None (the worker's ``admit``)."""
        if self.breakers is None or code_processor_path(queue.name, job.type):
            return None
        target = self.catalog.http_target(queue.name, job.type)
        if target is None or target.breaker is None:
            return None
        # A probe not heard of within its target's timeout (and the consumer's margin) goes to another job.
        probe_ms = int(target.timeout_seconds * 1000) + 60_000
        return self.breakers.admit(queue.name, job.type, f"{job.user_id}/{job.job_id}", probe_ms=probe_ms).hold_seconds

    def _guard(self, queue: QueueInfo, job: Job, target: AnyTarget, processor: Processor) -> Processor:
        if self.breakers is None or target.breaker is None:
            return processor
        return guarded(self.breakers, queue.name, job.type, target.breaker, processor)

    def resolve(self, queue: QueueInfo, job: Job) -> Processor:
        path = code_processor_path(queue.name, job.type)
        if path:
            return _import(path)
        target = self.catalog.http_target(queue.name, job.type)
        if isinstance(target, LambdaTarget):
            from processors.lambda_target import run_lambda_target

            return self._guard(queue, job, target, partial(run_lambda_target, target))
        if target is not None:
            from processors.http import run_http_target

            return self._guard(queue, job, target, partial(run_http_target, target))
        raise PermanentJobError(f"no processor for type '{job.type}' on queue '{queue.name}'")
