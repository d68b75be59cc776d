"""How long a failed attempt waits before the next one."""

from __future__ import annotations

import random

from shared.models import Backoff, BackoffType


def backoff_seconds(backoff: Backoff, attempts_made: int, *, cap_seconds: int, rand: random.Random | None = None) -> int:
    """Seconds until the next attempt after ``attempts_made`` failed attempts.

    Fixed: ``delay`` every time. Exponential: ``delay * 2**(attempts_made-1)`` with
    "equal jitter" (half fixed, half random) so a burst of failures does not retry in
    lockstep. Capped at ``cap_seconds`` (SQS allows a visibility of 12 hours at most).
    SQS counts in whole seconds, so the result is rounded up.
    """
    cap_ms = min(cap_seconds, 12 * 3600) * 1000
    if backoff.type is BackoffType.FIXED:
        delay_ms = min(backoff.delay, cap_ms)
    else:
        exponent = max(attempts_made - 1, 0)
        base = min(backoff.delay * (2 ** min(exponent, 32)), cap_ms)
        half = base / 2
        delay_ms = half + (rand or random).uniform(0, half)
    return int(-(-delay_ms // 1000))
