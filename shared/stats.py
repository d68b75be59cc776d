"""Queue counters and metric buckets: what the table's stream means for them (the writing and
reading is shared/adapters/counters.py), kept by the EventsFunction. What is read back (live
counts, buckets, their summaries) is shared/stats_models.py.

Items (all in the jobs table, none of them a job; the stream filter lets only ``sk=JOB`` through):

    pk=QUEUE#<queue>  sk=STATS                          waiting, active, delayed, completed, failed,
                                                        cancelled, stalled, total (N); lastProcessedAt (S);
                                                        <band>.waiting, <band>.delayed, <band>.active (N)
                                                        per priority band (critical, high, normal, low, bulk)
    pk=QUEUE#<queue>  sk=METRICS#MINUTE#<YYYY-MM-DDTHH:MM>   created, completed, failed, retried,
    pk=QUEUE#<queue>  sk=METRICS#HOUR#<YYYY-MM-DDTHH>        cancelled, stalled, ptCount, ptSum,
                                                        h00..h27 (processing-time histogram),
                                                        bucketStart (epoch ms), expiresAt (TTL)
    pk=USERCOST#<queue> sk=HOUR#<YYYY-MM-DDTHH>#<user>  costNano, attempts (N), userId, bucketStart,
                                                        expiresAt: a user's attempts in that hour
    pk=STREAMSHARD#<shardId>  sk=APPLIED                the shard's high-water mark: seq (S, 40 digits),
                                                        ids (eventIDs at seq), v (N), expiresAt (TTL 2 days)

What a stream record of a job item means:

    INSERT          +1 on its status and on total; ``created`` in the bucket of its createdAt
    MODIFY a -> b   -1 on a, +1 on b (a == b, e.g. a progress report: nothing); on b = completed,
                    failed, cancelled, stalled: that count (and the processing time) in the bucket of
                    its completedAt / failedAt / cancelledAt / updatedAt; active -> delayed: ``retried``;
                    waiting-children -> failed (a flow parent failed by its child, without running)
                    moves the counts but is no ``failed`` in the bucket: the child's failure was
                    counted, and one fault is one failure in the failure rate, whatever the tree's depth
    REMOVE          -1 on its status and on total (a clean, a TTL expiry)

The same -1/+1 goes to ``<band>.<status>`` for waiting, delayed and active (the band of the
image's priority, ``shared.priority.priority_band``): counts per priority in the same ADD, so
they cost no write of their own.

A batch is aggregated in memory and written as ONE TransactWriteItems: per queue one Update with
ADD on its STATS item and one per touched bucket, plus the conditional Update of the shard's
high-water mark. Reading a queue's counts is one GetItem, whatever the table holds.

Exactly once per record, whatever the redelivery: Lambda delivers a shard's records in order the
first time, and a redelivery (a retry after an error or a timeout, a bigger or smaller batch, a
reordered one) brings only records it delivered before. So each shard keeps the sequence number
of the last record counted (its high-water mark, with the eventIDs at that number: moto can give
two records one number), and only records past it count. The mark moves in the same transaction
as the deltas, on the condition that it is still what this invocation read (``v``), so a batch
that failed half-way counted nothing and two invocations racing on one shard cannot both count.
A batch over 100 actions is written in chunks of whole records in sequence order, each moving
the mark to its last record. Cost: one GetItem and one marker write (2 units) per batch, as the
batch digest this replaces; nothing per record or per job. Lambda names the shard only in a
tumbling-window event, so the mapping sets one (template.yaml); an event without ``shardId``
(a hand-made one) is keyed by its stream, right for a stream of one shard.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.clock import parse_iso
from shared.priority import PRIORITIES, priority_band
from shared.stats_models import BINS, BOUNDS_MS, Resolution, TypeFigures
from shared.status import JobStatus

STATS_SK = "STATS"
COUNT_NAMES: tuple[str, ...] = tuple(s.value for s in JobStatus) + ("total",)
# Per priority band, the statuses of jobs not yet started or running (what "behind whom" means).
PRIORITY_STATUSES: tuple[str, ...] = (JobStatus.WAITING.value, JobStatus.DELAYED.value, JobStatus.ACTIVE.value)
PRIORITY_COUNT_NAMES: tuple[str, ...] = tuple(f"{band}.{status}" for band in PRIORITIES for status in PRIORITY_STATUSES)
EVENT_NAMES: tuple[str, ...] = ("created", "completed", "failed", "retried", "cancelled", "stalled")
MARKER_TTL_SECONDS = 2 * 86400  # a stream keeps records 24 h; a retry cannot come later than that
MAX_TRANSACTION_ACTIONS = 100
_FINISHED_AT = {
    JobStatus.COMPLETED.value: "completedAt",
    JobStatus.FAILED.value: "failedAt",
    JobStatus.CANCELLED.value: "cancelledAt",
    JobStatus.STALLED.value: "updatedAt",
}


def _minute_label(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M")


def _hour_label(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H")


def bucket_start(ms: int, resolution: Resolution) -> int:
    size = 60_000 if resolution == "minute" else 3_600_000
    return ms - ms % size


def bucket_sk(resolution: Resolution, start_ms: int) -> str:
    label = _minute_label(start_ms) if resolution == "minute" else _hour_label(start_ms)
    return f"METRICS#{resolution.upper()}#{label}"


def histogram_bin(ms: int) -> int:
    for i, bound in enumerate(BOUNDS_MS):
        if ms <= bound:
            return i
    return len(BOUNDS_MS)


# ---- aggregating a batch of stream records -----------------------------------------------------


@dataclass
class BucketDelta:
    resolution: Resolution
    start_ms: int
    values: Counter[str] = field(default_factory=Counter)


@dataclass
class QueueDelta:
    counts: Counter[str] = field(default_factory=Counter)
    last_processed_at: str | None = None
    buckets: dict[tuple[Resolution, int], BucketDelta] = field(default_factory=dict)
    # (hour bucket start, user id) -> {"costNano", "attempts"}: written as USERCOST#<queue> items (one per user and hour).
    user_costs: dict[tuple[int, str], Counter[str]] = field(default_factory=dict)

    def bump(self, at_ms: int, values: Mapping[str, int]) -> None:
        resolutions: tuple[Resolution, ...] = ("minute", "hour")
        for resolution in resolutions:
            start = bucket_start(at_ms, resolution)
            bucket = self.buckets.setdefault((resolution, start), BucketDelta(resolution, start))
            bucket.values.update(values)

    def is_empty(self) -> bool:
        return not any(self.counts.values()) and not self.buckets and self.last_processed_at is None and not self.user_costs


def attribute_text(image: Mapping[str, Any], name: str) -> str | None:
    value = image.get(name)
    return value.get("S") if isinstance(value, dict) else None


def attribute_number(image: Mapping[str, Any], name: str) -> int | None:
    value = image.get(name)
    if isinstance(value, dict) and "N" in value:
        try:
            return int(float(value["N"]))
        except ValueError:
            return None
    return None


def attribute_time(image: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        text = attribute_text(image, name)
        if text:
            try:
                return parse_iso(text)
            except ValueError:
                continue
    return None


def is_job_record(record: Mapping[str, Any]) -> bool:
    keys = (record.get("dynamodb") or {}).get("Keys") or {}
    return attribute_text(keys, "sk") == "JOB" and (attribute_text(keys, "pk") or "").startswith("JOB#")


def job_changes(records: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str | None, Mapping[str, Any], Mapping[str, Any]]]:
    """``(eventName, old image, new image)`` of each job item's record (the stream carries other items too)."""
    for record in records:
        if is_job_record(record):
            change = record.get("dynamodb") or {}
            yield record.get("eventName"), change.get("OldImage") or {}, change.get("NewImage") or {}


def aggregate(records: Iterable[Mapping[str, Any]]) -> dict[str, QueueDelta]:
    """Per queue: the change to its counters and buckets that these stream records make."""
    deltas: dict[str, QueueDelta] = {}
    for event, old, new in job_changes(records):
        image = new or old
        queue = attribute_text(image, "queue")
        if not queue:
            continue
        delta = deltas.setdefault(queue, QueueDelta())
        before, after = attribute_text(old, "status"), attribute_text(new, "status")
        if event == "INSERT" and after:
            delta.counts[after] += 1
            delta.counts["total"] += 1
            _by_priority(delta, new, after, 1)
            created = attribute_time(new, "createdAt")
            if created is not None:
                delta.bump(created, {"created": 1})
        elif event == "REMOVE" and before:
            delta.counts[before] -= 1
            delta.counts["total"] -= 1
            _by_priority(delta, old, before, -1)
        elif event == "MODIFY" and before and after:
            if before != after:
                delta.counts[before] -= 1
                delta.counts[after] += 1
                _finished(delta, before, after, new)
                if before == JobStatus.ACTIVE.value:
                    _attempt_closed(delta, new)
            _by_priority(delta, old, before, -1)  # nets to nothing unless the status or the priority changed
            _by_priority(delta, new, after, 1)
    return {queue: delta for queue, delta in deltas.items() if not delta.is_empty()}


def _by_priority(delta: QueueDelta, image: Mapping[str, Any], status: str, amount: int) -> None:
    if status in PRIORITY_STATUSES:
        delta.counts[f"{priority_band(attribute_number(image, 'priority') or 0)}.{status}"] += amount


def _finished(delta: QueueDelta, before: str, after: str, new: Mapping[str, Any]) -> None:
    if before == JobStatus.WAITING_CHILDREN.value and after == JobStatus.FAILED.value:
        return  # fail_for_child: a consequence of the child's failure (counted), not an attempt of its own
    if after in _FINISHED_AT:
        at = attribute_time(new, _FINISHED_AT[after], "updatedAt")
        if at is None:
            return
        values = {after: 1}
        if after == JobStatus.COMPLETED.value:
            took = attribute_number(new, "processingTime")
            if took is not None and took >= 0:
                values.update({"ptCount": 1, "ptSum": took, f"h{histogram_bin(took):02d}": 1})
        delta.bump(at, values)
        if after in (JobStatus.COMPLETED.value, JobStatus.FAILED.value):
            stamp = attribute_text(new, _FINISHED_AT[after])
            if stamp and (delta.last_processed_at is None or stamp > delta.last_processed_at):
                delta.last_processed_at = stamp
    elif before == JobStatus.ACTIVE.value and after == JobStatus.DELAYED.value:
        at = attribute_time(new, "updatedAt")
        if at is not None:
            delta.bump(at, {"retried": 1})


# Per job type in every bucket (``t.<type>.<what>``): an attempt's cost (nano USD), its count,
# duration sum and duration histogram (``t.<type>.hNN``): what cost per type and slow attempts
# (over twice the type's average) are read from. Types are few per queue, so buckets stay small.
TYPE_PREFIX = "t."
USER_COST_SK = "HOUR#"  # pk=USERCOST#<queue>, sk=HOUR#<YYYY-MM-DDTHH>#<user>


def _last_attempt(image: Mapping[str, Any]) -> Mapping[str, Any] | None:
    history = image.get("history")
    records = history.get("L") if isinstance(history, dict) else None
    if not records:
        return None
    last = records[-1]
    return last.get("M") if isinstance(last, dict) and isinstance(last.get("M"), dict) else None


def _attempt_closed(delta: QueueDelta, new: Mapping[str, Any]) -> None:
    """An attempt ended with this change: its cost and duration go to its type's figures, its cost to its user's."""
    record = _last_attempt(new)
    usage = record.get("usage") if record else None
    usage_map = usage.get("M") if isinstance(usage, dict) else None
    job_type, user = attribute_text(new, "type"), attribute_text(new, "userId")
    at = attribute_time(new, "updatedAt")
    if not usage_map or not job_type or not user or at is None:
        return
    cost = attribute_number(usage_map, "costNanoUsd") or 0
    took = attribute_number(usage_map, "durationMs")
    values = {f"{TYPE_PREFIX}{job_type}.cost": cost, f"{TYPE_PREFIX}{job_type}.n": 1}
    if took is not None and took >= 0:
        values.update({f"{TYPE_PREFIX}{job_type}.ms": took, f"{TYPE_PREFIX}{job_type}.h{histogram_bin(took):02d}": 1})
    delta.bump(at, values)
    delta.user_costs.setdefault((bucket_start(at, "hour"), user), Counter()).update({"costNano": cost, "attempts": 1})


def type_figures(values: Mapping[str, int]) -> dict[str, TypeFigures]:
    """The ``t.<type>.<what>`` attributes of a bucket, per type."""
    raw: dict[str, dict[str, int]] = {}
    for name, value in values.items():
        if name.startswith(TYPE_PREFIX):
            job_type, _, what = name[len(TYPE_PREFIX) :].rpartition(".")
            if job_type:
                raw.setdefault(job_type, {})[what] = value
    return {
        job_type: TypeFigures(
            attempts=v.get("n", 0),
            cost_nano_usd=v.get("cost", 0),
            duration_sum_ms=v.get("ms", 0),
            histogram=tuple(v.get(f"h{i:02d}", 0) for i in range(BINS)),
        )
        for job_type, v in raw.items()
    }


# ---- writing a batch ---------------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    """What applying one stream batch did (logged by the EventsFunction; read by bench/)."""

    records: int = 0
    job_records: int = 0
    queues: int = 0
    transactions: int = 0
    write_actions: int = 0  # items written, the high-water mark included (each costs 2 WCU in a transaction)
    duplicates: int = 0  # records counted before (a redelivered batch), skipped

    def as_log(self) -> dict[str, int]:
        return dict(self.__dict__)


SEQUENCE_DIGITS = 40  # DynamoDB Streams sequence numbers have 21 to 40 digits


def sequence_of(record: Mapping[str, Any]) -> int:
    """A stream record's sequence number as a number (they compare as numbers, not as text)."""
    try:
        return int(str((record.get("dynamodb") or {}).get("SequenceNumber") or 0))
    except ValueError:
        return 0


def record_id(record: Mapping[str, Any]) -> str:
    return str(record.get("eventID") or (record.get("dynamodb") or {}).get("SequenceNumber") or "")


def shard_of(event: Mapping[str, Any]) -> str:
    """The shard a stream batch came from: ``shardId`` of a tumbling-window event, else its stream."""
    shard = event.get("shardId")
    if isinstance(shard, str) and shard:
        return shard
    records = event.get("Records") or []
    return str(records[0].get("eventSourceARN") or "stream") if records else "stream"


def newest_record_time(records: Iterable[Mapping[str, Any]]) -> int:
    """The newest record's ApproximateCreationDateTime (epoch s), or now."""
    newest = 0
    for record in records:
        stamp = (record.get("dynamodb") or {}).get("ApproximateCreationDateTime")
        if isinstance(stamp, int | float):
            newest = max(newest, int(stamp))
    return newest or int(time.time())


@dataclass(frozen=True)
class HighWaterMark:
    """The last record of a shard counted: its sequence number, the eventIDs at it, the mark's version."""

    sequence: int = 0
    ids: frozenset[str] = frozenset()
    version: int = 0

    def is_new(self, record: Mapping[str, Any]) -> bool:
        sequence = sequence_of(record)
        return sequence > self.sequence or (sequence == self.sequence and record_id(record) not in self.ids)

    def after(self, records: list[Mapping[str, Any]]) -> HighWaterMark:
        """The mark once ``records`` (in sequence order, all new) are counted too."""
        last = sequence_of(records[-1])
        ids = {record_id(r) for r in records if sequence_of(r) == last}
        if last == self.sequence:
            ids |= self.ids
        return HighWaterMark(sequence=last, ids=frozenset(ids), version=self.version + 1)


def record_keys(record: Mapping[str, Any]) -> set[tuple[str, ...]]:
    """The counter items one record changes (a STATS item, buckets): what a chunk's size counts."""
    keys: set[tuple[str, ...]] = set()
    for queue, delta in aggregate([record]).items():
        if any(delta.counts.values()) or delta.last_processed_at:
            keys.add(("stats", queue))
        keys.update(("bucket", queue, resolution, str(start)) for resolution, start in delta.buckets)
        keys.update(("usercost", queue, str(start), user) for start, user in delta.user_costs)
    return keys


__all__ = [
    "COUNT_NAMES",
    "PRIORITY_COUNT_NAMES",
    "BatchOutcome",
    "HighWaterMark",
    "QueueDelta",
    "aggregate",
    "bucket_sk",
    "bucket_start",
    "type_figures",
]
