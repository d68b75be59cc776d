"""What an attempt used and cost: its duration, the consumer's memory, and Lambda's list price for it.

Lambda bills a consumer invocation per request plus per GB-second of duration. One invocation
runs a batch of records one after another, so an attempt is charged the GB-seconds of its own
processing and its share of the invocation's request charge (1 / records in the batch). The
prices are us-east-1 list prices (x86_64, the template's architecture); a target function's own
bill (a Lambda target, a state machine) is not included: it is billed to that function.
Peak memory is the consumer process's peak resident size when the attempt ended (``ru_maxrss``:
the container's high-water mark, which one attempt can only raise).
"""

from __future__ import annotations

import resource
import sys

from shared.models import AttemptUsage

PRICE_PER_GB_SECOND_USD = 0.0000166667
PRICE_PER_REQUEST_USD = 0.20 / 1_000_000


def peak_memory_mb() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024))


def attempt_usage(duration_ms: int, *, memory_mb: int | None, batch_records: int = 1) -> AttemptUsage:
    memory = memory_mb or 0
    compute = duration_ms / 1000 * memory / 1024 * PRICE_PER_GB_SECOND_USD
    request = PRICE_PER_REQUEST_USD / max(batch_records, 1)
    return AttemptUsage(
        duration_ms=duration_ms,
        memory_size_mb=memory_mb,
        peak_memory_mb=peak_memory_mb(),
        cost_nano_usd=round((compute + request) * 1e9),
    )
