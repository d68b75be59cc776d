"""The consumer switch: a queue's consumer is its Lambda event source mapping, enabled or disabled."""

from __future__ import annotations

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
