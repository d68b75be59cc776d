"""The WebhookDeliveryFunction: one SQS batch of webhook deliveries in, a partial batch response out.

Each record is one ``WebhookDeliverer.deliver`` call (shared/webhooks.py); a delivery that
failed raises after setting the message's visibility to its backoff, so Powertools reports it
as a batch item failure and only it comes back, later.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.realtime.services import webhook_deliverer
from shared.observability import logger, traced


def _record_handler(record: SQSRecord) -> None:
    webhook_deliverer().deliver(
        record.body, receipt_handle=record.receipt_handle, receive_count=int(record.attributes.approximate_receive_count or 1)
    )


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(process_partial_response(event=event, record_handler=_record_handler, processor=processor, context=context))
