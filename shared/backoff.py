"""How long a failed attempt waits before the next one: fixed or exponential with jitter, or a job type's own."""

from __future__ import annotations

import random
from collections.abc import Callable

from shared.models import Backoff, BackoffType

# A custom backoff (BullMQ's backoffStrategy): (attempts made, the error) -> milliseconds to wait,
# or None for the job's own backoff. Registered per job type by the code that ships the processor.
CustomBackoff = Callable[[int, BaseException], int | None]
_custom: dict[tuple[str, str], CustomBackoff] = {}
ANY_QUEUE = "*"


def register_backoff(job_type: str, strategy: CustomBackoff, *, queue: str = ANY_QUEUE) -> CustomBackoff:
    """Use ``strategy`` for failed attempts of ``job_type`` (on ``queue``, or on every queue)."""
    _custom[(queue, job_type)] = strategy
    return strategy


def custom_backoff(job_type: str, *, queue: str = ANY_QUEUE) -> Callable[[CustomBackoff], CustomBackoff]:
    """The decorator form: ``@custom_backoff("crawl")`` over ``def wait(attempts, error) -> int | None``."""

    def register(strategy: CustomBackoff) -> CustomBackoff:
        return register_backoff(job_type, strategy, queue=queue)

    return register


def unregister_backoff(job_type: str, *, queue: str = ANY_QUEUE) -> None:
    _custom.pop((queue, job_type), None)


def backoff_seconds(backoff: Backoff, attempts_made: int, *, cap_seconds: int, rand: random.Random | None = None) -> int:
    """Seconds until the next attempt after ``attempts_made`` failed attempts.

    Fixed: ``delay`` every time. Exponential: ``delay * 2**(attempts_made-1)``. A share
    ``jitter`` of the wait is random (exponential: half by default, "equal jitter", so a burst
    of failures does not retry in lockstep; fixed: none by default). Capped at ``cap_seconds``
    (SQS allows a visibility of 12 hours at most). SQS counts in whole seconds: rounded up.
    """
    cap_ms = min(cap_seconds, 12 * 3600) * 1000
    if backoff.type is BackoffType.FIXED:
        base = min(backoff.delay, cap_ms)
        jitter = backoff.jitter or 0.0
    else:
        exponent = max(attempts_made - 1, 0)
        base = min(backoff.delay * (2 ** min(exponent, 32)), cap_ms)
        jitter = 0.5 if backoff.jitter is None else backoff.jitter
    delay_ms = base * (1 - jitter) + (rand or random).uniform(0, base * jitter)  # nosec B311 - jitter, not a secret
    return int(-(-delay_ms // 1000))


def wait_seconds(
    backoff: Backoff, attempts_made: int, error: BaseException | None, *, queue: str, job_type: str, cap_seconds: int
) -> int:
    """The wait before the next attempt: the job type's custom backoff if one is registered and answers, else ``backoff``."""
    strategy = _custom.get((queue, job_type)) or _custom.get((ANY_QUEUE, job_type))
    if strategy is not None and error is not None:
        try:
            ms = strategy(attempts_made, error)
        except Exception:  # a broken strategy must not lose the retry: the job's own backoff applies
            ms = None
        if ms is not None:
            return max(0, min(int(-(-int(ms) // 1000)), min(cap_seconds, 12 * 3600)))
    return backoff_seconds(backoff, attempts_made, cap_seconds=cap_seconds)
