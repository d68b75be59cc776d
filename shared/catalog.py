"""Which job types a queue accepts: the code processors by name, then HTTP targets in DynamoDB.

Code processors are listed here as ``"module:function"`` (the modules live in the top-level
``processors`` package, which only the consumers ship). The API, the scheduler and the
maintenance functions need the names alone; ``processors.registry`` imports the code when a
job of that type runs. To add one: write ``def my_processor(job: JobContext) -> dict`` in
``processors/`` and list it under its queue and type below.
"""

from __future__ import annotations

import time
from threading import Lock
from typing import Protocol

from shared.models import AnyTarget

CODE_PROCESSORS: dict[str, dict[str, str]] = {
    "email-sending": {"send-email": "processors.examples:send_email", "publish": "processors.builtins:publish"},
    "report-generation": {
        "generate-report": "processors.examples:generate_report",
        # Built-ins (processors/builtins.py): what a report or data job usually needs.
        "export": "processors.builtins:export",
        "http-request": "processors.builtins:http_request",
        "invoke": "processors.builtins:invoke",
        # seed 000's business-discovery chain (processors/pipeline.py)
        "analyze-reels": "processors.pipeline:analyze_reels",
        "generate-competitor-report": "processors.pipeline:generate_competitor_report",
    },
    "video-processing": {
        "transcode-video": "processors.examples:transcode_video",
        "discover-with-instagram": "processors.pipeline:discover_with_instagram",
        "scrape-instagram-videos": "processors.pipeline:scrape_instagram_videos",
        "analyze-video-content": "processors.pipeline:analyze_video_content",
    },
}


def code_types(queue: str) -> set[str]:
    return set(CODE_PROCESSORS.get(queue, {}))


def code_processor_path(queue: str, job_type: str) -> str | None:
    return CODE_PROCESSORS.get(queue, {}).get(job_type)


class TargetSource(Protocol):
    """Where processor targets (HTTP, Lambda) are stored (the jobs repository)."""

    def get_target(self, queue: str, job_type: str) -> AnyTarget | None: ...
    def list_targets(self, queue: str) -> dict[str, AnyTarget]: ...


class ProcessorCatalog:
    """The types a queue accepts; HTTP targets are cached a few seconds per container."""

    def __init__(self, targets: TargetSource, target_cache_seconds: float) -> None:
        self.targets = targets
        self.cache_seconds = target_cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, AnyTarget]] = {}
        self._lock = Lock()

    def http_target(self, queue: str, job_type: str) -> AnyTarget | None:
        key = (queue, job_type)
        with self._lock:
            cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        target = self.targets.get_target(queue, job_type)
        if target is not None:  # misses are not cached: a target registered a moment ago must work at once
            with self._lock:
                self._cache[key] = (time.monotonic(), target)
        return target

    def has(self, queue: str, job_type: str) -> bool:
        return job_type in code_types(queue) or self.http_target(queue, job_type) is not None

    def types(self, queue: str) -> set[str]:
        return code_types(queue) | set(self.targets.list_targets(queue))

    def is_code_type(self, queue: str, job_type: str) -> bool:
        return job_type in code_types(queue)
