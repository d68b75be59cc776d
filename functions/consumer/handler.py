"""The consumer Lambda: one SQS batch in, a partial batch response out.

Each record is one ``Worker.handle`` call; Powertools' batch utility reports the
records that raised as ``batchItemFailures`` so only they come back.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from processors.registry import ProcessorRegistry
from shared import queues
from shared.catalog import ProcessorCatalog
from shared.errors import JobqError
from shared.observability import emit, job_log_keys, logger, tracer
from shared.settings import get_settings
from shared.store import JobStore
from shared.worker import Delivery, Worker

# Leave the lease a little longer than the invocation can live, so a redelivery never
# reclaims a job whose worker might still write.
LEASE_MARGIN_MS = 5000


@lru_cache(maxsize=1)
def _worker() -> Worker:
    settings = get_settings()
    store = JobStore(settings.table_name)
    return Worker(store, settings, ProcessorRegistry(ProcessorCatalog(store, settings.target_cache_seconds)).resolve)


def _record_handler(record: SQSRecord, context: LambdaContext | None) -> None:
    queue = queues.directory().by_arn(record.event_source_arn)
    delivery = Delivery(
        message_id=record.message_id,
        body=record.body,
        receipt_handle=record.receipt_handle,
        queue=queue,
        receive_count=int(record.attributes.approximate_receive_count or 1),
    )
    remaining = context.get_remaining_time_in_millis() + LEASE_MARGIN_MS if context else None
    with job_log_keys(job_id=_peek_job_id(record), queue=queue.name):
        _worker().handle(delivery, remaining_ms=remaining)


def _peek_job_id(record: SQSRecord) -> str:
    try:
        return str(record.json_body.get("jobId", ""))
    except (ValueError, AttributeError):
        return ""


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A processor per invocation: the local stack calls this handler from several threads.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    started = time.monotonic()
    try:
        return process_partial_response(
            event=event,
            record_handler=lambda record: _record_handler(record, context),
            processor=processor,
            context=context,
        )
    finally:
        _emit_busy_time(event, (time.monotonic() - started) * 1000)


def _emit_busy_time(event: dict[str, Any], elapsed_ms: float) -> None:
    """``ConsumerBusyTime`` per queue: its sum per minute / 60 s is the consumer's average
    concurrency over that minute, exact per stack (the dashboard's concurrency graph)."""
    records = event.get("Records") or []
    if not records:
        return
    try:
        queue = queues.directory().by_arn(str(records[0].get("eventSourceARN", "")))
    except JobqError:
        return  # not a jobq queue (its records failed already and say why): a metric never fails a batch
    emit("ConsumerBusyTime", queue.name, elapsed_ms, unit="Milliseconds")  # type: ignore[arg-type]
