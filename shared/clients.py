"""boto3 clients, created once per container (per process), never per record.

``AWS_ENDPOINT_URL`` (set by the local stack) points every client at moto.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)


@cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CONFIG)


def reset() -> None:
    """Forget every client (tests switch endpoints between runs)."""
    client.cache_clear()
