"""Which processor runs a job: the code processor the catalog names, else the job type's HTTP target.

Only the consumers ship this package; the API knows the names alone (shared/catalog.py).
A code type's retry rule (``retry_on`` / ``fail_on`` in its catalog entry) wraps its function
here: the exceptions it names fail the job at once (``PermanentJobError``) or are retried.
"""

from __future__ import annotations

import importlib
from functools import cache, partial
from typing import Any

from shared.breakers import Breakers, guarded
from shared.catalog import ProcessorCatalog, code_processor, code_processor_path
from shared.errors import PermanentJobError
from shared.models import AnyTarget, Job, LambdaTarget, QueueInfo
from shared.worker import JobContext, Processor


@cache
def import_path(path: str) -> Any:
    """``"module:name"`` imported (once per container)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def error_names(error: BaseException) -> set[str]:
    """The exception's class names (its whole MRO), and a botocore error's code (``MessageRejected``)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    response = getattr(error, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return names | {code} if isinstance(code, str) and code else names


def with_retry_rule(processor: Processor, *, retry_on: tuple[str, ...] | None, fail_on: tuple[str, ...]) -> Processor:
    """The processor, with the exceptions it raises sorted by its type's rule."""
    if retry_on is None and not fail_on:
        return processor

    def run(job: JobContext) -> Any:
        try:
            return processor(job)
        except PermanentJobError:
            raise
        except Exception as err:
            names = error_names(err)
            if names & set(fail_on) or (retry_on is not None and not names & set(retry_on)):
                raise PermanentJobError(f"{type(err).__name__}: {err} (not retried for this job type)") from err
            raise

    return run


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

    def holds_jobs(self, queue: QueueInfo) -> bool:
        """Whether ``admit`` may hold a job of ``queue``: then the worker reads the job before it claims it."""
        return self.breakers is not None and self.catalog.has_breakers(queue.name)

    def _guard(self, queue: QueueInfo, job: Job, target: AnyTarget, processor: Processor) -> Processor:
        if self.breakers is None or target.breaker is None:
            return processor
        return guarded(self.breakers, queue.name, job.type, target.breaker, processor)

    def resolve(self, queue: QueueInfo, job: Job) -> Processor:
        code = code_processor(queue.name, job.type)
        if code is not None:
            return with_retry_rule(import_path(code.function), retry_on=code.retry_on, fail_on=code.fail_on)
        target = self.catalog.http_target(queue.name, job.type)
        if isinstance(target, LambdaTarget):
            from processors.lambda_target import run_lambda_target

            return self._guard(queue, job, target, partial(run_lambda_target, target))
        if target is not None:
            from processors.http import run_http_target

            return self._guard(queue, job, target, partial(run_http_target, target))
        raise PermanentJobError(f"no processor for type '{job.type}' on queue '{queue.name}'")
