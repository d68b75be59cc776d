"""The RealtimeEventsFunction: job changes from the table's stream, to webhooks and WebSocket subscribers.

Lambda's DynamoDB event source mapping (template.yaml: job items only, no batching window)
calls this with up to BatchSize records of a shard, in order. Each record becomes a
``JobChange`` (old and new image as jobs). Webhook deliveries are queued first
(shared/webhooks.py): if that fails the handler raises and Lambda retries the batch, so no
ending is lost. Then shared/realtime.py finds the subscribers and posts. A push that fails is
logged, not retried: the subscriber catches up with the job's current state when it
subscribes again.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.realtime.services import event_fanout, webhook_dispatcher
from shared.adapters.job_repository import from_item
from shared.observability import logger, traced
from shared.realtime import FanoutOutcome, JobChange


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
    changes = changes_of(list(event.get("Records") or []))
    webhooks = webhook_dispatcher().dispatch(changes)
    outcome = event_fanout().publish(changes)
    outcome.webhooks = webhooks
    return outcome


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcome = process(event, context)
    logger.info("events pushed", extra=outcome.as_log())
    return outcome.as_log()
