"""Time in one place: every service's clock is ``now_ms`` unless it is given another.

A process that runs on a clock of its own (the local stack, whose tests move time forward)
says so once with ``use(its_now_ms)``; nothing patches this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], int]  # epoch milliseconds


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


_source: Clock = wall_clock_ms


def now_ms() -> int:
    return _source()


def use(source: Clock | None) -> None:
    """Make ``now_ms`` follow ``source`` (None: the wall clock again)."""
    global _source
    _source = source or wall_clock_ms


def iso(ms: int) -> str:
    """ISO 8601 in UTC with milliseconds: sorts as text in the order of time."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_iso(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
