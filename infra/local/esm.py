"""Lambda's SQS event source mapping, emulated: poll, batch, invoke, delete what succeeded.

moto's own event source mapping ignores ``batchItemFailures`` (DESIGN.md), so the local
stack drives the consumer itself, the way Lambda does:

* a poller long-polls the queue (``ReceiveMessage`` with ``MaxNumberOfMessages`` =
  BatchSize, all system and message attributes) and gathers up to BatchSize messages
  within ``MaximumBatchingWindowInSeconds``;
* it builds the SQS event Lambda sends (``Records`` with messageId, receiptHandle, body,
  attributes, messageAttributes in Lambda's camelCase shape, md5OfBody, eventSource,
  eventSourceARN, awsRegion) and invokes the handler with a context whose deadline is
  the function's Timeout;
* at most ``ScalingConfig.MaximumConcurrency`` invocations run at once: the poller only
  receives while an invocation slot is free (one daemon thread per invocation);
* after the invocation: success deletes the batch; with ``ReportBatchItemFailures`` only
  the records not listed in ``batchItemFailures`` are deleted; an exception, a timeout or
  an invalid partial response deletes nothing, so the whole batch comes back after its
  visibility timeout (which the handler may have changed per message) and SQS's redrive
  policy eventually moves it to the DLQ.

A mapping can be switched off and on (``mapping.enabled = False``), as UpdateEventSourceMapping
``Enabled`` does: the poller stops receiving; invocations in progress finish.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from infra.local.meter import client_config
from infra.local.provision import EventSourceMappingSpec
from infra.local.runtime import Handler, LambdaContext

log = logging.getLogger("jobq.local.esm")

__all__ = ["EventSourceMapping", "MappingRegistry", "MappingStats", "build_sqs_event", "messages_to_delete"]

# Lambda's event carries these system attributes when SQS returns them.
_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "DeadLetterQueueSourceArn",
)


def build_sqs_event(messages: list[dict[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda passes for a batch of ReceiveMessage results."""
    records = []
    for message in messages:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": {k: v for k, v in (message.get("Attributes") or {}).items() if k in _RECORD_ATTRIBUTES},
            "messageAttributes": {
                name: _message_attribute(value) for name, value in (message.get("MessageAttributes") or {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
        if message.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        records.append(record)
    return {"Records": records}


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    # SQS API shape (StringValue, BinaryValue bytes) -> Lambda's (stringValue, base64 binaryValue).
    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    out["stringListValues"] = list(value.get("StringListValues") or [])
    out["binaryListValues"] = [base64.b64encode(b).decode() for b in value.get("BinaryListValues") or []]
    out["dataType"] = value.get("DataType", "String")
    return out


def messages_to_delete(response: Any, message_ids: list[str], *, report_batch_item_failures: bool) -> list[str] | None:
    """The message IDs Lambda deletes after a successful invocation; None = the batch failed.

    Lambda's rules for ``ReportBatchItemFailures``: a null or empty response, or a null or
    empty ``batchItemFailures`` list, is complete success; an itemIdentifier that is
    missing, null, empty or not in the batch makes the whole batch a failure.
    """
    if not report_batch_item_failures:
        return list(message_ids)  # Lambda ignores the response
    if response is None or response == {} or response == "":
        return list(message_ids)
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None or failures == []:
        return list(message_ids)
    if not isinstance(failures, list):
        return None
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier or identifier not in message_ids:
            return None
        failed.add(identifier)
    return [m for m in message_ids if m not in failed]


class _Slots:
    """A semaphore whose size can change while it is held (MaximumConcurrency changed at runtime)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._held = 0
        self._changed = threading.Condition()

    def acquire(self, timeout: float) -> bool:
        with self._changed:
            if not self._changed.wait_for(lambda: self._held < self._size, timeout=timeout):
                return False
            self._held += 1
            return True

    def release(self) -> None:
        with self._changed:
            self._held -= 1
            self._changed.notify_all()

    def resize(self, size: int) -> None:
        with self._changed:
            self._size = size
            self._changed.notify_all()


@dataclass
class MappingStats:
    invocations: int = 0
    errors: int = 0  # raised, timed out, or an invalid partial response
    received: int = 0
    deleted: int = 0
    kept: int = 0  # left for SQS to redeliver (reported failures, failed batches)
    max_in_flight: int = 0


class EventSourceMapping:
    """One SQS queue -> one function, driven by a poller thread."""

    def __init__(
        self,
        spec: EventSourceMappingSpec,
        handler: Handler,
        *,
        queue_url: str,
        endpoint_url: str,
        region: str = "us-east-1",
        name: str | None = None,
        wait_seconds: int = 1,
    ) -> None:
        self.spec = spec
        self.handler = handler
        self.queue_url = queue_url
        self.region = region
        self.name = name or spec.queue_arn.rsplit(":", 1)[-1]
        # Short long-polls: the poller notices stop() and disable within about a second.
        self.wait_seconds = wait_seconds
        # Without MaximumConcurrency Lambda scales to the account limit; a handful of
        # threads is the local equivalent.
        self.max_concurrency = spec.maximum_concurrency or 5
        self.stats = MappingStats()
        self._slots = _Slots(self.max_concurrency)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._enabled = threading.Event()
        if spec.enabled:
            self._enabled.set()
        self._thread: threading.Thread | None = None
        self._sqs = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
        ).client(
            "sqs",
            endpoint_url=endpoint_url,
            config=Config(
                read_timeout=wait_seconds + 10,
                connect_timeout=2,
                retries={"max_attempts": 2},
                max_pool_connections=self.max_concurrency + 2,
                **client_config("esm"),  # the meter counts these as Lambda's SQS poller
            ),
        )

    # -- switches --

    def set_max_concurrency(self, maximum: int) -> None:
        """UpdateEventSourceMapping ``ScalingConfig.MaximumConcurrency``: invocations past it finish, none new starts."""
        self.max_concurrency = maximum
        self._slots.resize(maximum)
        log.info("[%s] maximum concurrency %d", self.name, maximum)

    @property
    def enabled(self) -> bool:
        return self._enabled.is_set()

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if value:
            self._enabled.set()
        else:
            self._enabled.clear()
        log.info("[%s] event source mapping %s", self.name, "enabled" if value else "disabled")

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # -- lifecycle --

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"mapping {self.name} already started")
        self._thread = threading.Thread(target=self._poll_loop, name=f"esm-{self.name}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 3.0) -> bool:
        """Wait for the poller, then for running invocations; True if everything finished."""
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=max(0.0, deadline - time.monotonic()))
            done = self._in_flight == 0
        if not done:
            # Daemon threads: they die with the process; their messages return to the queue.
            log.warning("[%s] %d invocation(s) still running at shutdown", self.name, self._in_flight)
        return done and not (self._thread and self._thread.is_alive())

    def stop(self, timeout: float = 3.0) -> bool:
        self.request_stop()
        return self.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Until no invocation runs (tests)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)

    # -- polling --

    def _poll_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if not self._enabled.is_set():
                self._stop.wait(0.2)
                continue
            if not self._slots.acquire(timeout=0.2):
                continue  # every slot busy: MaximumConcurrency reached
            try:
                messages = self._receive_batch()
                failures = 0
            except Exception as exc:
                self._slots.release()
                failures += 1
                if not self._stop.is_set() and (failures in (1, 10) or failures % 100 == 0):
                    log.warning("[%s] ReceiveMessage failed (%s): %s", self.name, failures, exc)
                self._stop.wait(min(5.0, 0.5 * failures))
                continue
            if not messages:
                self._slots.release()
                continue
            if self._stop.is_set() or not self._enabled.is_set():
                self._release(messages)  # received while stopping: hand them back now
                self._slots.release()
                continue
            with self._lock:
                self._in_flight += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
                self.stats.received += len(messages)
            threading.Thread(target=self._invoke, args=(messages,), name=f"esm-{self.name}-invoke", daemon=True).start()

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def _receive_batch(self) -> list[dict[str, Any]]:
        batch_size = self.spec.batch_size
        messages = self._receive(min(10, batch_size), self.wait_seconds)
        window = self.spec.maximum_batching_window_seconds
        if not messages or window <= 0:
            return messages
        # Batching window: keep gathering until the batch is full or the window closes.
        deadline = time.monotonic() + window
        while len(messages) < batch_size and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = max(1, min(self.wait_seconds, int(remaining + 0.999)))
            messages.extend(self._receive(min(10, batch_size - len(messages)), wait))
        return messages

    def _release(self, messages: list[dict[str, Any]]) -> None:
        try:
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(messages)
                ],
            )
        except Exception as exc:  # best effort: they come back after the visibility timeout anyway
            log.debug("[%s] could not release %d message(s): %s", self.name, len(messages), exc)

    # -- invoking --

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        started = time.monotonic()
        context = LambdaContext(self.spec.function, request_id=str(uuid.uuid4()), started=started)
        ids = [m["MessageId"] for m in messages]
        outcome = ""
        to_delete: list[str] | None = None
        try:
            event = build_sqs_event(messages, queue_arn=self.spec.queue_arn, region=self.region)
            try:
                result = self.handler(event, context)
                # Lambda serialises the response; what cannot be serialised is an error there too.
                result = json.loads(json.dumps(result))
            except Exception as exc:
                outcome = f"error: {type(exc).__name__}: {exc}"
                log.exception("[%s] invocation %s raised", self.name, context.aws_request_id)
            else:
                elapsed = time.monotonic() - started
                if elapsed > self.spec.function.timeout:
                    # Lambda would have killed the invocation: nothing is deleted.
                    outcome = f"timed out after {elapsed:.1f}s (Timeout {self.spec.function.timeout}s)"
                else:
                    to_delete = messages_to_delete(result, ids, report_batch_item_failures=self.spec.report_batch_item_failures)
                    if to_delete is None:
                        outcome = f"invalid partial batch response: {str(result)[:200]}"
            deletable = set(to_delete or [])
            deleted = self._delete([m for m in messages if m["MessageId"] in deletable])
            with self._lock:
                self.stats.invocations += 1
                self.stats.deleted += deleted
                self.stats.kept += len(messages) - deleted
                if to_delete is None:
                    self.stats.errors += 1
            took = (time.monotonic() - started) * 1000
            if to_delete is None:
                log.warning("[%s] batch of %d failed (%s), %.0f ms; all will be redelivered", self.name, len(ids), outcome, took)
            else:
                log.info(
                    "[%s] batch of %d: %d done, %d to retry, %.0f ms", self.name, len(ids), deleted, len(ids) - deleted, took
                )
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
            self._slots.release()

    def _delete(self, messages: list[dict[str, Any]]) -> int:
        deleted = 0
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            try:
                response = self._sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
                )
            except Exception as exc:
                log.warning("[%s] DeleteMessageBatch failed: %s", self.name, exc)
                continue
            deleted += len(response.get("Successful") or [])
            for failure in response.get("Failed") or []:
                log.warning("[%s] could not delete a message: %s", self.name, failure.get("Message") or failure.get("Code"))
        return deleted


class MappingRegistry(Mapping[str, EventSourceMapping]):
    """The running mappings by queue name; also findable by UUID (``by_uuid``)."""

    def __init__(self) -> None:
        self._by_name: dict[str, EventSourceMapping] = {}

    def add(self, mapping: EventSourceMapping) -> None:
        if mapping.name in self._by_name:
            raise ValueError(f"two mappings for queue {mapping.name}")
        self._by_name[mapping.name] = mapping

    def by_uuid(self, mapping_uuid: str) -> EventSourceMapping:
        for mapping in self._by_name.values():
            if mapping.spec.uuid == mapping_uuid:
                return mapping
        raise KeyError(mapping_uuid)

    def __getitem__(self, name: str) -> EventSourceMapping:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def set_enabled(self, name: str, enabled: bool) -> None:
        self._by_name[name].enabled = enabled

    def start(self) -> None:
        for mapping in self._by_name.values():
            mapping.start()

    def stop(self, timeout: float = 3.0) -> None:
        # Signal all first so the pollers wind down in parallel, not one after another.
        for mapping in self._by_name.values():
            mapping.request_stop()
        deadline = time.monotonic() + timeout
        for mapping in self._by_name.values():
            mapping.join(max(0.1, deadline - time.monotonic()))
