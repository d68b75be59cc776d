"""A Lambda container's init: its imports run with the garbage collector paused.

What an entry point imports (modules, classes, the botocore service models, the routes) lives as
long as the container, so a collection during the init frees nothing; yet each one walks the whole
heap botocore has built by then (5-18 % of the consumer's import CPU here, bench/cold_start.py).
After the init the collector runs again, and what the init made is frozen (``gc.freeze``): later
collections skip it too (the API's first request costs the same, ~55 ms, with or without).

Only inside Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set): tests and the local stack import the entry
points into long-lived processes whose collector they tune themselves.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Around an entry point's imports; the collector runs again (with the init frozen) on leaving."""
    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
