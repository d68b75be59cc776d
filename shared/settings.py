"""Settings from the environment: one model, read and validated once per cold start.

Each field ``name`` comes from ``JOBQ_<NAME>``. ``table_name`` and ``queues_parameter_path``
have no default: a function deployed without them stops at its cold start (the composition
roots call ``validate_at_cold_start`` when they are imported inside Lambda) with one error naming
every missing or invalid variable, instead of failing later on a wrong table. Only the composition
roots (functions/composition.py, functions/realtime/services.py, api/deps.py) call ``get_settings``;
the use cases and adapters are given the settings they need, the module-level counters, policies and
queue directory through shared/adapters/configuration.py (tests/unit/test_composition.py asserts it).
(A plain pydantic model read from ``os.environ``: pydantic-settings would add its import to
every cold start for what ``from_environ`` does in a few lines.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

ENV_PREFIX = "JOBQ_"


class ConfigurationError(RuntimeError):
    """The function's environment is missing or breaks a setting: a deployment error."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table_name: str = Field(min_length=1)
    # Every queue publishes one SSM parameter under this path (infra/queue.yaml).
    queues_parameter_path: str = Field(min_length=1)
    queue_cache_seconds: int = 60
    target_cache_seconds: int = 5
    # How often a consumer waiting on an HTTP target looks whether the job was cancelled (one read each).
    http_cancel_poll_seconds: float = Field(default=1.0, gt=0, le=60)

    # Identity: API Gateway's JWT authorizer fills in the claims.
    admin_groups_claim: str = "cognito:groups"
    admin_group: str = "admin"
    # Issue 19 (shared/access.py): the read-only operator group, and the OAuth scope that marks a
    # client-credentials token as a service client acting for users.
    reader_group: str = "readonly"
    service_client_scope: str = "jobq/on-behalf-of"
    audit_retention_days: int = Field(default=365, ge=1, le=3650)
    backpressure_retry_after_seconds: int = Field(default=5, ge=1, le=3600)  # a full queue's Retry-After (x12 when paused)
    # Per-user quotas (shared/quotas.py), the stack's UserJobsPerMinute / UserMaxUnfinishedJobs; 0: no limit.
    user_jobs_per_minute: int = Field(default=0, ge=0)
    user_max_unfinished_jobs: int = Field(default=0, ge=0)
    # The stack's QuotaBlockSize: creates and places an API container takes of a user's quotas in one
    # write and spends locally (shared/quotas.py); 1: one write per create, nothing held.
    quota_block_size: int = Field(default=1, ge=1, le=100)
    # The stack's EnqueueFromStream: a new job's SQS message is sent by the EventsFunction from the
    # table's stream (the outbox, SendMessageBatch), not by the API (shared/jobs.py).
    enqueue_from_stream: bool = False

    # Past a few KB they are stored in S3 (the claim check, shared/adapters/payloads.py); 5 MB keeps a
    # job's answer inside Lambda's 6 MB response and API Gateway's 10 MB request (README).
    max_data_bytes: int = 5_000_000
    max_result_bytes: int = 5_000_000
    backoff_cap_seconds: int = 3600
    # A job whose group key has maxActive running waits 1, 2, 4 ... up to this many seconds between looks.
    group_slot_wait_cap_seconds: int = Field(default=10, ge=1, le=900)
    log_ttl_days: int = 30  # job log lines expire by TTL (finished jobs expire by their queue's retention)
    # Used when a handler has no Lambda context to say how long it may run.
    default_lease_seconds: int = 900

    # Queues (issue 4): runtime policy cache, metric bucket lifetimes, admin request budgets.
    policy_cache_seconds: float = Field(default=5, ge=0)
    # The health sweep leaves a consumer mapping changed this recently alone: a pause or resume is
    # in flight (its mapping is written before its policy); a deploy's reset is still there next sweep.
    consumer_settle_seconds: float = Field(default=30, ge=0)
    minute_bucket_retention_hours: int = Field(default=48, ge=2)
    hour_bucket_retention_days: int = Field(default=35, ge=2)
    dead_letter_peek_seconds: int = Field(default=10, ge=1, le=300)
    admin_request_budget_seconds: float = Field(default=20, gt=0)

    # The dashboard (/dashboard) hides and disables every change: for operators who must only look.
    dashboard_read_only: bool = False
    # Listing cursors are signed (api/cursors.py): on AWS with the stack's secret, locally with
    # a key the local stack generates per run.
    cursor_secret_arn: str = ""
    cursor_key: SecretStr = SecretStr("")

    # Only the local stack sets this: plain http targets on loopback.
    allow_loopback_http_targets: bool = False
    # Lambda targets (issue 18): the function ARNs a job type may be registered to invoke,
    # comma-separated (template.yaml LambdaTargetArns; the consumers' roles may invoke exactly these).
    lambda_target_arns: str = ""
    # Step Functions targets: the state machines a job type may start (template.yaml StateMachineTargetArns).
    state_machine_target_arns: str = ""
    # Circuit breakers per target (shared/breakers.py): the defaults a target's own settings override.
    breaker_cache_seconds: float = Field(default=2, ge=0)

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
    flow_orphan_grace_seconds: int = Field(default=600, ge=1)  # a staged POST /flows this old and unfinished: removed or released
    orphan_resend_seconds: int = 3600  # ...at most once per this many seconds per job
    maintenance_batch: int = 100  # jobs read per queue and status per run and page
    # Write shards of the jobs table's shared index keys (template.yaml's IndexShards): a queue's
    # or a user's index writes spread over this many partition keys. Only ever raised.
    index_shards: int = Field(default=8, ge=1, le=64)
    # How many of a queue's newest index entries the health sweep reads for waiting and active
    # jobs (not indexed by state: docs/data-model.md).
    sweep_scan_entries: int = Field(default=2000, ge=10)
    health_failure_rate: float = 0.10  # over this in the last hour: error
    health_min_finished: int = 10  # finished jobs in the hour before the failure rate counts
    health_max_waiting: int = 100  # more waiting: warning
    health_oldest_warning_seconds: int = 300  # oldest waiting job older: warning
    health_oldest_error_seconds: int = 1800  # ...: error
    recount_interval_seconds: int = Field(default=3600, ge=60)  # counters checked against Queries this often
    events_failed_batches_url: str = ""  # template.yaml EventsFailedBatches: discarded stream batches
    health_check_rate: str = "rate(5 minutes)"  # the HealthFunction's rule (GET /health/detailed: is its report fresh?)

    # Example processors (processors/examples.py).
    reports_bucket: str = ""
    email_sender: str = "jobq@example.com"
    # The send-email example's recipients (comma-separated addresses or * patterns); empty: the
    # sender's own domain. template.yaml grants SES the same list (ses:Recipients).
    email_allowed_recipients: str = ""
    video_step_seconds: float = Field(default=0.2, ge=0)
    # Built-in processors (processors/builtins.py): the SNS topics publish may reach (template.yaml
    # PublishTopicArns), and how long an export's download URL may be valid.
    publish_topic_arns: str = ""
    export_url_default_seconds: int = Field(default=3600, ge=60)
    export_url_max_seconds: int = Field(default=7 * 86400, ge=60, le=7 * 86400)
    export_max_input_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)

    # Live events (shared/realtime.py): the WebSocket $connect handler checks tokens against the
    # HTTP API's issuer and audiences; connections and subscriptions live in their own table.
    jwt_issuer: str = ""
    jwt_audience: str = ""  # comma-separated, as the template joins JwtAudience
    realtime_table_name: str = ""
    websocket_endpoint: str = ""  # wss://<api>.execute-api.<region>.amazonaws.com/<stage>
    realtime_connection_ttl_seconds: int = Field(default=3 * 3600, ge=60)  # API Gateway closes a connection after 2 h
    realtime_progress_interval_ms: int = Field(default=1000, ge=0)  # at most one progress event per job and connection per interval
    realtime_inline_result_bytes: int = Field(default=32 * 1024, ge=0)  # a larger result is sent as a pointer
    realtime_send_workers: int = Field(default=16, ge=1, le=64)
    realtime_subscriber_cache_ms: int = Field(default=1000, ge=0)  # progress records reuse a job's subscriber list this long
    # A queue subscription's budget per connection and second, across the queue's jobs (QueueBudget).
    realtime_queue_events_per_second: int = Field(default=100, ge=1)
    realtime_queue_progress_per_second: int = Field(default=20, ge=0)
    # Webhooks (shared/webhooks.py): deliveries go through an SQS queue, retried with backoff.
    webhook_queue_url: str = ""
    webhook_max_attempts: int = Field(default=15, ge=1, le=50)  # with 5 s doubling to 1 h: about 6 hours of receiver downtime
    webhook_backoff_ms: int = Field(default=5000, ge=0)
    webhook_backoff_cap_seconds: int = Field(default=3600, ge=1)
    webhook_timeout_seconds: float = Field(default=10, gt=0, le=30)
    webhook_secret_cache_seconds: int = Field(default=300, ge=0)
    webhook_delivery_ttl_days: int = Field(default=30, ge=1)


    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {name: environ[ENV_PREFIX + name.upper()] for name in cls.model_fields if ENV_PREFIX + name.upper() in environ}
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            problems = "; ".join(f"{ENV_PREFIX}{str(e['loc'][0]).upper()}: {e['msg']}" for e in err.errors())
            raise ConfigurationError(f"the function's environment is not valid: {problems}") from err


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
