"""The counters' and metric buckets' items in DynamoDB: one transaction per stream batch, one read per view.

What the items hold and why each record counts exactly once is shared/stats.py's docstring;
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
from shared.adapters.configuration import settings as adapter_settings
from shared.errors import Unavailable
from shared.stats import (
    COUNT_NAMES,
    EVENT_NAMES,
    MARKER_TTL_SECONDS,
    MAX_TRANSACTION_ACTIONS,
    PRIORITY_COUNT_NAMES,
    PRIORITY_STATUSES,
    SEQUENCE_DIGITS,
    STATS_SK,
    TYPE_PREFIX,
    USER_COST_SK,
    BatchOutcome,
    HighWaterMark,
    QueueDelta,
    aggregate,
    attribute_number,
    attribute_text,
    bucket_sk,
    bucket_start,
    is_job_record,
    newest_record_time,
    record_keys,
    sequence_of,
    type_figures,
)
from shared.stats_models import BINS, Bucket, QueueStats, Resolution


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


def _mark_key(shard: str) -> dict[str, Any]:
    return {"pk": {"S": f"STREAMSHARD#{shard}"}, "sk": {"S": "APPLIED"}}


def _read_mark(table: str, shard: str) -> HighWaterMark:
    try:
        out = clients.client("dynamodb").get_item(TableName=table, Key=_mark_key(shard), ConsistentRead=True)
    except AWS_ERRORS as err:
        raise domain_error(err, "DynamoDB (stream high-water mark)") from err
    item = out.get("Item")
    if not item:
        return HighWaterMark()
    ids = item.get("ids", {}).get("SS") or []
    return HighWaterMark(sequence=int(attribute_text(item, "seq") or 0), ids=frozenset(ids), version=attribute_number(item, "v") or 0)


def _mark_action(table: str, shard: str, read: HighWaterMark, moved: HighWaterMark, expires_at: int) -> dict[str, Any]:
    """Move the mark, on the condition that it is still the one read (a racing invocation fails it)."""
    update: dict[str, Any] = {
        "TableName": table,
        "Key": _mark_key(shard),
        "UpdateExpression": "SET #seq = :seq, #ids = :ids, #v = :v, #ttl = :ttl",
        "ExpressionAttributeNames": {"#seq": "seq", "#ids": "ids", "#v": "v", "#ttl": "expiresAt"},
        "ExpressionAttributeValues": {
            ":seq": {"S": str(moved.sequence).zfill(SEQUENCE_DIGITS)},
            ":ids": {"SS": sorted(moved.ids)},
            ":v": {"N": str(moved.version)},
            ":ttl": {"N": str(expires_at)},
        },
    }
    if read.version:
        update["ConditionExpression"] = "#v = :read"
        update["ExpressionAttributeValues"][":read"] = {"N": str(read.version)}
    else:
        update["ConditionExpression"] = "attribute_not_exists(pk)"
    return {"Update": update}


def _chunks(records: list[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Whole records in sequence order, as many per chunk as fit in one transaction with the mark."""
    limit = MAX_TRANSACTION_ACTIONS - 1
    chunks: list[list[Mapping[str, Any]]] = []
    current: list[Mapping[str, Any]] = []
    keys: set[tuple[str, ...]] = set()
    for record in records:
        mine = record_keys(record) | {("admission", *key[:2]) for key in admission.changes([record])}  # one action per item
        if current and len(keys | mine) > limit:
            chunks.append(current)
            current, keys = [], set()
        current.append(record)
        keys |= mine
    if current:
        chunks.append(current)
    return chunks


def apply_stream_records(
    records: list[Mapping[str, Any]], *, shard: str = "stream", table_name: str | None = None, attempts: int = 6
) -> BatchOutcome:
    """Count the records of one shard's batch that were not counted before (see shared/stats.py)."""
    settings = adapter_settings()
    table = table_name or settings.table_name
    outcome = BatchOutcome(records=len(records), job_records=sum(1 for r in records if is_job_record(r)))
    if not any(record_keys(r) or admission.changes([r]) for r in records):
        return outcome  # nothing to count (a window's closing invocation has no records): no read either
    ordered = sorted(records, key=sequence_of)  # stable: records moto numbered alike keep their order
    expires_at = newest_record_time(records) + MARKER_TTL_SECONDS
    queues: set[str] = set()
    for attempt in range(attempts):
        mark = _read_mark(table, shard)
        fresh = [r for r in ordered if mark.is_new(r)]
        if attempt == 0:
            outcome.duplicates = len(ordered) - len(fresh)
        raced = False
        for chunk in _chunks(fresh):
            deltas = aggregate(chunk)
            actions = [action for queue in sorted(deltas) for action in _queue_actions(table, queue, deltas[queue], settings)]
            actions += admission.release_actions(table, chunk)  # back-pressure places given back, counted once too
            if not actions:
                continue  # nothing to count; the next chunk's mark (or a redelivery) covers these
            moved = mark.after(chunk)
            if not _transact([_mark_action(table, shard, mark, moved, expires_at), *actions]):
                raced = True  # another invocation moved the mark: read it again, count what is left
                break
            mark = moved
            queues.update(deltas)
            outcome.transactions += 1
            outcome.write_actions += len(actions) + 1
        if not raced:
            outcome.queues = len(queues)
            return outcome
    raise Unavailable("could not apply the stream batch: its shard's high-water mark kept moving")


_RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}


def _transact(items: list[dict[str, Any]], *, attempts: int = 6) -> bool:
    """Write one transaction; False if its condition (item 0, the high-water mark) failed."""
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
    return adapter_settings().table_name


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
    """The counters as stored, below zero included (what a recount compares with), the counts per priority band too."""
    try:
        out = clients.client("dynamodb").get_item(
            TableName=_table(), Key={"pk": {"S": f"QUEUE#{queue_name}"}, "sk": {"S": STATS_SK}}, ConsistentRead=True
        )
    except AWS_ERRORS as err:
        raise domain_error(err, "DynamoDB (queue counters)") from err
    item = out.get("Item") or {}
    return {name: attribute_number(item, name) or 0 for name in COUNT_NAMES + PRIORITY_COUNT_NAMES}


def correct_counts(queue_name: str, drift: Mapping[str, int]) -> None:
    """Add ``drift`` (counted minus stored) to the counters: an ADD, so stream batches applied meanwhile stay counted."""
    changes = {name: amount for name, amount in drift.items() if amount and (name in COUNT_NAMES or name in PRIORITY_COUNT_NAMES)}
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


