"""The counters' and metric buckets' items in DynamoDB: one transaction per stream batch, one read per view.

What the items hold and why a batch is applied exactly once is shared/stats.py's docstring;
this module is where they are written and read.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

from shared import admission
from shared.adapters import clients
from shared.adapters.aws_errors import AWS_ERRORS, aws_code, cancellation_reasons, domain_error
from shared.errors import Unavailable
from shared.settings import get_settings
from shared.stats import (
    BINS,
    COUNT_NAMES,
    EVENT_NAMES,
    MARKER_TTL_SECONDS,
    MAX_TRANSACTION_ACTIONS,
    PRIORITY_COUNT_NAMES,
    PRIORITY_STATUSES,
    STATS_SK,
    TYPE_PREFIX,
    USER_COST_SK,
    BatchOutcome,
    Bucket,
    QueueDelta,
    QueueStats,
    Resolution,
    aggregate,
    attribute_number,
    attribute_text,
    batch_identity,
    bucket_sk,
    bucket_start,
    is_job_record,
    type_figures,
)


def _queue_actions(table: str, queue: str, delta: QueueDelta, settings: Any) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    adds: list[str] = []
    for i, name in enumerate(COUNT_NAMES + PRIORITY_COUNT_NAMES):
        if delta.counts.get(name):
            names[f"#c{i}"] = name
            values[f":c{i}"] = {"N": str(delta.counts[name])}
            adds.append(f"#c{i} :c{i}")
    expression = ("ADD " + ", ".join(adds)) if adds else ""
    if delta.last_processed_at:
        names["#lp"] = "lastProcessedAt"
        values[":lp"] = {"S": delta.last_processed_at}
        expression += " SET #lp = :lp"
    if expression:
        actions.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": f"QUEUE#{queue}"}, "sk": {"S": STATS_SK}},
                    "UpdateExpression": expression.strip(),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
        )
    for (resolution, start), bucket in sorted(delta.buckets.items()):
        keep = settings.minute_bucket_retention_hours * 3600 if resolution == "minute" else settings.hour_bucket_retention_days * 86400
        names = {"#start": "bucketStart", "#ttl": "expiresAt"}
        values = {":start": {"N": str(start)}, ":ttl": {"N": str(start // 1000 + keep)}}
        adds = []
        for i, (name, amount) in enumerate(sorted(bucket.values.items())):
            if amount:
                names[f"#v{i}"] = name
                values[f":v{i}"] = {"N": str(amount)}
                adds.append(f"#v{i} :v{i}")
        if not adds:
            continue
        actions.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": f"QUEUE#{queue}"}, "sk": {"S": bucket_sk(resolution, start)}},
                    "UpdateExpression": "ADD " + ", ".join(adds) + " SET #start = :start, #ttl = :ttl",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
        )
    keep_hours = settings.hour_bucket_retention_days * 86400
    for (start, user), amounts in sorted(delta.user_costs.items()):
        # One small item per user and hour, under its own partition per queue (USERCOST#<queue>), in the
        # batch's exactly-once transaction: a user's cost over a window is one Query of that partition.
        actions.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": f"{USER_COST_PK}{queue}"}, "sk": {"S": f"{user_cost_prefix(start)}{user}"}},
                    "UpdateExpression": "ADD #cost :cost, #n :n SET #start = :start, #ttl = :ttl, #user = :user",
                    "ExpressionAttributeNames": {"#cost": "costNano", "#n": "attempts", "#start": "bucketStart", "#ttl": "expiresAt", "#user": "userId"},
                    "ExpressionAttributeValues": {
                        ":cost": {"N": str(amounts["costNano"])},
                        ":n": {"N": str(amounts["attempts"])},
                        ":start": {"N": str(start)},
                        ":ttl": {"N": str(start // 1000 + keep_hours)},
                        ":user": {"S": user},
                    },
                }
            }
        )
    return actions


def user_cost_prefix(hour_start_ms: int) -> str:
    return f"{USER_COST_SK}{bucket_sk('hour', hour_start_ms).rpartition('#')[2]}#"


USER_COST_PK = "USERCOST#"


def read_user_costs(queue_name: str, since_ms: int) -> dict[str, tuple[int, int]]:
    """User -> (cost in nano USD, attempts) in the hours from the one holding ``since_ms`` on: one Query."""
    params: dict[str, Any] = {
        "TableName": _table(),
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
        "ExpressionAttributeValues": {
            ":pk": {"S": f"{USER_COST_PK}{queue_name}"},
            ":low": {"S": user_cost_prefix(bucket_start(since_ms, "hour"))},
            ":high": {"S": f"{USER_COST_SK}~"},
        },
    }
    found: dict[str, tuple[int, int]] = {}
    try:
        while True:
            out = clients.client("dynamodb").query(**params)
            for item in out.get("Items", []):
                user = attribute_text(item, "userId")
                if user:
                    cost, attempts = found.get(user, (0, 0))
                    found[user] = (cost + (attribute_number(item, "costNano") or 0), attempts + (attribute_number(item, "attempts") or 0))
            if not out.get("LastEvaluatedKey"):
                break
            params["ExclusiveStartKey"] = out["LastEvaluatedKey"]
    except AWS_ERRORS as err:
        raise domain_error(err, "DynamoDB (queue costs)") from err
    return found


def apply_stream_records(records: list[Mapping[str, Any]], *, table_name: str | None = None) -> BatchOutcome:
    """Apply one stream batch to the counters and buckets, exactly once (see the module docstring)."""
    settings = get_settings()
    table = table_name or settings.table_name
    outcome = BatchOutcome(records=len(records), job_records=sum(1 for r in records if is_job_record(r)))
    deltas = aggregate(records)
    outcome.queues = len(deltas)
    actions = [action for queue in sorted(deltas) for action in _queue_actions(table, queue, deltas[queue], settings)]
    actions += admission.release_actions(table, records)  # back-pressure places given back, in the same exactly-once write
    if not actions:
        return outcome
    digest, newest = batch_identity(records)
    per_chunk = MAX_TRANSACTION_ACTIONS - 1
    for index, start in enumerate(range(0, len(actions), per_chunk)):
        chunk = actions[start : start + per_chunk]
        marker = {
            "Put": {
                "TableName": table,
                "Item": {
                    "pk": {"S": f"STREAMBATCH#{digest}#{index}"},
                    "sk": {"S": "APPLIED"},
                    "records": {"N": str(len(records))},
                    "expiresAt": {"N": str(newest + MARKER_TTL_SECONDS)},
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        if _transact([marker, *chunk]):
            outcome.transactions += 1
            outcome.write_actions += len(chunk) + 1
        else:
            outcome.duplicates += 1
    return outcome


_RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}


def _transact(items: list[dict[str, Any]], *, attempts: int = 6) -> bool:
    """Write one transaction; False if its marker (item 0) exists: the batch was applied before."""
    ddb = clients.client("dynamodb")
    for attempt in range(attempts):
        try:
            ddb.transact_write_items(TransactItems=items)
            return True
        except AWS_ERRORS as err:
            code = aws_code(err)
            reasons = cancellation_reasons(err)
            if code == "TransactionCanceledException" and reasons and reasons[0] == "ConditionalCheckFailed":
                return False
            retryable = code in ("TransactionConflictException", "ThrottlingException", "InternalServerError") or (
                code == "TransactionCanceledException" and any(r in _RETRYABLE_REASONS for r in reasons)
            )
            if not retryable or attempt == attempts - 1:
                raise Unavailable(f"could not apply the stream batch ({code} {reasons})") from err
            # Several shards update one queue's STATS item: back off with jitter and go again.
            time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))  # nosec B311 - jitter, not a secret
    return False  # pragma: no cover - the loop returns or raises


# ---- reading -----------------------------------------------------------------------------------------


def _table() -> str:
    return get_settings().table_name


def read_stats(queue_name: str) -> QueueStats:
    """A queue's live counts (never below zero) and when it last finished a job: one GetItem."""
    try:
        out = clients.client("dynamodb").get_item(
            TableName=_table(), Key={"pk": {"S": f"QUEUE#{queue_name}"}, "sk": {"S": STATS_SK}}
        )
    except AWS_ERRORS as err:
        raise domain_error(err, "DynamoDB (queue counters)") from err
    item = out.get("Item") or {}
    # A counter can dip below zero only for jobs written before the EventsFunction ran.
    counts = {name: max(0, attribute_number(item, name) or 0) for name in COUNT_NAMES}
    by_priority: dict[str, dict[str, int]] = {}
    for name in PRIORITY_COUNT_NAMES:
        band, status = name.split(".")
        by_priority.setdefault(band, dict.fromkeys(PRIORITY_STATUSES, 0))[status] = max(0, attribute_number(item, name) or 0)
    return QueueStats(counts=counts, last_processed_at=attribute_text(item, "lastProcessedAt"), by_priority=by_priority)


def read_raw_counts(queue_name: str) -> dict[str, int]:
    """The counters as stored, below zero included (what a recount compares with)."""
    try:
        out = clients.client("dynamodb").get_item(
            TableName=_table(), Key={"pk": {"S": f"QUEUE#{queue_name}"}, "sk": {"S": STATS_SK}}, ConsistentRead=True
        )
    except AWS_ERRORS as err:
        raise domain_error(err, "DynamoDB (queue counters)") from err
    item = out.get("Item") or {}
    return {name: attribute_number(item, name) or 0 for name in COUNT_NAMES}


def correct_counts(queue_name: str, drift: Mapping[str, int]) -> None:
    """Add ``drift`` (counted minus stored) to the counters: an ADD, so stream batches applied meanwhile stay counted."""
    changes = {name: amount for name, amount in drift.items() if amount and name in COUNT_NAMES}
    if not changes:
        return
    names = {f"#c{i}": name for i, name in enumerate(changes)}
    values = {f":c{i}": {"N": str(amount)} for i, amount in enumerate(changes.values())}
    try:
        clients.client("dynamodb").update_item(
            TableName=_table(),
            Key={"pk": {"S": f"QUEUE#{queue_name}"}, "sk": {"S": STATS_SK}},
            UpdateExpression="ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(changes))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except AWS_ERRORS as err:
        raise domain_error(err, "DynamoDB (queue counters)") from err


def read_counts(queue_name: str) -> dict[str, int]:
    """``{waiting, active, delayed, completed, failed, cancelled, stalled, total}`` for a queue."""
    return read_stats(queue_name).counts


def _bucket_of(item: Mapping[str, Any], resolution: Resolution) -> Bucket:
    return Bucket(
        resolution=resolution,
        start_ms=attribute_number(item, "bucketStart") or 0,
        **{name: attribute_number(item, name) or 0 for name in EVENT_NAMES},
        pt_count=attribute_number(item, "ptCount") or 0,
        pt_sum=attribute_number(item, "ptSum") or 0,
        histogram=tuple(attribute_number(item, f"h{i:02d}") or 0 for i in range(BINS)),
        types=type_figures({k: attribute_number(item, k) or 0 for k in item if k.startswith(TYPE_PREFIX)}),
    )


def read_buckets(queue_name: str, since_ms: int, resolution: Resolution = "minute", until_ms: int | None = None) -> list[Bucket]:
    """The queue's metric buckets from the one holding ``since_ms`` on, oldest first: one Query."""
    if resolution not in ("minute", "hour"):
        raise ValueError(f"resolution is minute or hour, not {resolution!r}")
    low = bucket_sk(resolution, bucket_start(since_ms, resolution))
    high = bucket_sk(resolution, bucket_start(until_ms, resolution)) if until_ms is not None else f"METRICS#{resolution.upper()}#~"
    params: dict[str, Any] = {
        "TableName": _table(),
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
        "ExpressionAttributeValues": {":pk": {"S": f"QUEUE#{queue_name}"}, ":low": {"S": low}, ":high": {"S": high}},
    }
    buckets: list[Bucket] = []
    try:
        while True:
            out = clients.client("dynamodb").query(**params)
            buckets.extend(_bucket_of(item, resolution) for item in out.get("Items", []))
            if not out.get("LastEvaluatedKey"):
                break
            params["ExclusiveStartKey"] = out["LastEvaluatedKey"]
    except AWS_ERRORS as err:
        raise domain_error(err, "DynamoDB (queue counters)") from err
    return buckets


