"""Per-user quotas: how many jobs a user may create per minute, and how many may be unfinished at once.

    jobsPerMinute       creates admitted per user per calendar minute (a fixed window): the
                        window's number and count live on the user's account item, and a create
                        adds to the count with one conditional write (a bulk request takes all
                        its items in that one write, or none)
    maxUnfinishedJobs   the user's waiting, delayed, active and stalled jobs over every queue:
                        the ``account`` back-pressure counter (shared/admission.py) on that same
                        item, taken at create and given back by the stream when the job finishes

Both default to the stack's parameters (``UserJobsPerMinute``, ``UserMaxUnfinishedJobs``; 0:
no limit); an admin may set either for one user (``PUT /quotas/{userId}``), stored in one small
item per user and cached per container like queue policies. A request past a quota stores
nothing and gets 429 with ``Retry-After``: the seconds left in the minute, or the back-pressure
delay. Service jobs (schedule firings) are counted but never refused, and take no rate.

What a create costs: one small UpdateItem on the user's account item, taking the rate and the
unfinished place together (in the user's own partition, so no key is shared between users), and
a cached GetItem of the override. The first create of a minute writes twice: a write assumes the
window this container last saw for the user, and the item as it was (returned by the failed
condition, no read) says which window is current. A queue with limits of its own takes the place
with its counters in one transaction (shared/admission.py) and the rate apart. Jobs created
before quotas existed hold no place and never count toward one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from shared.errors import Invalid, TooManyJobs

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class QuotaOverride:
    """One user's own limits; None: the stack's default applies; 0: no limit."""

    jobs_per_minute: int | None = None
    max_unfinished_jobs: int | None = None


@dataclass(frozen=True)
class Quota:
    """The limits in force for a user (None: no limit), and whether an override set them."""

    jobs_per_minute: int | None
    max_unfinished_jobs: int | None
    overridden: bool = False


@dataclass(frozen=True)
class QuotaUsage:
    quota: Quota
    created_this_minute: int
    unfinished_jobs: int


class Refused(StrEnum):
    """Which quota refused a take (nothing was taken)."""

    RATE = "rate"
    UNFINISHED = "unfinished"


class QuotaStore(Protocol):
    def take(self, user_id: str, window: int, count: int, limit: int, *, place_limit: int | None = None) -> Refused | None:
        """In one write: add ``count`` to the user's window ``window`` if it stays within ``limit`` and,
        with ``place_limit``, one unfinished place if fewer than that are taken; what refused, or None."""
        ...

    def rate_used(self, user_id: str, window: int) -> int: ...
    def unfinished(self, user_id: str) -> int: ...
    def get_override(self, user_id: str) -> QuotaOverride | None: ...
    def put_override(self, user_id: str, override: QuotaOverride, *, now: str) -> None: ...
    def delete_override(self, user_id: str) -> None: ...


def _limit(value: int) -> int | None:
    return value or None  # 0: no limit


class Quotas:
    def __init__(
        self,
        store: QuotaStore,
        *,
        jobs_per_minute: int,
        max_unfinished_jobs: int,
        cache_seconds: float,
        unfinished_retry_after: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.unfinished_retry_after = unfinished_retry_after
        self.default = Quota(_limit(jobs_per_minute), _limit(max_unfinished_jobs))
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[str, tuple[float, Quota]] = {}

    def of(self, user_id: str) -> Quota:
        """The user's quota (cached ``cache_seconds`` per container)."""
        now = time.monotonic()
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        override = self.store.get_override(user_id)
        quota = self.default
        if override is not None:
            quota = Quota(
                self.default.jobs_per_minute if override.jobs_per_minute is None else _limit(override.jobs_per_minute),
                self.default.max_unfinished_jobs if override.max_unfinished_jobs is None else _limit(override.max_unfinished_jobs),
                overridden=True,
            )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[user_id] = (now + self.cache_seconds, quota)
        return quota

    def forget(self, user_id: str) -> None:
        self._cache.pop(user_id, None)

    def take_rate(self, user_id: str, count: int = 1, *, with_place: bool = False) -> bool:
        """Count ``count`` creates against the user's minute, or raise TooManyJobs (nothing counted).

        ``with_place``: take the job's unfinished place (maxUnfinishedJobs) in the same write, if the
        user has both quotas; True when it did (the job then holds the ``account`` place).
        """
        quota = self.of(user_id)
        limit = quota.jobs_per_minute
        if limit is None or count <= 0:
            return False
        if count > limit:
            raise Invalid(f"this request creates {count} jobs; your quota is {limit} jobs per minute: send at most {limit} per request")
        place_limit = quota.max_unfinished_jobs if with_place else None
        now = self.clock()
        window = int(now // WINDOW_SECONDS)
        refused = self.store.take(user_id, window, count, limit, place_limit=place_limit)
        if refused is Refused.RATE:
            retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
            raise TooManyJobs(
                f"you created {limit} jobs this minute, your quota (jobsPerMinute); retry after {retry_after} s", retry_after=retry_after
            )
        if refused is Refused.UNFINISHED:
            raise TooManyJobs(
                f"you have {place_limit} unfinished jobs, your quota; retry after some finish", retry_after=self.unfinished_retry_after
            )
        return place_limit is not None

    def set(self, user_id: str, override: QuotaOverride, *, now: str) -> None:
        """Give the user limits of their own (this container applies them at once, others within ``cache_seconds``)."""
        self.store.put_override(user_id, override, now=now)
        self.forget(user_id)

    def clear(self, user_id: str) -> None:
        self.store.delete_override(user_id)
        self.forget(user_id)

    def usage(self, user_id: str) -> QuotaUsage:
        self.forget(user_id)
        window = int(self.clock() // WINDOW_SECONDS)
        return QuotaUsage(self.of(user_id), self.store.rate_used(user_id, window), self.store.unfinished(user_id))


__all__ = ["WINDOW_SECONDS", "Quota", "QuotaOverride", "QuotaStore", "QuotaUsage", "Quotas", "Refused"]
