"""The EventsFunction: a batch of the jobs table's stream in, flows moved on, queue counters and metric buckets out.

Lambda's DynamoDB event source mapping (template.yaml: NEW_AND_OLD_IMAGES, a filter that lets
only job items through, one batch per shard at a time) calls this with up to BatchSize records.
``shared.adapters.counters.apply_stream_records`` counts each record once, whatever the redelivery
(a per-shard high-water mark moved in the counters' own transaction, shared/stats.py); raising makes
Lambda retry the batch. The mapping has a tumbling window only so that Lambda names the shard
(``shardId``); with one, Lambda wants ``state`` in the response, which this function does not use.
Flows go first (shared/flow_events.py ``FlowEvents``: children counted against their parents, parents
moved on, follow-up jobs enqueued): each of their steps is idempotent on its own, so a batch
that fails later and comes again changes no parent's count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

# Imported during Lambda's init, as before: the composition root builds from them at the first event.
import shared.adapters.flows
import shared.adapters.scheduler
import shared.adapters.sqs
import shared.flow_events
import shared.transitions  # noqa: F401
from functions import composition
from shared import stats
from shared.adapters import counters
from shared.adapters.job_repository import readable_record
from shared.observability import logger, traced


def process(event: dict[str, Any]) -> stats.BatchOutcome:
    # The job items' stored form spelled out (short names, packed data, derived ids): what the readers parse.
    records: list[Mapping[str, Any]] = [readable_record(r) for r in event.get("Records") or []]
    flows = composition.flow_events().apply(records)
    if flows.counted or flows.enqueued or flows.parents_moved or flows.cancelled:
        logger.info("flows moved on", extra=dict(flows.__dict__))
    return counters.apply_stream_records(records, shard=stats.shard_of(event))


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcome = process(event)
    logger.info("stream batch applied", extra=outcome.as_log())
    return {"state": {}}  # a tumbling-window invocation without ``state`` counts as failed
