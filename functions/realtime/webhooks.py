"""The WebhookDeliveryFunction: one SQS batch of webhook deliveries in, a partial batch response out.

Each record is one ``WebhookDeliverer.deliver`` call (shared/webhooks.py); a delivery that
failed raises after setting the message's visibility to its backoff, and is reported in
``batchItemFailures`` so only it comes back, later. The loop is the one Powertools'
``process_partial_response`` runs, written out as the consumer's is: importing the batch
utility (asyncio, every event data class) would be most of this function's own cold start.
The container builds the deliverer alone (functions/realtime/services.py), not the WebSocket parts.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.realtime.services import webhook_deliverer
from shared.observability import logger, traced
from shared.webhooks import DeliveryFailed


def _deliver(record: dict[str, Any]) -> None:
    receive_count = int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
    webhook_deliverer().deliver(record["body"], receipt_handle=record["receiptHandle"], receive_count=receive_count)


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failures: list[dict[str, str]] = []
    for record in event.get("Records") or []:
        try:
            _deliver(record)
        except DeliveryFailed:
            failures.append({"itemIdentifier": record["messageId"]})  # it returns after the backoff set for it
        except Exception:
            logger.exception("webhook delivery failed; it returns after its visibility timeout", extra={"message_id": record.get("messageId")})
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
