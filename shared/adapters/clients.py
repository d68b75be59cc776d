"""boto3 clients, created once per container (per process), never per record.

``AWS_ENDPOINT_URL`` (set by the local stack) points every client at moto.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)
# A session is not thread-safe (the local stack runs handlers in threads): clients are made one at a time.
_creating = threading.Lock()
_clients: dict[str, Any] = {}


@cache
def _loader() -> Any:
    """One botocore data loader: service models are read from disk once, not once per client."""
    return botocore.loaders.create_loader()


@cache
def _session() -> boto3.session.Session:
    """One session for every client: the second client reuses what the first loaded (the endpoint
    rules, the credential chain, the handlers), some 6 ms of a cold start each. Clients, unlike
    sessions, may be shared by threads; each has its own copy of the event hooks."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _loader())
    return boto3.session.Session(botocore_session=core)


def client(service: str) -> Any:
    made = _clients.get(service)
    if made is None:
        with _creating:  # one client per service, even when two threads ask for it first at once
            made = _clients.get(service)
            if made is None:
                made = _clients[service] = _session().client(service, config=_CONFIG)  # type: ignore[call-overload]  # the stubs want a literal service name
    return made


def reset() -> None:
    """Forget every client and the session (tests switch endpoints and credentials between runs)."""
    with _creating:
        _clients.clear()
        _session.cache_clear()
