"""Which job types a queue accepts: the code processors by name, then HTTP targets in DynamoDB.

Code processors are listed here as ``"module:function"`` (the modules live in the top-level
``processors`` package, which only the consumers ship). The API, the scheduler and the
maintenance functions need the names alone; ``processors.registry`` imports the code when a
job of that type runs. To add one: write ``def my_processor(job: JobContext) -> dict`` in
``processors/`` and list it under its queue and type below. A ``CodeProcessor`` entry may
also declare

* ``data``: a pydantic model the job's ``data`` must fit, checked when the job is created
  (400 naming each missing or wrong field). The model lives in ``shared`` (the API checks
  it; it never imports ``processors``);
* ``retry_on`` / ``fail_on``: exception class names (any class of the raised exception's
  MRO, or an AWS SDK error code) that are retried / fail the job at once, beyond the
  built-in rule (``PermanentJobError`` fails at once, anything else is retried).

An HTTP target declares the same when it is registered: ``dataSchema`` (a JSON Schema),
``retryOn`` / ``failOn`` (HTTP statuses).

Generic tasks (seed 003) are the code type ``generic-task``: its data names a service method
registered in ``SERVICES`` below (one line per service) and the arguments to call it with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from threading import Lock
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.models import GENERIC_TASK_TYPE as GENERIC_TASK
from shared.models import AnyTarget, HttpTarget


@dataclass(frozen=True)
class CodeProcessor:
    """A job type run by Python code in ``processors/``."""

    function: str  # "module:function", imported by the consumer only
    data: type[BaseModel] | None = None  # the fields the job's data must have (checked at creation)
    retry_on: tuple[str, ...] | None = None  # only these exceptions are retried
    fail_on: tuple[str, ...] = ()  # these fail the job at once


# Seed 003's service registry: service name -> ("module:Class" in processors/, the methods a job
# may call). Registering a service is one line here; nothing else is callable. The API checks
# names against it at creation; the consumer imports the class when a task of it runs.
SERVICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ExportService": ("processors.services:ExportService", ("exportResults",)),
    "TaskUtils": ("processors.services:TaskUtils", ("calculateSum", "delay", "processData")),
}


def registered_services() -> str:
    return "; ".join(f"{name}: {', '.join(methods)}" for name, (_, methods) in sorted(SERVICES.items()))


class GenericTask(BaseModel):
    """The data of a ``generic-task`` job: which registered method to call, with what."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    service: str = Field(max_length=128)
    method: str = Field(max_length=128)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    name: str | None = Field(default=None, max_length=256, description="A label, as seed 003's first argument ('Data Export').")

    @model_validator(mode="after")
    def _registered(self) -> GenericTask:
        if self.service not in SERVICES:
            raise ValueError(f"service '{self.service}' is not registered; registered: {registered_services()}")
        if self.method not in SERVICES[self.service][1]:
            raise ValueError(f"method '{self.method}' of {self.service} is not registered; registered: {registered_services()}")
        return self


# The examples' own types check their data when they run (their processors say what is missing);
# generic-task declares its data, so a task naming nothing registered is refused at creation.
CODE_PROCESSORS: dict[str, dict[str, CodeProcessor]] = {
    "email-sending": {
        "send-email": CodeProcessor(
            "processors.examples:send_email",
            fail_on=("MessageRejected",),  # SES refused the message: the same message is refused again
        ),
        "publish": CodeProcessor("processors.builtins:publish"),
    },
    "report-generation": {
        "generate-report": CodeProcessor("processors.examples:generate_report"),
        GENERIC_TASK: CodeProcessor("processors.services:run_generic_task", data=GenericTask),
        # Built-ins (processors/builtins.py): what a report or data job usually needs.
        "export": CodeProcessor("processors.builtins:export"),
        "http-request": CodeProcessor("processors.builtins:http_request"),
        "invoke": CodeProcessor("processors.builtins:invoke"),
        # seed 000's business-discovery chain (processors/pipeline.py)
        "analyze-reels": CodeProcessor("processors.pipeline:analyze_reels"),
        "generate-competitor-report": CodeProcessor("processors.pipeline:generate_competitor_report"),
    },
    "video-processing": {
        "transcode-video": CodeProcessor("processors.examples:transcode_video"),
        "discover-with-instagram": CodeProcessor("processors.pipeline:discover_with_instagram"),
        "scrape-instagram-videos": CodeProcessor("processors.pipeline:scrape_instagram_videos"),
        "analyze-video-content": CodeProcessor("processors.pipeline:analyze_video_content"),
    },
}


def code_types(queue: str) -> set[str]:
    return set(CODE_PROCESSORS.get(queue, {}))


def code_processor(queue: str, job_type: str) -> CodeProcessor | None:
    return CODE_PROCESSORS.get(queue, {}).get(job_type)


def code_processor_path(queue: str, job_type: str) -> str | None:
    entry = code_processor(queue, job_type)
    return entry.function if entry is not None else None


def data_problems(model: type[BaseModel], data: dict[str, Any]) -> list[str]:
    """``data.<field>: <what is wrong>`` for each way ``data`` breaks ``model`` (none: [])."""
    try:
        model.model_validate(data)
    except ValidationError as err:
        problems = []
        for error in err.errors()[:20]:
            where = ".".join(str(p) for p in ("data", *error.get("loc", ())))
            problems.append(f"{where}: {error.get('msg', 'invalid').removeprefix('Value error, ')}")
        return problems
    return []


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
        self._breakers: dict[str, tuple[float, bool]] = {}
        self._lock = Lock()

    def has_breakers(self, queue: str) -> bool:
        """Whether any target of ``queue`` has a circuit breaker (cached like the targets)."""
        with self._lock:
            cached = self._breakers.get(queue)
        if cached and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        found = any(getattr(target, "breaker", None) is not None for target in self.targets.list_targets(queue).values())
        with self._lock:
            self._breakers[queue] = (time.monotonic(), found)
        return found

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

    def queues_for(self, job_type: str, queues: list[str]) -> list[str]:
        """The queues among ``queues`` that have a processor for ``job_type`` (a body without ``queue``)."""
        return [q for q in queues if self.has(q, job_type)]

    def check_data(self, queue: str, job_type: str, data: dict[str, Any]) -> list[str]:
        """What is wrong with ``data`` for the fields the type declares (none declared: nothing)."""
        code = code_processor(queue, job_type)
        if code is not None:
            return data_problems(code.data, data) if code.data is not None else []
        target = self.http_target(queue, job_type)
        # A Lambda target declares no data schema (its function checks its own input).
        return target.data_problems(data) if isinstance(target, HttpTarget) else []
