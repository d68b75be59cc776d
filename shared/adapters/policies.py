"""The policy store: a queue's runtime policy (default attempts and backoff, retention, paused) in DynamoDB.

Stored as one item, ``pk=QUEUE#<name> sk=POLICY`` (``policy``: the QueuePolicy as JSON,
``version``: for optimistic writes, ``updatedAt``). A queue without the item has the
template's defaults (``QueuePolicy.defaults_for``), so nothing needs seeding at deploy.

Readers (JobService.create, the CleanupFunction, GET /queues) call ``get_policy``: cached
``policy_cache_seconds`` per container, so a change is effective everywhere within seconds
and costs at most one GetItem per queue per container per interval. A writer's own cache is
updated at once.

HTTP targets stay their own items (``sk=TARGET#<type>``, shared/adapters/job_repository.py); ``delete_target``
is here because only the queue settings remove one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors
from shared.adapters.configuration import settings as adapter_settings
from shared.clock import iso, now_ms
from shared.errors import Conflict
from shared.models import QueueInfo, QueuePolicy

POLICY_SK = "POLICY"

_lock = threading.Lock()
# (table, queue) -> (read at, monotonic; the client it was read with; policy; version)
_cache: dict[tuple[str, str], tuple[float, int, QueuePolicy, int]] = {}


def _key(name: str) -> dict[str, Any]:
    return {"pk": {"S": f"QUEUE#{name}"}, "sk": {"S": POLICY_SK}}


def _ddb() -> Any:
    return clients.client("dynamodb")


def reset_cache() -> None:
    with _lock:
        _cache.clear()


def read_policy(queue: QueueInfo) -> tuple[QueuePolicy, int]:
    """The stored policy and its version (0 and the template's defaults when none is stored)."""
    table = adapter_settings().table_name
    with aws_errors(f"cannot read the policy of queue {queue.name}"):
        out = _ddb().get_item(TableName=table, Key=_key(queue.name), ConsistentRead=True)
    item = out.get("Item")
    if not item:
        policy, version = QueuePolicy.defaults_for(queue), 0
    else:
        policy, version = QueuePolicy.model_validate_json(item["policy"]["S"]), int(item["version"]["N"])
    _remember(table, queue.name, policy, version)
    return policy, version


def _remember(table: str, name: str, policy: QueuePolicy, version: int) -> None:
    with _lock:
        _cache[(table, name)] = (time.monotonic(), id(_ddb()), policy, version)


def get_policy(queue: QueueInfo) -> QueuePolicy:
    """The queue's runtime policy, at most ``policy_cache_seconds`` old."""
    settings = adapter_settings()
    with _lock:
        cached = _cache.get((settings.table_name, queue.name))
    # A cached entry read through another client (tests switch endpoints) does not count.
    if cached and time.monotonic() - cached[0] < settings.policy_cache_seconds and cached[1] == id(_ddb()):
        return cached[2]
    return read_policy(queue)[0]


def put_policy(queue: QueueInfo, policy: QueuePolicy, *, expected_version: int | None = None) -> int:
    """Store ``policy``; with ``expected_version``, only over that version (``Conflict`` otherwise). Returns the new version."""
    table = adapter_settings().table_name
    version = (expected_version or 0) + 1
    params: dict[str, Any] = {
        "TableName": table,
        "Item": {
            **_key(queue.name),
            "policy": {"S": policy.model_dump_json(by_alias=True)},
            "version": {"N": str(version)},
            "updatedAt": {"S": iso(now_ms())},
        },
    }
    if expected_version is not None:
        if expected_version == 0:
            params["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            params["ConditionExpression"] = "version = :v"
            params["ExpressionAttributeValues"] = {":v": {"N": str(expected_version)}}
    try:
        with aws_errors(f"cannot store the policy of queue {queue.name}"):
            _ddb().put_item(**params)
    except Conflict as clash:  # the condition: another writer got there first
        raise Conflict(f"the policy of queue {queue.name} changed meanwhile") from clash
    _remember(table, queue.name, policy, version)
    return version


def update_policy(queue: QueueInfo, change: Callable[[QueuePolicy], QueuePolicy], *, attempts: int = 5) -> QueuePolicy:
    """Read, change and write the policy; concurrent writers are retried, none is lost."""
    for _ in range(attempts):
        current, version = read_policy(queue)
        updated = QueuePolicy.model_validate(change(current).model_dump())
        try:
            put_policy(queue, updated, expected_version=version)
        except Conflict:
            continue
        return updated
    raise Conflict(f"the policy of queue {queue.name} kept changing; try again")


def delete_target(queue_name: str, job_type: str) -> None:
    with aws_errors(f"cannot remove the target of {queue_name}/{job_type}"):
        _ddb().delete_item(
            TableName=adapter_settings().table_name,
            Key={"pk": {"S": f"QUEUE#{queue_name}"}, "sk": {"S": f"TARGET#{job_type}"}},
        )


__all__ = ["POLICY_SK", "delete_target", "get_policy", "put_policy", "read_policy", "reset_cache", "update_policy"]
