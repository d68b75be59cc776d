"""The consumer switch: a queue's consumer is its Lambda event source mapping, enabled or disabled."""

from __future__ import annotations

import time
from datetime import datetime

from shared.adapters import clients
from shared.adapters.aws_errors import aws_code, aws_errors
from shared.errors import Conflict, JobqError, Unavailable
from shared.models import QueueInfo
from shared.observability import logger

_BUSY = ("ResourceInUseException", "ResourceConflictException")


def _mapping_id(queue: QueueInfo) -> str:
    if not queue.event_source_mapping_id:
        raise Unavailable(f"queue {queue.name} publishes no eventSourceMappingId; redeploy the stack")
    return queue.event_source_mapping_id


def set_consumer_enabled(queue: QueueInfo, *, enabled: bool) -> str | None:
    """Enable or disable the consumer's event source mapping; Lambda's State after the call."""
    try:
        with aws_errors(f"cannot switch the consumer of {queue.name}"):
            out = clients.client("lambda").update_event_source_mapping(UUID=_mapping_id(queue), Enabled=enabled)
    except JobqError as err:
        if aws_code(err) in _BUSY:
            raise Conflict(f"the consumer of {queue.name} is being updated; try again in a few seconds") from err
        # Any other answer (a mapping gone missing included) is the deployment's trouble, not the caller's.
        raise Unavailable(f"cannot switch the consumer of {queue.name} ({aws_code(err) or 'no answer'}); retry the request") from err
    state = out.get("State")
    return str(state) if state is not None else None


def set_max_concurrency(queue: QueueInfo, maximum: int) -> None:
    """The consumer's event source mapping runs at most ``maximum`` invocations at once (Lambda: 2..1000)."""
    try:
        with aws_errors(f"cannot change the concurrency of {queue.name}"):
            clients.client("lambda").update_event_source_mapping(UUID=_mapping_id(queue), ScalingConfig={"MaximumConcurrency": maximum})
    except JobqError as err:
        if aws_code(err) in _BUSY:
            raise Conflict(f"the consumer of {queue.name} is being updated; try again in a few seconds") from err
        raise Unavailable(f"cannot change the concurrency of {queue.name} ({aws_code(err) or 'no answer'}); retry the request") from err


def consumer_state(queue: QueueInfo) -> str | None:
    """Lambda's State of the consumer's event source mapping (None if it cannot be read)."""
    try:
        with aws_errors(f"cannot read the consumer of {queue.name}"):
            state = clients.client("lambda").get_event_source_mapping(UUID=_mapping_id(queue)).get("State")
    except JobqError as err:
        logger.warning("event source mapping state unavailable", extra={"queue": queue.name, "error": err.message})
        return None
    return str(state) if state is not None else None


def reconcile(queue: QueueInfo, *, paused: bool, max_concurrency: int | None, settle_seconds: float = 0) -> list[str]:
    """Put back what the queue's policy says when a deploy changed its mapping (Enabled, MaximumConcurrency).

    CloudFormation writes the template's values whenever it updates the mapping, so a paused
    queue would start again, or a concurrency set at runtime fall back; the HealthFunction calls
    this every sweep for the queues whose policy holds either. A mapping modified within
    ``settle_seconds`` is left alone. Returns what it restored."""
    with aws_errors(f"cannot read the consumer of {queue.name}"):
        mapping = clients.client("lambda").get_event_source_mapping(UUID=_mapping_id(queue))
    modified = mapping.get("LastModified")
    if settle_seconds and isinstance(modified, datetime) and time.time() - modified.timestamp() < settle_seconds:
        return []  # changed moments ago: a pause or resume may be between its mapping and its policy write
    fixes: dict[str, object] = {}
    if paused and mapping.get("State") in ("Enabled", "Enabling"):
        fixes["Enabled"] = False
    if max_concurrency is not None and (mapping.get("ScalingConfig") or {}).get("MaximumConcurrency") != max_concurrency:
        fixes["ScalingConfig"] = {"MaximumConcurrency": max_concurrency}
    if fixes:
        with aws_errors(f"cannot restore the consumer of {queue.name}"):
            clients.client("lambda").update_event_source_mapping(UUID=_mapping_id(queue), **fixes)
        logger.warning("consumer mapping restored to the queue's policy (a deploy had changed it)", extra={"queue": queue.name, "restored": sorted(fixes)})
    return sorted(fixes)
