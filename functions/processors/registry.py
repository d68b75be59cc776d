"""Which processor runs a job: an explicit allow-list in code, then HTTP targets in DynamoDB.

Code processors are named here as ``"module:function"`` and imported only when a job of
that type runs, so the API (which only needs the names) never pays for their imports.
To add one: write ``def my_processor(job: JobContext) -> dict`` and list it under its
queue and type below.
"""

from __future__ import annotations

import importlib
import time
from functools import partial
from threading import Lock

from shared.errors import PermanentJobError
from shared.models import HttpTarget, Job, QueueInfo
from shared.store import JobStore
from shared.worker import Processor

CODE_PROCESSORS: dict[str, dict[str, str]] = {
    "email-sending": {"send-email": "functions.processors.examples:send_email"},
    "report-generation": {"generate-report": "functions.processors.examples:generate_report"},
    "video-processing": {"transcode-video": "functions.processors.examples:transcode_video"},
}


def code_types(queue: str) -> set[str]:
    return set(CODE_PROCESSORS.get(queue, {}))


def _import(path: str) -> Processor:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


class ProcessorRegistry:
    """Resolves a job to its processor; HTTP targets are cached a few seconds per container."""

    def __init__(self, store: JobStore, target_cache_seconds: float) -> None:
        self.store = store
        self.cache_seconds = target_cache_seconds
        self._targets: dict[tuple[str, str], tuple[float, HttpTarget]] = {}
        self._lock = Lock()

    def http_target(self, queue: str, job_type: str) -> HttpTarget | None:
        key = (queue, job_type)
        with self._lock:
            cached = self._targets.get(key)
        if cached and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        target = self.store.get_target(queue, job_type)
        if target is not None:  # misses are not cached: a target registered a moment ago must work at once
            with self._lock:
                self._targets[key] = (time.monotonic(), target)
        return target

    def resolve(self, queue: QueueInfo, job: Job) -> Processor:
        path = CODE_PROCESSORS.get(queue.name, {}).get(job.type)
        if path:
            return _import(path)
        target = self.http_target(queue.name, job.type)
        if target is not None:
            from functions.processors.http import run_http_target

            return partial(run_http_target, target)
        raise PermanentJobError(f"no processor for type '{job.type}' on queue '{queue.name}'")

    # ---- what the API asks before accepting a job -----------------------------------
    def has(self, queue: str, job_type: str) -> bool:
        return job_type in code_types(queue) or self.http_target(queue, job_type) is not None

    def types(self, queue: str) -> set[str]:
        return code_types(queue) | set(self.store.list_targets(queue))

    def is_code_type(self, queue: str, job_type: str) -> bool:
        return job_type in code_types(queue)
