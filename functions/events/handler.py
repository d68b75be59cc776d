"""The EventsFunction: a batch of the jobs table's stream in, queue counters and metric buckets out.

Lambda's DynamoDB event source mapping (template.yaml: NEW_AND_OLD_IMAGES, a filter that lets
only job items through, one batch per shard at a time) calls this with up to BatchSize records.
The whole batch is one unit: ``shared.adapters.counters.apply_stream_records`` writes it in one transaction
that a redelivery of the same batch turns into a no-op, and raising makes Lambda retry it as is.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import stats
from shared.adapters import counters
from shared.observability import logger, traced


def process(event: dict[str, Any]) -> stats.BatchOutcome:
    return counters.apply_stream_records(list(event.get("Records") or []))


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    outcome = process(event)
    logger.info("stream batch applied", extra=outcome.as_log())
