"""Settings from the environment: one class, read and validated once per cold start.

Each field ``name`` comes from ``JOBQ_<NAME>``. ``table_name`` and ``queues_parameter_path``
have no default: a function deployed without them stops at its cold start (the composition
roots call ``validate_at_cold_start`` when they are imported inside Lambda) with one error naming
every missing or invalid variable, instead of failing later on a wrong table. Only the composition
roots (functions/composition.py, functions/realtime/services.py, api/deps.py) call ``get_settings``;
the use cases and adapters are given the settings they need, the module-level counters, policies and
queue directory through shared/adapters/configuration.py (tests/unit/test_composition.py asserts it).

Not a pydantic model: every function's cold start reads these, and a 100-field model cost ~6 ms
to build (and kept pydantic on the import path of whatever reads only settings). The reader below
parses a variable as pydantic does a string (tests/unit/test_settings.py compares them) and words
its errors the same way.
"""

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Self, dataclass_transform, get_args, get_origin

ENV_PREFIX = "JOBQ_"


class ConfigurationError(RuntimeError):
    """The function's environment is missing or breaks a setting: a deployment error."""


class Secret:
    """A value kept out of reprs and logs (``get_secret_value`` reads it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Bounds:
    """A setting's limits, checked when it is read from the environment."""

    __slots__ = ("ge", "gt", "le", "min_length")

    def __init__(self, *, ge: float | None = None, gt: float | None = None, le: float | None = None, min_length: int | None = None) -> None:
        self.ge, self.gt, self.le, self.min_length = ge, gt, le, min_length

    def problem(self, value: Any) -> str | None:
        # In pydantic's order, written "not value <= bound" so that NaN breaks every bound as it does there.
        if self.min_length is not None and len(value) < self.min_length:
            return f"String should have at least {self.min_length} character{'' if self.min_length == 1 else 's'}"
        if self.le is not None and not value <= self.le:
            return f"Input should be less than or equal to {self.le}"
        if self.ge is not None and not value >= self.ge:
            return f"Input should be greater than or equal to {self.ge}"
        if self.gt is not None and not value > self.gt:
            return f"Input should be greater than {self.gt}"
        return None


_INTEGER = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?")
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def _integer(text: str) -> int:
    stripped = text.strip()
    if not _INTEGER.fullmatch(stripped):
        raise ValueError("Input should be a valid integer, unable to parse string as an integer")
    return int(stripped.split(".")[0])


def _number(text: str) -> float:
    try:
        if not text.isascii():
            raise ValueError
        return float(text)
    except ValueError:
        raise ValueError("Input should be a valid number, unable to parse string as a number") from None


def _boolean(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError("Input should be a valid boolean, unable to interpret input")


_PARSERS: dict[type, Any] = {str: str, int: _integer, float: _number, bool: _boolean, Secret: Secret}
_REQUIRED = object()


def parse_setting(kind: type, bounds: Bounds | None, text: str) -> Any:
    """``text`` (an environment variable) as a setting of ``kind``; ValueError says why not."""
    value = _PARSERS[kind](text)
    problem = bounds.problem(value) if bounds is not None else None
    if problem:
        raise ValueError(problem)
    return value


@dataclass_transform(kw_only_default=True)
class _SettingsBase:
    """Fields are the class's annotations, defaults its values: a dataclass to type checkers, built
    without generating code (a generated __init__ of 100 fields costs as much as the pydantic model).
    ``from_environ`` parses and checks each variable; made from keywords (tests), values are kept as given."""

    _fields: ClassVar[dict[str, tuple[type, Bounds | None, Any]]]

    def __init_subclass__(cls) -> None:
        fields: dict[str, tuple[type, Bounds | None, Any]] = {}
        for name, annotation in cls.__annotations__.items():
            if get_origin(annotation) is ClassVar:
                continue
            kind, bounds = annotation, None
            if get_origin(annotation) is Annotated:
                kind, bounds = get_args(annotation)[:2]
            fields[name] = (kind, bounds, cls.__dict__.get(name, _REQUIRED))
        cls._fields = fields

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(self._fields))
        missing = [name for name, (_, _, default) in self._fields.items() if default is _REQUIRED and name not in values]
        if unknown or missing:
            raise TypeError(f"{type(self).__name__}: unknown {unknown}, missing {missing}")
        self.__dict__.update(values)

    def values(self) -> dict[str, Any]:
        """Every setting, the defaults included."""
        return {name: getattr(self, name) for name in self._fields}

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes``."""
        return type(self)(**{**self.values(), **changes})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.values().items())})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.values() == self.values()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value


class Settings(_SettingsBase):
    table_name: Annotated[str, Bounds(min_length=1)]
    # Every queue publishes one SSM parameter under this path (infra/queue.yaml).
    queues_parameter_path: Annotated[str, Bounds(min_length=1)]
    queue_cache_seconds: int = 60
    target_cache_seconds: int = 5
    # How often a consumer waiting on an HTTP target looks whether the job was cancelled (one read each).
    http_cancel_poll_seconds: Annotated[float, Bounds(gt=0, le=60)] = 1.0

    # Identity: API Gateway's JWT authorizer fills in the claims.
    admin_groups_claim: str = "cognito:groups"
    admin_group: str = "admin"
    # Issue 19 (shared/access.py): the read-only operator group, and the OAuth scope that marks a
    # client-credentials token as a service client acting for users.
    reader_group: str = "readonly"
    service_client_scope: str = "jobq/on-behalf-of"
    audit_retention_days: Annotated[int, Bounds(ge=1, le=3650)] = 365
    backpressure_retry_after_seconds: Annotated[int, Bounds(ge=1, le=3600)] = 5  # a full queue's Retry-After (x12 when paused)
    # Per-user quotas (shared/quotas.py), the stack's UserJobsPerMinute / UserMaxUnfinishedJobs; 0: no limit.
    user_jobs_per_minute: Annotated[int, Bounds(ge=0)] = 0
    user_max_unfinished_jobs: Annotated[int, Bounds(ge=0)] = 0
    # The stack's QuotaBlockSize: creates and places an API container takes of a user's quotas in one
    # write and spends locally (shared/quotas.py); 1: one write per create, nothing held.
    quota_block_size: Annotated[int, Bounds(ge=1, le=100)] = 1
    # The stack's EnqueueFromStream: a new job's SQS message is sent by the EventsFunction from the
    # table's stream (the outbox, SendMessageBatch), not by the API (shared/jobs.py).
    enqueue_from_stream: bool = False

    # Past a few KB they are stored in S3 (the claim check, shared/adapters/payloads.py); 5 MB keeps a
    # job's answer inside Lambda's 6 MB response and API Gateway's 10 MB request (README).
    max_data_bytes: int = 5_000_000
    max_result_bytes: int = 5_000_000
    backoff_cap_seconds: int = 3600
    # A job whose group key has maxActive running waits 1, 2, 4 ... up to this many seconds between looks.
    group_slot_wait_cap_seconds: Annotated[int, Bounds(ge=1, le=900)] = 10
    log_ttl_days: int = 30  # job log lines expire by TTL (finished jobs expire by their queue's retention)
    # Used when a handler has no Lambda context to say how long it may run.
    default_lease_seconds: int = 900

    # Queues (issue 4): runtime policy cache, metric bucket lifetimes, admin request budgets.
    policy_cache_seconds: Annotated[float, Bounds(ge=0)] = 5
    # The health sweep leaves a consumer mapping changed this recently alone: a pause or resume is
    # in flight (its mapping is written before its policy); a deploy's reset is still there next sweep.
    consumer_settle_seconds: Annotated[float, Bounds(ge=0)] = 30
    minute_bucket_retention_hours: Annotated[int, Bounds(ge=2)] = 48
    hour_bucket_retention_days: Annotated[int, Bounds(ge=2)] = 35
    dead_letter_peek_seconds: Annotated[int, Bounds(ge=1, le=300)] = 10
    admin_request_budget_seconds: Annotated[float, Bounds(gt=0)] = 20

    # The dashboard (/dashboard) hides and disables every change: for operators who must only look.
    dashboard_read_only: bool = False
    # Listing cursors are signed (api/cursors.py): on AWS with the stack's secret, locally with
    # a key the local stack generates per run.
    cursor_secret_arn: str = ""
    cursor_key: Secret = Secret("")

    # Only the local stack sets this: plain http targets on loopback.
    allow_loopback_http_targets: bool = False
    # Lambda targets (issue 18): the function ARNs a job type may be registered to invoke,
    # comma-separated (template.yaml LambdaTargetArns; the consumers' roles may invoke exactly these).
    lambda_target_arns: str = ""
    # Step Functions targets: the state machines a job type may start (template.yaml StateMachineTargetArns).
    state_machine_target_arns: str = ""
    # Circuit breakers per target (shared/breakers.py): the defaults a target's own settings override.
    breaker_cache_seconds: Annotated[float, Bounds(ge=0)] = 2

    # EventBridge Scheduler (shared/adapters/scheduler.py): the stack's schedule group, the role its
    # schedules assume, and the function recurring schedules invoke.
    schedule_group: str = ""
    scheduler_role_arn: str = ""
    scheduler_target_arn: str = ""
    # Where failed firings of schedules go (template.yaml ScheduleFiringsDeadLetterQueue): the schedules'
    # DeadLetterConfig (ARN) and the HealthFunction's report (URL).
    schedule_dead_letters_arn: str = ""
    schedule_dead_letters_url: str = ""
    max_run_at_days: int = 366  # how far ahead options.runAt / delay may reach
    # Maintenance (shared/health.py, shared/retention.py): orphans, stalled jobs, queue health, retention.
    orphan_grace_seconds: int = 120  # waiting/overdue this long without being picked up: wake it
    flow_orphan_grace_seconds: Annotated[int, Bounds(ge=1)] = 600  # a staged POST /flows this old and unfinished: removed or released
    orphan_resend_seconds: int = 3600  # ...at most once per this many seconds per job
    maintenance_batch: int = 100  # jobs read per queue and status per run and page
    # Write shards of the jobs table's shared index keys (template.yaml's IndexShards): a queue's
    # or a user's index writes spread over this many partition keys. Only ever raised.
    index_shards: Annotated[int, Bounds(ge=1, le=64)] = 8
    # How many of a queue's newest index entries the health sweep reads for waiting and active
    # jobs (not indexed by state: docs/data-model.md).
    sweep_scan_entries: Annotated[int, Bounds(ge=10)] = 2000
    health_failure_rate: float = 0.10  # over this in the last hour: error
    health_min_finished: int = 10  # finished jobs in the hour before the failure rate counts
    health_max_waiting: int = 100  # more waiting: warning
    health_oldest_warning_seconds: int = 300  # oldest waiting job older: warning
    health_oldest_error_seconds: int = 1800  # ...: error
    recount_interval_seconds: Annotated[int, Bounds(ge=60)] = 3600  # counters checked against Queries this often
    events_failed_batches_url: str = ""  # template.yaml EventsFailedBatches: discarded stream batches
    health_check_rate: str = "rate(5 minutes)"  # the HealthFunction's rule (GET /health/detailed: is its report fresh?)

    # Example processors (processors/examples.py).
    reports_bucket: str = ""
    email_sender: str = "jobq@example.com"
    # The send-email example's recipients (comma-separated addresses or * patterns); empty: the
    # sender's own domain. template.yaml grants SES the same list (ses:Recipients).
    email_allowed_recipients: str = ""
    video_step_seconds: Annotated[float, Bounds(ge=0)] = 0.2
    # Built-in processors (processors/builtins.py): the SNS topics publish may reach (template.yaml
    # PublishTopicArns), and how long an export's download URL may be valid.
    publish_topic_arns: str = ""
    export_url_default_seconds: Annotated[int, Bounds(ge=60)] = 3600
    export_url_max_seconds: Annotated[int, Bounds(ge=60, le=7 * 86400)] = 7 * 86400
    export_max_input_bytes: Annotated[int, Bounds(ge=1024)] = 50 * 1024 * 1024

    # Live events (shared/realtime.py): the WebSocket $connect handler checks tokens against the
    # HTTP API's issuer and audiences; connections and subscriptions live in their own table.
    jwt_issuer: str = ""
    jwt_audience: str = ""  # comma-separated, as the template joins JwtAudience
    realtime_table_name: str = ""
    websocket_endpoint: str = ""  # wss://<api>.execute-api.<region>.amazonaws.com/<stage>
    realtime_connection_ttl_seconds: Annotated[int, Bounds(ge=60)] = 3 * 3600  # API Gateway closes a connection after 2 h
    realtime_progress_interval_ms: Annotated[int, Bounds(ge=0)] = 1000  # at most one progress event per job and connection per interval
    realtime_inline_result_bytes: Annotated[int, Bounds(ge=0)] = 32 * 1024  # a larger result is sent as a pointer
    realtime_send_workers: Annotated[int, Bounds(ge=1, le=64)] = 16
    realtime_subscriber_cache_ms: Annotated[int, Bounds(ge=0)] = 1000  # progress records reuse a job's subscriber list this long
    # A queue subscription's budget per connection and second, across the queue's jobs (QueueBudget).
    realtime_queue_events_per_second: Annotated[int, Bounds(ge=1)] = 100
    realtime_queue_progress_per_second: Annotated[int, Bounds(ge=0)] = 20
    # Webhooks (shared/webhooks.py): deliveries go through an SQS queue, retried with backoff.
    webhook_queue_url: str = ""
    webhook_max_attempts: Annotated[int, Bounds(ge=1, le=50)] = 15  # with 5 s doubling to 1 h: about 6 hours of receiver downtime
    webhook_backoff_ms: Annotated[int, Bounds(ge=0)] = 5000
    webhook_backoff_cap_seconds: Annotated[int, Bounds(ge=1)] = 3600
    webhook_timeout_seconds: Annotated[float, Bounds(gt=0, le=30)] = 10
    webhook_secret_cache_seconds: Annotated[int, Bounds(ge=0)] = 300
    webhook_delivery_ttl_days: Annotated[int, Bounds(ge=1)] = 30

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, (kind, bounds, default) in cls._fields.items():
            variable = ENV_PREFIX + name.upper()
            if variable not in environ:
                if default is _REQUIRED:
                    problems.append(f"{variable}: Field required")
                continue
            try:
                values[name] = parse_setting(kind, bounds, environ[variable])
            except ValueError as err:
                problems.append(f"{variable}: {err}")
        if problems:
            raise ConfigurationError(f"the function's environment is not valid: {'; '.join(problems)}")
        return cls(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_environ()


def validate_at_cold_start(environ: Mapping[str, str] | None = None) -> None:
    """Inside Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set): read the settings now, so a missing or invalid
    variable fails the container's init, naming it. Elsewhere (tests, the local stack) nothing happens:
    they set the environment first and build the services when they use them."""
    environ = os.environ if environ is None else environ
    if environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        if environ is os.environ:
            get_settings()
        else:
            Settings.from_environ(environ)
