"""What the counters and metric buckets read back as: a queue's live counts, its minute and hour buckets,
their summaries and per-type figures (the items and how the stream keeps them: shared/stats.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from shared.ports import CounterStore

Resolution = Literal["minute", "hour"]

# Processing-time histogram: bin i holds times <= BOUNDS_MS[i]; the last bin the rest.
BOUNDS_MS: tuple[int, ...] = (
    5, 10, 15, 25, 40, 60, 100, 150, 250, 400, 600, 1000, 1500, 2500, 4000, 6000,
    10_000, 15_000, 25_000, 40_000, 60_000, 100_000, 150_000, 250_000, 400_000, 600_000, 900_000,
)  # fmt: skip
BINS = len(BOUNDS_MS) + 1


def percentile(histogram: list[int], q: float) -> int | None:
    """The q-quantile (0..1) of a histogram, interpolated inside its bin; None when empty."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(histogram):
        if n and seen + n >= rank:
            low = BOUNDS_MS[i - 1] if i > 0 else 0
            high = BOUNDS_MS[i] if i < len(BOUNDS_MS) else BOUNDS_MS[-1]
            return round(low + (high - low) * max(0.0, rank - seen) / n)
        seen += n
    return BOUNDS_MS[-1]


@dataclass(frozen=True)
class TypeFigures:
    """One job type's attempts in a bucket (or several): their count, cost, durations."""

    attempts: int = 0
    cost_nano_usd: int = 0
    duration_sum_ms: int = 0
    histogram: tuple[int, ...] = (0,) * BINS

    @property
    def average_ms(self) -> float | None:
        timed = sum(self.histogram)
        return self.duration_sum_ms / timed if timed else None

    def slow_attempts(self, factor: float = 2.0) -> int:
        """Attempts over ``factor`` times the average: those in the bins whose lower bound is past it
        (a bin straddling the threshold is not counted, so this errs low, never alarming wrongly)."""
        average = self.average_ms
        if average is None:
            return 0
        threshold = factor * average
        return sum(n for i, n in enumerate(self.histogram) if i > 0 and BOUNDS_MS[i - 1] >= threshold)

    def plus(self, other: TypeFigures) -> TypeFigures:
        return TypeFigures(
            self.attempts + other.attempts,
            self.cost_nano_usd + other.cost_nano_usd,
            self.duration_sum_ms + other.duration_sum_ms,
            tuple(a + b for a, b in zip(self.histogram, other.histogram, strict=True)),
        )


def merge_types(many: Iterable[Mapping[str, TypeFigures]]) -> dict[str, TypeFigures]:
    merged: dict[str, TypeFigures] = {}
    for figures in many:
        for job_type, f in figures.items():
            merged[job_type] = merged[job_type].plus(f) if job_type in merged else f
    return merged


@dataclass(frozen=True)
class QueueStats:
    counts: dict[str, int]
    last_processed_at: str | None
    by_priority: dict[str, dict[str, int]] = field(default_factory=dict)  # band -> {waiting, delayed, active}


class _ProcessingTimes:
    """The processing-time figures of a bucket, or of several summed: mean and p95 of the attempts' durations."""

    pt_count: int
    pt_sum: int
    histogram: tuple[int, ...]

    @property
    def average_processing_ms(self) -> float | None:
        return self.pt_sum / self.pt_count if self.pt_count else None

    @property
    def p95_processing_ms(self) -> int | None:
        return percentile(list(self.histogram), 0.95)


@dataclass(frozen=True)
class Bucket(_ProcessingTimes):
    resolution: Resolution
    start_ms: int
    created: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    stalled: int = 0
    pt_count: int = 0
    pt_sum: int = 0
    histogram: tuple[int, ...] = (0,) * BINS
    types: Mapping[str, TypeFigures] = field(default_factory=dict)  # per job type (attempts, cost, durations)

    @property
    def processed(self) -> int:
        return self.completed + self.failed


@dataclass(frozen=True)
class BucketSummary(_ProcessingTimes):
    """Several buckets as one: what every view of "the last hour" or "the window" reports."""

    created: int
    completed: int
    failed: int
    pt_count: int
    pt_sum: int
    histogram: tuple[int, ...]

    @property
    def finished(self) -> int:
        return self.completed + self.failed

    @property
    def failure_rate(self) -> float:
        """Failed / (completed + failed); 0.0 when nothing finished."""
        return self.failed / self.finished if self.finished else 0.0


def summarize(buckets: Iterable[Bucket]) -> BucketSummary:
    items = list(buckets)
    return BucketSummary(
        created=sum(b.created for b in items),
        completed=sum(b.completed for b in items),
        failed=sum(b.failed for b in items),
        pt_count=sum(b.pt_count for b in items),
        pt_sum=sum(b.pt_sum for b in items),
        histogram=tuple(sum(column) for column in zip(*(b.histogram for b in items), strict=True)) if items else (0,) * BINS,
    )


HOUR_MS = 3_600_000


def last_hour_minutes(counters: CounterStore, queue_name: str, now: int) -> list[Bucket]:
    """The minute buckets of the hour up to ``now``: what every "last hour" figure (failure rate,
    throughput, slow attempts) of the health sweep and of a queue's summary is computed on."""
    return counters.read_buckets(queue_name, now - HOUR_MS + 1, "minute")


__all__ = [
    "BINS",
    "BOUNDS_MS",
    "HOUR_MS",
    "Bucket",
    "BucketSummary",
    "QueueStats",
    "Resolution",
    "TypeFigures",
    "last_hour_minutes",
    "merge_types",
    "percentile",
    "summarize",
]
