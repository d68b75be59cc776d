"""Time in one place.

``now_ms`` is the wall clock. A service reads time through the ``Clock`` it was built with: its
composition root's (functions/composition.py, functions/realtime/services.py, api/deps.py), which
is ``now_ms`` unless the process passes its own (``use_clock``: the local stack's, which tests move
forward). Nothing patches this module. Adapters stamp ``updatedAt`` on items they write with
``now_ms``: when the item was written, whatever the services' clock says.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], int]  # epoch milliseconds


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    """ISO 8601 in UTC with milliseconds: sorts as text in the order of time."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_iso(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
