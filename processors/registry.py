"""Which processor runs a job: the code processor the catalog names, else the job type's HTTP target.

Only the consumers ship this package; the API knows the names alone (shared/catalog.py).
"""

from __future__ import annotations

import importlib
from functools import partial

from shared.catalog import ProcessorCatalog, code_processor_path
from shared.errors import PermanentJobError
from shared.models import Job, LambdaTarget, QueueInfo
from shared.worker import Processor


def _import(path: str) -> Processor:
    module, _, name = path.partition(":")
    processor: Processor = getattr(importlib.import_module(module), name)
    return processor


class ProcessorRegistry:
    """Resolves a job to its processor (the worker's ``ProcessorResolver``)."""

    def __init__(self, catalog: ProcessorCatalog) -> None:
        self.catalog = catalog

    def resolve(self, queue: QueueInfo, job: Job) -> Processor:
        path = code_processor_path(queue.name, job.type)
        if path:
            return _import(path)
        target = self.catalog.http_target(queue.name, job.type)
        if isinstance(target, LambdaTarget):
            from processors.lambda_target import run_lambda_target

            return partial(run_lambda_target, target)
        if target is not None:
            from processors.http import run_http_target

            return partial(run_http_target, target)
        raise PermanentJobError(f"no processor for type '{job.type}' on queue '{queue.name}'")
