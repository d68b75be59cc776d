"""The consumer Lambda: one SQS batch in, a partial batch response out.

Each record is one ``Worker.handle`` call, highest priority first; the records that raised are
reported as ``batchItemFailures`` so only they come back.
"""

from __future__ import annotations

import json
import time
from typing import Any

from shared.lambda_init import collector_paused

with collector_paused():
    from aws_lambda_powertools.utilities.typing import LambdaContext

    # Imported during Lambda's init, as before: the composition root builds from them at the first event.
    import processors.registry  # noqa: F401
    import shared.adapters.breakers
    import shared.adapters.job_repository
    import shared.breakers
    import shared.catalog  # noqa: F401
    from functions import composition
    from shared.adapters import queues
    from shared.errors import JobqError
    from shared.observability import emit, job_log_keys, logger, traced
    from shared.worker import Delivery, RetryLater

# Leave the lease a little longer than the invocation can live, so a redelivery never
# reclaims a job whose worker might still write.
LEASE_MARGIN_MS = 5000


def _memory_mb(context: LambdaContext | None) -> int | None:
    try:
        return int(context.memory_limit_in_mb) if context is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def _record_handler(record: dict[str, Any], context: LambdaContext | None, batch_records: int = 1) -> None:
    queue = queues.directory().by_arn(record["eventSourceARN"])
    delivery = Delivery(
        message_id=record["messageId"],
        body=record["body"],
        receipt_handle=record["receiptHandle"],
        queue=queue,
        receive_count=int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1),
        memory_mb=_memory_mb(context),
        batch_records=batch_records,
    )
    remaining = context.get_remaining_time_in_millis() + LEASE_MARGIN_MS if context else None
    with job_log_keys(job_id=_peek_job_id(record["body"]), queue=queue.name):
        composition.worker().handle(delivery, remaining_ms=remaining)


def _highest_priority_first(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The batch's records, highest ``priority`` first (its message carries it when not 0), else in
    the order received. A critical job received behind nine low ones runs first, so it waits only
    for a consumer to come free (at most one in-flight batch), not also for its place in the batch."""
    return sorted(records, key=lambda record: -_peek_priority(record))


def _peek_priority(record: Any) -> int:
    try:
        payload = json.loads(record["body"])
    except (ValueError, TypeError, KeyError):
        return 0  # not a job message: it fails in its turn, as before
    return queues.priority_of_body(payload) if isinstance(payload, dict) else 0


def _peek_job_id(body: str) -> str:
    try:
        return str(json.loads(body).get("jobId", ""))
    except (ValueError, AttributeError):
        return ""


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Each record on its own; the ones that raised come back (``ReportBatchItemFailures``).

    The loop Powertools' ``process_partial_response`` would run, written out: its import
    (asyncio, every event data class) is a fifth of the consumer's cold-start budget.
    """
    failures: list[dict[str, str]] = []
    started = time.monotonic()
    records = event.get("Records", [])
    try:
        for record in _highest_priority_first(records):
            try:
                _record_handler(record, context, len(records))
            except RetryLater:
                failures.append({"itemIdentifier": record["messageId"]})
            except Exception:
                logger.exception("record failed; it returns after its visibility timeout", extra={"message_id": record.get("messageId")})
                failures.append({"itemIdentifier": record["messageId"]})
    finally:
        _emit_busy_time(event, (time.monotonic() - started) * 1000)
    return {"batchItemFailures": failures}


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
    emit("ConsumerBusyTime", queue.name, elapsed_ms, unit="Milliseconds")  # type: ignore[arg-type]  # MetricUnit's value
