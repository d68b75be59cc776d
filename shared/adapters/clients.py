"""boto3 clients, created once per container (per process), never per record.

``AWS_ENDPOINT_URL`` (set by the local stack) points every client at moto.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)


@cache
def _loader() -> Any:
    """One botocore data loader: service models are read from disk once, not once per client."""
    return botocore.loaders.create_loader()


@cache
def client(service: str) -> Any:
    # A session per client (sessions are not thread-safe; the local stack runs handlers in threads),
    # all sharing the loader.
    core = botocore.session.get_session()
    core.register_component("data_loader", _loader())
    return boto3.session.Session(botocore_session=core).client(service, config=_CONFIG)  # type: ignore[call-overload]  # the stubs want a literal service name


def reset() -> None:
    """Forget every client (tests switch endpoints between runs)."""
    client.cache_clear()
