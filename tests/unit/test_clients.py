"""boto3 clients (shared/adapters/clients.py): one per service and process, all made from one session."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.adapters import clients

SERVICES = ("sqs", "dynamodb", "s3", "lambda", "ssm", "scheduler", "stepfunctions", "secretsmanager")


@pytest.fixture
def fresh_clients(aws_env: None) -> Iterator[None]:
    clients.reset()
    yield
    clients.reset()


def test_handlers_in_threads_may_make_their_clients_at_once(fresh_clients: None) -> None:
    # The local stack runs handlers in threads; the one session is used by one of them at a time.
    with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
        made = list(pool.map(clients.client, SERVICES * 2))
    assert [c.meta.service_model.service_name for c in made] == list(SERVICES * 2)
    assert all(made[i] is made[i + len(SERVICES)] for i in range(len(SERVICES)))  # one client per service


def test_a_hook_on_one_client_does_not_reach_another(fresh_clients: None) -> None:
    # The fault tests hook one client's requests (tests/unit/faults.py); clients of one session keep their own hooks.
    seen: list[str] = []

    def record(**kwargs: Any) -> None:
        seen.append(kwargs["event_name"])

    clients.client("sqs").meta.events.register("jobq-test", record)
    clients.client("dynamodb").meta.events.emit("jobq-test")
    assert seen == []
    clients.client("sqs").meta.events.emit("jobq-test")
    assert seen == ["jobq-test"]
