"""The RealtimeEventsFunction: job changes from the table's stream pushed to WebSocket subscribers.

Lambda's DynamoDB event source mapping (template.yaml: job items only, no batching window)
calls this with up to BatchSize records of a shard, in order. Each record becomes a
``JobChange`` (old and new image as jobs); shared/realtime.py decides the event, finds the
subscribers and posts. A push that fails is logged, not retried: the subscriber catches up
with the job's current state when it subscribes again.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.realtime.services import event_fanout
from shared.observability import logger, tracer
from shared.realtime import FanoutOutcome, JobChange
from shared.store import from_item


def changes_of(records: list[dict[str, Any]]) -> list[JobChange]:
    changes = []
    for record in records:
        images = record.get("dynamodb") or {}
        old, new = images.get("OldImage"), images.get("NewImage")
        try:
            changes.append(JobChange(from_item(old) if old else None, from_item(new) if new else None))
        except ValueError as err:  # not a job as this code knows it: nothing to push
            logger.warning("stream record skipped", extra={"event_id": record.get("eventID"), "error": str(err)[:200]})
    return changes


def process(event: dict[str, Any], context: LambdaContext | None = None) -> FanoutOutcome:
    return event_fanout().publish(changes_of(list(event.get("Records") or [])))


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcome = process(event, context)
    logger.info("events pushed", extra=outcome.as_log())
    return outcome.as_log()
