"""Per-user quotas: how many jobs a user may create per minute, and how many may be unfinished at once.

    jobsPerMinute       creates admitted per user per calendar minute (a fixed window): one
                        conditional ``ADD n`` on the user's window item, which expires by TTL;
                        a bulk request takes all its items in that one write, or none
    maxUnfinishedJobs   the user's waiting, delayed, active and stalled jobs over every queue:
                        the ``account`` back-pressure counter (shared/admission.py), taken at
                        create and given back by the stream when the job finishes

Both default to the stack's parameters (``UserJobsPerMinute``, ``UserMaxUnfinishedJobs``; 0:
no limit); an admin may set either for one user (``PUT /quotas/{userId}``), stored in one small
item per user and cached per container like queue policies. A request past a quota stores
nothing and gets 429 with ``Retry-After``: the seconds left in the minute, or the back-pressure
delay. Service jobs (schedule firings) are counted but never refused, and take no rate.

What a create costs: one small UpdateItem for the window and one for the account counter (both
in the user's own partition, so no key is shared between users), and a cached GetItem of the
override. Jobs created before quotas existed hold no place and never count toward one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
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


class QuotaStore(Protocol):
    def take_rate(self, user_id: str, window: int, count: int, limit: int, *, expires_at: int) -> bool:
        """Add ``count`` to the user's window ``window`` if it stays within ``limit``; False if it would not."""
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
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

    def take_rate(self, user_id: str, count: int = 1) -> None:
        """Count ``count`` creates against the user's minute, or raise TooManyJobs (nothing counted)."""
        limit = self.of(user_id).jobs_per_minute
        if limit is None or count <= 0:
            return
        if count > limit:
            raise Invalid(f"this request creates {count} jobs; your quota is {limit} jobs per minute: send at most {limit} per request")
        now = self.clock()
        window = int(now // WINDOW_SECONDS)
        if not self.store.take_rate(user_id, window, count, limit, expires_at=(window + 2) * WINDOW_SECONDS):
            retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
            raise TooManyJobs(
                f"you created {limit} jobs this minute, your quota (jobsPerMinute); retry after {retry_after} s", retry_after=retry_after
            )

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


__all__ = ["WINDOW_SECONDS", "Quota", "QuotaOverride", "QuotaStore", "QuotaUsage", "Quotas"]
