"""Lambda's DynamoDB stream event source mapping, emulated: read the stream, batch, invoke.

moto keeps a table's stream (DescribeStream, GetShardIterator, GetRecords) but never
invokes anything from it, so the local stack drives each function's ``DynamoDB`` event
itself, the way Lambda does:

* one poller thread per mapping reads every shard in order (``StartingPosition``), at most
  ``BatchSize`` records a batch, gathering for ``MaximumBatchingWindowInSeconds`` when a
  batch is not full;
* ``FilterCriteria`` patterns are applied to each record (the subset of EventBridge pattern
  syntax Lambda filters use: exact values, ``prefix``, ``anything-but``, ``exists``,
  ``numeric`` is not supported and matches nothing); records that match no pattern are
  skipped, as Lambda skips them;
* the handler gets Lambda's event (``Records`` with eventID, eventName, eventVersion,
  eventSource, awsRegion, ``dynamodb`` {ApproximateCreationDateTime in epoch seconds, Keys,
  NewImage, OldImage, SequenceNumber, SizeBytes, StreamViewType} and eventSourceARN);
* a batch is retried, as it is, while the handler raises (up to ``MaximumRetryAttempts``,
  then it goes to the ``DestinationConfig.OnFailure`` SQS queue as Lambda's failure record);
  with ``ReportBatchItemFailures`` the retry starts at the lowest reported sequence number;
* shards are read one batch at a time (ParallelizationFactor 1);
* with ``TumblingWindowInSeconds`` the event carries the window fields (``shardId``, ``window``,
  an empty ``state``) and a response without ``state`` fails the batch, as Lambda's does; the
  window's final invocation is not emulated;
* a record is delivered once: moto numbers stream records without a lock, so under
  concurrent writes two records can share a SequenceNumber and an ``AFTER_SEQUENCE_NUMBER``
  iterator reads the second one again; records already read (by eventID, which moto keeps
  unique) are dropped, as DynamoDB Streams would never have repeated them.

The pollers idle cheaply: one GetRecords per shard every ``idle_seconds`` (0.25 s, as Lambda
polls a shard four times a second), and every ``quiet_seconds`` (1 s) once nothing has been
written for ``quiet_after`` (10 s); they notice stop within that time.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from infra.local.meter import client_config
from infra.local.provision import FunctionSpec
from infra.local.runtime import Handler, LambdaContext

log = logging.getLogger("jobq.local.streams")

__all__ = ["StreamEventSourceMapping", "StreamMappingSpec", "build_stream_event", "matches_filters", "stream_mappings"]


@dataclass(frozen=True)
class StreamMappingSpec:
    logical_id: str  # the SAM-generated "<Function><Event>" ID
    function: FunctionSpec
    stream_arn: str
    batch_size: int
    maximum_batching_window_seconds: int
    starting_position: str
    maximum_retry_attempts: int  # -1: until the records expire
    filters: tuple[dict[str, Any], ...]
    report_batch_item_failures: bool
    on_failure_arn: str | None
    enabled: bool
    tumbling_window_seconds: int = 0  # > 0: the event names its shard, and the response must hold ``state``


def stream_mappings(functions: list[FunctionSpec]) -> list[StreamMappingSpec]:
    """The ``DynamoDB`` events of the provisioned functions, as mappings to emulate."""
    specs = []
    for fn in functions:
        for event_name, event in fn.events.items():
            if (event or {}).get("Type") != "DynamoDB":
                continue
            props = event.get("Properties") or {}
            patterns = []
            for item in ((props.get("FilterCriteria") or {}).get("Filters")) or []:
                pattern = item.get("Pattern")
                patterns.append(json.loads(pattern) if isinstance(pattern, str) else dict(pattern))
            on_failure = (((props.get("DestinationConfig") or {}).get("OnFailure")) or {}).get("Destination")
            specs.append(
                StreamMappingSpec(
                    logical_id=f"{fn.logical_id}{event_name}",
                    function=fn,
                    stream_arn=str(props["Stream"]),
                    batch_size=int(props.get("BatchSize", 100)),
                    maximum_batching_window_seconds=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                    starting_position=str(props.get("StartingPosition", "LATEST")),
                    maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                    filters=tuple(patterns),
                    report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    on_failure_arn=str(on_failure) if on_failure else None,
                    enabled=str(props.get("Enabled", True)).lower() != "false",
                    tumbling_window_seconds=int(props.get("TumblingWindowInSeconds", 0)),
                )
            )
    return specs


# ---- filter patterns -------------------------------------------------------------------------------


def _leaf_matches(rules: list[Any], present: bool, value: Any) -> bool:
    for rule in rules:
        if isinstance(rule, dict):
            if "exists" in rule:
                if bool(rule["exists"]) == present:
                    return True
            elif not present:
                continue
            elif "prefix" in rule:
                if isinstance(value, str) and value.startswith(str(rule["prefix"])):
                    return True
            elif "anything-but" in rule:
                excluded = rule["anything-but"]
                excluded = excluded if isinstance(excluded, list) else [excluded]
                if value not in excluded:
                    return True
        elif present and value == rule:
            return True
    return False


def _pattern_matches(pattern: Mapping[str, Any], data: Any) -> bool:
    for key, rule in pattern.items():
        present = isinstance(data, Mapping) and key in data
        value = data[key] if present else None
        if isinstance(rule, Mapping):
            if not present or not _pattern_matches(rule, value):
                return False
        elif isinstance(rule, list):
            if not _leaf_matches(rule, present, value):
                return False
        else:
            return False
    return True


def matches_filters(record: Mapping[str, Any], patterns: tuple[dict[str, Any], ...]) -> bool:
    """True if there are no patterns or the record matches one of them (Lambda ORs filters)."""
    return not patterns or any(_pattern_matches(p, record) for p in patterns)


# ---- the event --------------------------------------------------------------------------------------


def _lambda_json(value: Any) -> Any:
    """GetRecords as boto3 parses it -> the JSON Lambda sends (datetimes as epoch seconds, bytes as base64)."""
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _lambda_json(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_lambda_json(v) for v in value]
    return value


def build_stream_event(
    records: list[dict[str, Any]], *, stream_arn: str, region: str, shard_id: str | None = None, window_seconds: int = 0
) -> dict[str, Any]:
    """Lambda's event for ``records``; with a tumbling window, its window fields too (shardId among them)."""
    out = []
    for record in records:
        item = _lambda_json(record)
        item.setdefault("eventSource", "aws:dynamodb")
        item["eventVersion"] = "1.1"
        item["awsRegion"] = region
        item["eventSourceARN"] = stream_arn
        out.append(item)
    event: dict[str, Any] = {"Records": out}
    if window_seconds > 0:
        now = int(time.time())
        start = now - now % window_seconds
        event.update(
            {
                "window": {"start": _iso_seconds(start), "end": _iso_seconds(start + window_seconds)},
                "state": {},  # the local stack does not carry state between invocations
                "shardId": shard_id or "shardId-local",
                "eventSourceARN": stream_arn,
                "isFinalInvokeForWindow": False,
                "isWindowTerminatedEarly": False,
            }
        )
    return event


def _iso_seconds(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the mapping ------------------------------------------------------------------------------------------


@dataclass
class StreamStats:
    invocations: int = 0
    records: int = 0
    filtered_out: int = 0
    errors: int = 0
    discarded_batches: int = 0
    repeats_dropped: int = 0


@dataclass
class _Shard:
    shard_id: str
    iterator: str | None
    pending: list[dict[str, Any]] = field(default_factory=list)  # read, not yet delivered
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=_REMEMBERED))  # eventIDs read, newest last
    recent_set: set[str] = field(default_factory=set)

    def first_reading(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fresh = []
        for record in records:
            event_id = str(record.get("eventID") or "")
            if event_id in self.recent_set:
                continue
            if len(self.recent) == self.recent.maxlen:
                self.recent_set.discard(self.recent[0])
            self.recent.append(event_id)
            self.recent_set.add(event_id)
            fresh.append(record)
        return fresh


_REMEMBERED = 10_000  # repeats come from adjacent reads; this is plenty


class StreamEventSourceMapping:
    """One table stream -> one function, driven by a poller thread."""

    def __init__(
        self,
        spec: StreamMappingSpec,
        handler: Handler,
        *,
        endpoint_url: str,
        region: str = "us-east-1",
        idle_seconds: float = 0.25,
        retry_seconds: float = 0.5,
        quiet_seconds: float = 1.0,
        quiet_after: float = 10.0,
    ) -> None:
        self.spec = spec
        self.handler = handler
        self.region = region
        self.name = spec.logical_id
        self.idle_seconds = idle_seconds
        self.retry_seconds = retry_seconds
        self.quiet_seconds = max(idle_seconds, quiet_seconds)
        self.quiet_after = quiet_after
        self.stats = StreamStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._quiet = threading.Condition()
        self._empty_reads = 0  # read cycles that found nothing new: the poller has caught up
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)
        config = Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 2}, **client_config("streams"))
        self._streams = session.client("dynamodbstreams", endpoint_url=endpoint_url, config=config)
        self._sqs = session.client("sqs", endpoint_url=endpoint_url, config=config)

    # -- lifecycle --

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"stream mapping {self.name} already started")
        if not self.spec.enabled:
            log.info("[%s] disabled in the template; not polled", self.name)
            return
        self._thread = threading.Thread(target=self._run, name=f"stream-{self.name}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 3.0) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def stop(self, timeout: float = 3.0) -> bool:
        self.request_stop()
        return self.join(timeout)

    def wait_caught_up(self, timeout: float) -> bool:
        """Until everything written to the stream before the call has been delivered (tests, bench)."""
        with self._quiet:
            target = self._empty_reads + 2  # the cycle under way may have read before the call
            return self._quiet.wait_for(lambda: self._empty_reads >= target, timeout=timeout)

    # -- reading --

    def _shards(self, known: dict[str, _Shard]) -> None:
        description = self._streams.describe_stream(StreamArn=self.spec.stream_arn)["StreamDescription"]
        for shard in description.get("Shards") or []:
            shard_id = shard["ShardId"]
            if shard_id in known:
                continue
            iterator = self._streams.get_shard_iterator(
                StreamArn=self.spec.stream_arn, ShardId=shard_id, ShardIteratorType=self.spec.starting_position
            )["ShardIterator"]
            known[shard_id] = _Shard(shard_id, iterator)

    def _read(self, shard: _Shard, limit: int) -> list[dict[str, Any]]:
        if shard.iterator is None:
            return []
        out = self._streams.get_records(ShardIterator=shard.iterator, Limit=max(1, min(1000, limit)))
        shard.iterator = out.get("NextShardIterator")
        records = list(out.get("Records") or [])
        fresh = shard.first_reading(records)
        self.stats.repeats_dropped += len(records) - len(fresh)
        return fresh

    def _next_batch(self, shard: _Shard) -> list[dict[str, Any]]:
        size = self.spec.batch_size
        if len(shard.pending) < size:
            shard.pending.extend(self._read(shard, size - len(shard.pending)))
        window = self.spec.maximum_batching_window_seconds
        if shard.pending and window > 0 and len(shard.pending) < size:
            deadline = time.monotonic() + window
            while len(shard.pending) < size and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                more = self._read(shard, size - len(shard.pending))
                shard.pending.extend(more)
                if not more:
                    self._stop.wait(min(self.idle_seconds, remaining))
        batch, shard.pending = shard.pending[:size], shard.pending[size:]
        return batch

    def _run(self) -> None:
        shards: dict[str, _Shard] = {}
        failures = 0
        last_records = time.monotonic()
        while not self._stop.is_set():
            try:
                if not shards:
                    self._shards(shards)
                delivered = False
                for shard in shards.values():
                    batch = self._next_batch(shard)
                    if batch:
                        delivered = True
                        self._deliver(shard, batch)
                failures = 0
                if delivered:
                    last_records = time.monotonic()
                else:
                    with self._quiet:
                        self._empty_reads += 1
                        self._quiet.notify_all()
                    quiet = time.monotonic() - last_records > self.quiet_after
                    self._stop.wait(self.quiet_seconds if quiet else self.idle_seconds)
            except Exception as exc:
                failures += 1
                if not self._stop.is_set() and (failures in (1, 10) or failures % 100 == 0):
                    log.warning("[%s] reading the stream failed (%s): %s", self.name, failures, exc)
                self._stop.wait(min(5.0, 0.5 * failures))

    # -- invoking --

    def _deliver(self, shard: _Shard, batch: list[dict[str, Any]]) -> None:
        wanted = [r for r in batch if matches_filters(_lambda_json(r), self.spec.filters)]
        self.stats.filtered_out += len(batch) - len(wanted)
        attempt = 0
        while wanted and not self._stop.is_set():
            failed_from = self._invoke(wanted, shard.shard_id)
            if failed_from is None:
                return
            attempt += 1
            retries = self.spec.maximum_retry_attempts
            if retries >= 0 and attempt > retries:
                self._discard(shard, wanted, attempt)
                return
            wanted = wanted[failed_from:]
            self._stop.wait(min(5.0, self.retry_seconds * attempt))
        if wanted:
            # Stopping with a batch undelivered: keep it for a later start of this poller.
            shard.pending[:0] = wanted

    def _invoke(self, records: list[dict[str, Any]], shard_id: str) -> int | None:
        """Call the handler; None on success, else the index the retry starts from."""
        started = time.monotonic()
        context = LambdaContext(self.spec.function, request_id=str(uuid.uuid4()), started=started)
        event = build_stream_event(
            records, stream_arn=self.spec.stream_arn, region=self.region, shard_id=shard_id, window_seconds=self.spec.tumbling_window_seconds
        )
        try:
            result = self.handler(event, context)
            result = json.loads(json.dumps(result))
        except Exception:
            self.stats.errors += 1
            log.exception("[%s] invocation %s raised; the batch of %d will be retried", self.name, context.aws_request_id, len(records))
            return 0
        self.stats.invocations += 1
        self.stats.records += len(records)
        if time.monotonic() - started > self.spec.function.timeout:
            self.stats.errors += 1
            log.warning("[%s] invocation timed out (Timeout %ss); the batch will be retried", self.name, self.spec.function.timeout)
            return 0
        if self.spec.tumbling_window_seconds > 0 and not (isinstance(result, dict) and isinstance(result.get("state"), dict)):
            self.stats.errors += 1
            log.warning("[%s] a tumbling-window invocation answered no state; the batch will be retried", self.name)
            return 0
        if not self.spec.report_batch_item_failures or not isinstance(result, dict):
            return None
        failures = result.get("batchItemFailures") or []
        sequence = [r["dynamodb"]["SequenceNumber"] for r in records]
        reported = [f.get("itemIdentifier") for f in failures if isinstance(f, dict)]
        if not reported:
            return None
        if any(s not in sequence for s in reported):
            return 0  # an identifier that is not in the batch fails the whole batch
        return min(sequence.index(s) for s in reported)

    def _discard(self, shard: _Shard, records: list[dict[str, Any]], attempts: int) -> None:
        self.stats.discarded_batches += 1
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        log.error("[%s] batch of %d discarded after %d attempts", self.name, len(records), attempts)
        if not self.spec.on_failure_arn:
            return
        failure = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.spec.function.arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": datetime.now(tz=UTC).isoformat(),
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _lambda_json(first.get("ApproximateCreationDateTime")),
                "approximateArrivalOfLastRecord": _lambda_json(last.get("ApproximateCreationDateTime")),
                "batchSize": len(records),
                "streamArn": self.spec.stream_arn,
            },
        }
        try:
            url = self._sqs.get_queue_url(QueueName=self.spec.on_failure_arn.rsplit(":", 1)[-1])["QueueUrl"]
            self._sqs.send_message(QueueUrl=url, MessageBody=json.dumps(failure))
        except Exception as exc:
            log.warning("[%s] could not send the failure record: %s", self.name, exc)
