"""Settings from the environment: one model, read once per cold start."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOBQ_", extra="ignore")

    table_name: str = "jobq"
    # Every queue publishes one SSM parameter under this path (infra/queue.yaml).
    queues_parameter_path: str = "/jobq/queues/"
    queue_cache_seconds: int = 60
    target_cache_seconds: int = 5

    # Identity: API Gateway's JWT authorizer fills in the claims.
    admin_groups_claim: str = "cognito:groups"
    admin_group: str = "admin"

    max_data_bytes: int = 256 * 1024
    max_result_bytes: int = 128 * 1024
    max_attempts_limit: int = 20
    max_delay_ms: int = 15 * 60 * 1000
    backoff_cap_seconds: int = 3600
    finished_job_ttl_days: int = 30
    # Used when a handler has no Lambda context to say how long it may run.
    default_lease_seconds: int = 900

    # Only the local stack sets this: plain http targets on loopback.
    allow_loopback_http_targets: bool = False

    # Example processors (functions/processors/examples.py).
    reports_bucket: str = ""
    email_sender: str = "jobq@example.com"
    video_step_seconds: float = Field(default=0.2, ge=0)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
