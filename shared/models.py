"""Models at each boundary: what is stored, the targets a job runs on, what the stack says of a queue.

What a client sends and sees of a job (requests, views, pages) is in shared/client_models.py, which
the consumer does not import.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    TypeAdapter,
    field_validator,
    model_serializer,
    model_validator,
)

from shared import strict_json
from shared.access import QueueAccess
from shared.camel import CamelModel, CamelView
from shared.flow_control import GroupPolicy, RateLimit
from shared.status import JobStatus

# Ids a client chooses (options.jobId) never contain ':'; ids the service makes (schedule
# firings, later flows and internal work) always do, so no client can create or block them.
CLIENT_JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"  # any job id: the client's or the service's
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
# GET /jobs/dashboard and GET /jobs/user are routes (seed 001): a job of that id could not be read.
RESERVED_JOB_IDS = frozenset({"dashboard", "user"})
TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
MAX_DATA_SCHEMA_BYTES = 16 * 1024  # a target's dataSchema is stored in its (small) item
# Seed 003's generic task written at the top of a POST /jobs body (shared/catalog.py runs it).
GENERIC_TASK_TYPE = "generic-task"
GENERIC_TASK_FIELDS = ("service", "method", "args", "kwargs", "name")


class BackoffType(StrEnum):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"


class Backoff(CamelModel):
    type: BackoffType = BackoffType.EXPONENTIAL
    delay: int = Field(default=1000, ge=0, le=12 * 3600 * 1000, description="Base delay in milliseconds.")
    jitter: float | None = Field(
        default=None, ge=0, le=1, exclude_if=lambda v: v is None,  # shown as {type, delay} unless given
        description="The share of each wait that is random (0..1), so failures do not retry in lockstep; "
        "absent: 0.5 for exponential, 0 for fixed. A job type with a custom backoff registered uses that instead.",
    )


DedupMode = Literal["simple", "throttle", "debounce", "keepLastIfActive"]


class Deduplication(CamelModel):
    """While a job created with this key is alive, creating another returns it (per user and queue).

    ``mode`` (BullMQ's names): ``simple`` (the default without ``ttl``): until the job finishes;
    ``throttle`` (the default with ``ttl``): new jobs with the key are ignored for ``ttl``;
    ``debounce``: the newest job's data replaces the pending one's and its delay restarts;
    ``keepLastIfActive``: at most one active and one waiting per key, newest data wins (the waiting one starts once the active one ended).
    """

    key: str = Field(min_length=1, max_length=256)
    mode: DedupMode | None = Field(default=None, description="simple | throttle | debounce | keepLastIfActive.")

    @model_validator(mode="after")
    def _mode_needs(self) -> Deduplication:
        if self.mode == "throttle" and self.ttl_seconds is None:
            raise ValueError("mode throttle needs ttl (seconds the key holds)")
        return self

    @field_validator("key")
    @classmethod
    def _strict(cls, key: str) -> str:
        return strict_json.check(key, "options.deduplication.key")
    ttl_seconds: int | None = Field(
        default=None, ge=1, le=7 * 86400, description="How long the key holds; if absent, until the job finishes."
    )


WEBHOOK_EVENTS = ("job:waiting", "job:delayed", "job:active", "job:progress", "job:completed", "job:failed", "job:cancelled", "job:stalled")
WebhookEvent = Literal["job:waiting", "job:delayed", "job:active", "job:progress", "job:completed", "job:failed", "job:cancelled", "job:stalled"]
DEFAULT_WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("job:completed", "job:failed", "job:cancelled")


class WebhookOptions(CamelModel):
    """``options.webhook`` (and a queue's default): these events of the job are POSTed to ``url``, signed."""

    url: str = Field(max_length=2048, description="https only on AWS (http to 127.0.0.1 in the local stack).")
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(DEFAULT_WEBHOOK_EVENTS),
        min_length=1,
        max_length=len(WEBHOOK_EVENTS),
        description="Which events to send; the endings by default. job:progress is coalesced to one a second.",
    )

    @field_validator("url")
    @classmethod
    def _absolute(cls, url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("url must start with https://")
        return url

    def check_url(self, *, allow_loopback_http: bool, resolve: Resolver | None = None) -> None:
        """The address rules of HTTP targets (HttpTarget.check_url): raise ValueError when broken."""
        HttpTarget(url=self.url).check_url(allow_loopback_http=allow_loopback_http, resolve=resolve)


class AttemptUsage(CamelModel):
    """What one attempt used (shared/usage.py): the consumer's share; a target function bills its own."""

    duration_ms: int
    memory_size_mb: int | None = Field(default=None, description="The consumer function's configured memory.")
    peak_memory_mb: int | None = Field(default=None, description="The consumer process's peak resident memory when the attempt ended.")
    # Whole numbers: the job item stores its history as DynamoDB numbers, which floats are not.
    cost_nano_usd: int = Field(
        description="Lambda list price of the attempt in billionths of a dollar: its GB-seconds plus its share of the invocation's request charge."
    )


class AttemptRecord(CamelModel):
    attempt: int
    started_at: str
    ended_at: str | None = None
    outcome: Literal["completed", "failed", "retrying", "stalled", "cancelled", "interrupted", "waiting-children", "timed_out"] | None = None
    error: str | None = None
    usage: AttemptUsage | None = None


class FailurePolicy(StrEnum):
    """What a flow child's failure does to its parent (BullMQ's names)."""

    FAIL_PARENT = "failParentOnFailure"  # the default: the parent fails, and up the tree
    CONTINUE_PARENT = "continueParentOnFailure"  # the parent starts at once
    IGNORE_DEPENDENCY = "ignoreDependencyOnFailure"  # recorded as ignored; the parent goes on waiting for the others
    REMOVE_DEPENDENCY = "removeDependencyOnFailure"  # forgotten; the parent goes on waiting for the others


class ParentLink(CamelView):
    """A flow child's parent (same owner): which job waits for it, and what this child's failure does to it."""

    job_id: str
    queue: str
    on_failure: FailurePolicy = FailurePolicy.FAIL_PARENT
    root: str | None = None  # the flow's root (None on links written before it was kept: the parent is the root)


class Job(CamelView):
    """A job as stored: the source of truth (the SQS message only carries its id)."""

    job_id: str
    queue: str
    type: str
    user_id: str
    status: JobStatus
    data: dict[str, Any] = Field(default_factory=dict)
    priority: int = 0
    attempts: int = 0  # attempts started so far
    max_attempts: int = 3
    backoff: Backoff = Field(default_factory=Backoff)
    delay: int = 0
    progress: Any = 0
    progress_message: str | None = None
    result: Any = None
    error: str | None = None
    processing_time: int | None = None  # ms of the last attempt that ran to an end
    created_at: str
    updated_at: str
    run_at: str | None = None  # when a delayed job is due
    started_at: str | None = None
    completed_at: str | None = None
    failed_at: str | None = None
    cancelled_at: str | None = None
    lease_until: int | None = None  # epoch ms; an active job past it has stalled
    lease_token: str | None = None
    cancel_requested: bool = False
    retries: int = 0  # manual retries (POST /jobs/{id}/retry)
    acting_client: str | None = None  # the service client that created it for user_id
    # The back-pressure counters this job holds a place in until it finishes ("queue", "user";
    # shared/admission.py): the stream gives the place back, so only jobs that took one do.
    held: list[str] | None = None
    version: int = 1
    history: list[AttemptRecord] = Field(default_factory=list)
    webhook: WebhookOptions | None = None
    timeout: int | None = None  # ms per attempt (options.timeout or the queue's defaultTimeout at creation)
    group: str | None = None  # the group key (shared/flow_control.py)
    # keepLastIfActive: a digest of its owner, queue and dedup key; at most one job holding it is active
    # (a slot with a built-in maxActive of 1, shared/flow_control.py), whatever the queue's policy.
    exclusive_key: str | None = None
    # Where data and result are when too large for the item (shared/adapters/payloads.py): read
    # from the store, never dumped (the repository writes them; clients never see them).
    data_ref: str | None = Field(default=None, exclude=True)
    result_ref: str | None = Field(default=None, exclude=True)
    parent: ParentLink | None = None  # a flow child's parent
    has_children: bool = False  # a flow's parent (POST /flows, or its processor added children)
    # Enqueued by the EventsFunction when its item is inserted (jobs a processor added: the consumer
    # may send only to its own queue; the stream sends to any).
    outbox: bool = False

    def flow_id(self) -> str | None:
        """The root of the flow this job is part of: its parent's root, itself if it is a parent; None if neither."""
        if self.parent is not None:
            return self.parent.root or self.parent.job_id
        return self.job_id if self.has_children else None


class BreakerSettings(CamelModel):
    """A target's circuit breaker (shared/breakers.py): opens when enough recent attempts fail."""

    failure_rate: float = Field(default=0.5, gt=0, le=1, description="Open when at least this share of the window's attempts failed...")
    minimum_attempts: int = Field(default=20, ge=1, le=10_000, description="...and the window holds at least this many attempts.")
    window_seconds: int = Field(default=60, ge=5, le=3600, description="The window attempts are counted in.")
    cooldown_seconds: int = Field(default=30, ge=1, le=3600, description="How long it stays open before one probe job tests the target.")


class _TargetModel(CamelModel):
    @model_serializer(mode="wrap")
    def _no_breaker_no_key(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A target without a breaker or a health check reads as it did before they existed (no "breaker": null).
        data = handler(self)
        if isinstance(data, dict):
            for key in ("breaker", "healthUrl", "health_url", "healthCheck", "health_check"):
                if key in data and data[key] is None:
                    data.pop(key)
        return data


class HttpTarget(_TargetModel):
    """``PUT /queues/{name}/processors/{type}``: jobs of this type are POSTed to ``url``."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"kind": "http", "url": "https://worker.example.com/jobs", "timeoutSeconds": 30}]},
    )

    kind: Literal["http"] = "http"
    url: str = Field(max_length=2048)
    timeout_seconds: float = Field(default=30, gt=0, le=900)
    data_schema: dict[str, Any] | None = Field(
        default=None, description="A JSON Schema (2020-12) the job's data must satisfy: checked at creation, a 400 naming the fields."
    )
    retry_on: list[int] | None = Field(
        default=None, max_length=50, description="HTTP statuses that are retried; any other non-2xx fails at once. Default: 5xx, 408, 425, 429."
    )
    fail_on: list[int] = Field(
        default_factory=list, max_length=50, description="HTTP statuses that fail the job at once (e.g. 503 from a target that never recovers)."
    )
    cancel_url: str | None = Field(
        default=None, max_length=2048, description="POSTed {jobId, userId, queue, type, event: 'cancelled'} when a job it works on is cancelled."
    )
    health_url: str | None = Field(
        default=None,
        max_length=2048,
        description="GET by the HealthFunction each run (the url's address rules apply); anything but a 2xx within a few seconds "
        "reports the target unreachable in the queue's health.",
    )

    @field_validator("retry_on", "fail_on")
    @classmethod
    def _statuses(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and not all(300 <= status <= 599 for status in value):
            raise ValueError("statuses are 300 to 599 (a 2xx always completes the job)")
        return value

    @field_validator("data_schema")
    @classmethod
    def _schema_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and json_size(value) > MAX_DATA_SCHEMA_BYTES:
            raise ValueError(f"dataSchema is at most {MAX_DATA_SCHEMA_BYTES} bytes")
        return value

    def check_data_schema(self) -> None:
        """Raise ValueError unless ``dataSchema`` is a valid JSON Schema (checked when the target is
        registered, not each time it is read: the consumer never imports jsonschema)."""
        if self.data_schema is None:
            return
        from jsonschema import Draft202012Validator, SchemaError

        try:
            Draft202012Validator.check_schema(self.data_schema)
        except SchemaError as err:
            raise ValueError(f"dataSchema is not a valid JSON Schema: {err.message}") from None

    def data_problems(self, data: dict[str, Any]) -> list[str]:
        """``data.<field>: <what is wrong>`` for each way ``data`` breaks ``dataSchema`` (none: [])."""
        if self.data_schema is None:
            return []
        from jsonschema import Draft202012Validator

        try:
            errors = sorted(Draft202012Validator(self.data_schema).iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
        except Exception as err:  # a $ref that resolves nowhere (remote documents are never fetched): still the caller's 400
            return [f"data: the type's dataSchema cannot be applied ({type(err).__name__}); ask an admin to fix it"]
        return [".".join(["data", *(str(p) for p in error.absolute_path)]) + f": {error.message}" for error in errors[:20]]

    def is_retried(self, status: int) -> bool:
        """The target's rule for a non-2xx answer: True to retry, False to fail the job at once."""
        if status in self.fail_on:
            return False
        if self.retry_on is not None:
            return status in self.retry_on
        return status >= 500 or status in (408, 425, 429)
    breaker: BreakerSettings | None = Field(default=None, description="A circuit breaker for this target; none: no breaker (and no cost).")

    def check_url(self, *, allow_loopback_http: bool, resolve: Resolver | None = None) -> None:
        """Raise ValueError unless the URL (and the cancelUrl) may be called.

        On AWS (``allow_loopback_http`` false): https only, and every address the host
        resolves to is public (no loopback, link-local such as 169.254.169.254, private,
        shared, reserved or multicast). The local stack also allows http to loopback and
        does not resolve names (tests never leave 127.0.0.1); address literals are checked.
        """
        for name, url in (("url", self.url), ("cancelUrl", self.cancel_url), ("healthUrl", self.health_url)):
            if url is not None:
                _check_url(name, url, allow_loopback_http=allow_loopback_http, resolve=resolve)

    @field_validator("url", "cancel_url", "health_url")
    @classmethod
    def _absolute(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
            raise ValueError("url must not contain spaces, CR, LF or other control characters")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("url must start with https://")
        if parts.username or parts.password:
            raise ValueError("url must not carry credentials")
        try:
            parts.port  # noqa: B018 - raises for a port out of range
        except ValueError as err:
            raise ValueError("url has an invalid port") from err
        return url


Resolver = Callable[[str, int], list[str]]

# arn:aws:lambda:<region>:<account>:function:<name>[:<alias or version>]
LAMBDA_ARN_PATTERN = r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}(:(\$LATEST|[A-Za-z0-9_-]{1,128}))?$"
ERROR_TYPE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$"


class LambdaTarget(_TargetModel):
    """``PUT /queues/{name}/processors/{type}`` with ``kind: lambda``: jobs of this type invoke a function.

    The function is invoked synchronously (RequestResponse) with ``{jobId, userId, queue, type,
    data, attempt, maxAttempts}``; what it returns is the job's result. A function error is
    retried with the job's backoff, unless its ``errorType`` is listed in ``permanentErrors``
    (the job fails at once). Only functions listed in the stack's ``LambdaTargetArns`` may be
    registered: the consumers' roles may invoke those and no other.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "lambda",
                    "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:thumbnailer:live",
                    "timeoutSeconds": 60,
                    "permanentErrors": ["InvalidInput"],
                }
            ]
        },
    )

    kind: Literal["lambda"] = "lambda"
    function_arn: str = Field(max_length=300, pattern=LAMBDA_ARN_PATTERN, description="The function's ARN, with an alias or version if any.")
    timeout_seconds: float = Field(default=30, gt=0, le=900, description="How long the consumer waits for the function's answer.")
    permanent_errors: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="errorType values (the exception's class name in Python) that fail the job at once instead of retrying.",
    )
    health_check: bool | None = Field(
        default=None,
        description="The HealthFunction reads the function's state (GetFunction) each run; not Active: reported unreachable. "
        "On unless false.",
    )
    breaker: BreakerSettings | None = Field(default=None, description="A circuit breaker for this target; none: no breaker (and no cost).")

    @field_validator("permanent_errors")
    @classmethod
    def _error_types(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(ERROR_TYPE_PATTERN, name):
                raise ValueError(f"'{name[:60]}' is not an error type name")
        return names


# arn:aws:states:<region>:<account>:stateMachine:<name>
STATE_MACHINE_ARN_PATTERN = r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$"
MAX_EXECUTION_SECONDS = 365 * 86400  # a standard workflow runs at most a year


class StateMachineTarget(_TargetModel):
    """``PUT /queues/{name}/processors/{type}`` with ``kind: stepfunctions``: jobs of this type start an execution.

    The consumer starts an execution of the state machine with ``{jobId, userId, queue, type,
    data, attempt, maxAttempts}`` and returns; the job stays ``active`` until the execution ends
    (EventBridge's status-change event, shared/executions.py). Its output is the job's result;
    a failed or timed-out execution is retried with the job's backoff, unless its ``error`` is
    listed in ``permanentErrors``. Cancelling the job stops the execution. Only state machines
    listed in the stack's ``StateMachineTargetArns`` may be registered.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "stepfunctions",
                    "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:order-fulfilment",
                    "timeoutSeconds": 3600,
                    "permanentErrors": ["InvalidOrder"],
                }
            ]
        },
    )

    kind: Literal["stepfunctions"] = "stepfunctions"
    state_machine_arn: str = Field(max_length=300, pattern=STATE_MACHINE_ARN_PATTERN, description="The state machine's ARN.")
    timeout_seconds: float = Field(
        default=3600,
        gt=0,
        le=MAX_EXECUTION_SECONDS,
        description="How long the job holds its lease while the execution runs (no stall sweep before); "
        "give the state machine a TimeoutSeconds no longer than this.",
    )
    permanent_errors: list[str] = Field(
        default_factory=list, max_length=20, description="Execution error names (a Fail state's Error) that fail the job at once."
    )
    # No circuit breaker: an attempt ends in its execution's event, not in the consumer that guards a target.
    breaker: ClassVar[None] = None

    @field_validator("permanent_errors")
    @classmethod
    def _error_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(ERROR_TYPE_PATTERN, name):
                raise ValueError(f"'{name[:60]}' is not an error name")
        return names


def _target_kind(value: Any) -> str:
    # A body (or a stored target) without "kind" is an HTTP target, as before targets had kinds.
    kind = value.get("kind", "http") if isinstance(value, dict) else getattr(value, "kind", "http")
    return kind if kind in ("http", "lambda", "stepfunctions") else "http"


ProcessorTarget = Annotated[
    Annotated[HttpTarget, Tag("http")] | Annotated[LambdaTarget, Tag("lambda")] | Annotated[StateMachineTarget, Tag("stepfunctions")],
    Discriminator(_target_kind),
]
AnyTarget = HttpTarget | LambdaTarget | StateMachineTarget


@functools.cache
def _target_adapter() -> TypeAdapter[AnyTarget]:
    """Built at the first stored target read, not at import (a cold start that reads none skips it)."""
    return TypeAdapter(ProcessorTarget)


def parse_target(raw: str) -> AnyTarget:
    """A stored target (its JSON); one stored before targets had kinds is an HTTP target."""
    return _target_adapter().validate_json(raw)


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as err:
        raise ValueError(f"url's host {host} does not resolve") from err
    return [str(info[4][0]) for info in infos]


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _addresses(host: str, port: int, resolve: Resolver) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    literal = _address(host)
    if literal is not None:
        return [literal]
    found = [a for a in (_address(text.split("%")[0]) for text in resolve(host, port)) if a is not None]
    if not found:
        raise ValueError(f"url's host {host} does not resolve")
    return found


def _check_url(name: str, url: str, *, allow_loopback_http: bool, resolve: Resolver | None) -> None:
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise ValueError(f"{name} must be an absolute URL with a host")
    if allow_loopback_http:
        if parts.scheme == "http" and not _is_loopback(host):
            raise ValueError(f"{name} must be https, or http to 127.0.0.1/localhost in the local stack")
        literal = _address(host)
        if literal is not None and not literal.is_loopback and not literal.is_global:
            raise ValueError(f"{name} must not point to a private, link-local or reserved address ({literal})")
        return
    if parts.scheme != "https":
        raise ValueError(f"{name} must be https")
    for address in _addresses(host, parts.port or 443, resolve or _resolve):
        if not address.is_global or address.is_multicast:
            raise ValueError(f"{name} must not point to a loopback, private, link-local or reserved address ({host} is {address})")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    address = _address(host)
    return address is not None and address.is_loopback


class QueueInfo(CamelView):
    """What the stack publishes about one queue (one SSM parameter per queue, infra/queue.yaml)."""

    name: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    consumer_function: str = ""
    event_source_mapping_id: str = ""
    batch_size: int = 10
    max_concurrency: int = 2
    visibility_timeout: int = 900
    consumer_timeout: int = 900  # seconds the consumer Lambda may run
    max_receive_count: int = 25
    default_attempts: int = 3
    default_backoff_type: BackoffType = BackoffType.EXPONENTIAL
    default_backoff_delay: int = 1000
    webhook_secret_arn: str = ""  # the queue's webhook signing secret (Secrets Manager)
    description: str = ""  # the template's QueueDescription; PATCH /queues/{name} may override it


DLQ_RETENTION_SECONDS = 14 * 86400  # a DLQ's MessageRetentionPeriod (infra/queue.yaml): SQS's maximum


class Retention(CamelModel):
    """How long finished jobs are kept (BullMQ's removeOnComplete / removeOnFail)."""

    max_age_seconds: int | None = Field(default=None, ge=60, le=10 * 366 * 86400, description="Remove finished jobs older than this (at most 10 years).")
    max_count: int | None = Field(default=None, ge=0, le=10_000_000, description="Keep at most the newest N finished jobs.")


class QueuePolicy(CamelModel):
    """A queue's runtime policy: stored in DynamoDB (QUEUE#<name> / POLICY), seeded from the template's defaults."""

    default_attempts: int = Field(default=3, ge=1, le=20)
    default_backoff: Backoff = Field(default_factory=Backoff)
    remove_on_complete: Retention = Field(default_factory=lambda: Retention(max_age_seconds=7 * 86400, max_count=10_000))
    # As long as SQS keeps the job's DLQ copy (14 days, its maximum; infra/queue.yaml), so a
    # redrive of all dead letters finds every failed job.
    remove_on_fail: Retention = Field(default_factory=lambda: Retention(max_age_seconds=DLQ_RETENTION_SECONDS, max_count=10_000))
    paused: bool = False
    access: QueueAccess = Field(default_factory=QueueAccess)
    # Back-pressure (shared/admission.py): unfinished = waiting, delayed, active, stalled.
    max_unfinished_jobs: int | None = Field(default=None, ge=1, le=100_000_000)
    max_unfinished_jobs_per_user: int | None = Field(default=None, ge=1, le=100_000_000)
    webhook: WebhookOptions | None = None  # the default of jobs without options.webhook
    description: str | None = Field(default=None, max_length=256, description="Shown by GET /queues; the template's when absent.")
    # Flow control (shared/flow_control.py): enforced by the consumer at claim.
    rate_limit: RateLimit | None = None
    default_timeout: int | None = Field(default=None, ge=100, le=15 * 60 * 1000)
    groups: GroupPolicy | None = None
    max_concurrency: int | None = Field(default=None, ge=2, le=1000)  # set on the event source mapping by PATCH

    def expires_at(self, status: JobStatus, finished_ms: int) -> int | None:
        """The TTL (epoch seconds) of a job that just finished in ``status``: its retention by age.

        DynamoDB's TTL removes it for free; the CleanupFunction applies counts and catches
        what TTL has not reached yet. None: kept until a count limit or a clean removes it.
        """
        retention = self.remove_on_complete if status is JobStatus.COMPLETED else self.remove_on_fail
        if retention.max_age_seconds is None:
            return None
        return finished_ms // 1000 + retention.max_age_seconds

    @classmethod
    def defaults_for(cls, queue: QueueInfo) -> QueuePolicy:
        return cls(
            default_attempts=queue.default_attempts,
            default_backoff=Backoff(type=queue.default_backoff_type, delay=queue.default_backoff_delay),
        )


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def representable(value: datetime | None, field: str) -> datetime | None:
    """``value`` if it is a time jobq can store and schedule (1970 to 9000, UTC); ValueError otherwise."""
    if value is None:
        return None
    try:
        utc = value.astimezone(UTC) if value.utcoffset() is not None else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError) as err:
        raise ValueError(f"{field} is not a representable time") from err
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"{field} must be between 1970 and 9000")
    return value


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


class QueueDepth(CamelModel):
    """SQS's approximate message counts of the queue: wake-up calls, not jobs (the counters count jobs).

    A dead-letter queue's depth is its ``visible`` plus ``in_flight``: a dead letter being peeked
    or redriven is still there (``shared.adapters.queues.dead_letters_in``)."""

    visible: int = Field(default=0, description="Waiting to be received.")
    in_flight: int = Field(default=0, description="Received by a consumer (or a peek) and not yet deleted.")
    delayed: int = Field(default=0, description="Sent with a delay that has not run out.")


@dataclass(frozen=True, order=True)
class JobRef:
    """A job's address: its owner's user id and its id (unique per owner, not globally)."""

    user_id: str
    job_id: str

    @classmethod
    def of(cls, job: Job) -> JobRef:
        return cls(job.user_id, job.job_id)
