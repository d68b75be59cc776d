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

Blocks (the stack's ``QuotaBlockSize`` N; 1: none, exactly the above): that write takes up to N
creates of the minute and N places at once, and this container spends them on the user's next
creates without writing, so a create costs ~1/N write. The conditions are the same, so the item
never counts more than the limits and no set of containers admits past them together. When less
than a block is left, the failed condition's old item says how much, and the write takes what
fits: the last of a quota is taken one by one, exactly. A block is void when its minute ends.

What a block holds unspent is counted but not used: while it does, a user may be refused early
by at most (N-1) creates and (N-1) places per other API container holding a block of that user
(creates: until the minute ends; places: until two minutes after it). Places are not left taken
when a container ends: a block's places are counted in ``unfinished`` and also in the account
item's slot of their minute (``blockPlaces0/1``); the stream moves each one out of the slot when
it sees the INSERT of the job that spent it (its ``held`` says ``accountBlock``); the first write
two minutes on empties that slot and gives back what is left, the places no job spent. A job's
record that reaches the stream over a minute late is given back once too early (admitting one
more until the stream catches up, then corrected). ``usage`` subtracts what the answering
container holds. A bulk request or a flow counts all its creates in one write, this container's
held creates first, and gives its held places back in that write.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from shared.admission import ACCOUNT_BLOCK_COUNTER, ACCOUNT_COUNTER
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


@dataclass(frozen=True)
class Lease:
    """What one write to the account item took: ``creates`` counted in rate window ``window`` (another
    container's clock may have turned the minute first: then the next one), and ``places`` unfinished places."""

    window: int
    creates: int
    places: int


@dataclass
class _Block:
    """What this container holds of one user's quota and has not spent, taken in rate window
    ``window``: creates and unfinished places, void once the minute turns (the item gives the places back)."""

    window: int = -1
    creates: int = 0
    places: int = 0


class Refused(StrEnum):
    """Which quota refused a take (nothing was taken)."""

    RATE = "rate"
    UNFINISHED = "unfinished"


class QuotaStore(Protocol):
    def take(self, user_id: str, window: int, count: int, limit: int, *, place_limit: int | None = None) -> Refused | None:
        """In one write: add ``count`` to the user's window ``window`` if it stays within ``limit`` and,
        with ``place_limit``, one unfinished place if fewer than that are taken; what refused, or None."""
        ...

    def lease(
        self,
        user_id: str,
        window: int,
        count: int,
        limit: int,
        *,
        extra: int = 0,
        places: int = 0,
        extra_places: int = 0,
        place_limit: int | None = None,
        give_back: int = 0,
        block: bool = False,
    ) -> Refused | Lease:
        """``take`` for a block: up to ``extra`` more creates and ``extra_places`` more places if they
        fit, ``give_back`` places held returned in the same write (shared/adapters/quotas.py)."""
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
        block_size: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.block_size = max(1, block_size)
        self._blocks: dict[str, _Block] = {}  # user -> what this container holds unspent (block_size > 1)
        self._user_locks: dict[str, threading.Lock] = {}
        self._block_lock = threading.Lock()
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

    def take_rate(self, user_id: str, count: int = 1, *, with_place: bool = False, at: float | None = None) -> str | None:
        """Count ``count`` creates against the user's minute, or raise TooManyJobs (nothing counted).

        ``with_place``: take the job's unfinished place (maxUnfinishedJobs) in the same write, if the
        user has both quotas; then the counter the job holds it in (its ``held``, shared/admission.py),
        else None. ``at``: the job's createdAt (epoch s), which names the minute (the stream finds a
        block's place by it); default the clock.
        """
        quota = self.of(user_id)
        limit = quota.jobs_per_minute
        if limit is None or count <= 0:
            return None
        if count > limit:
            raise Invalid(f"this request creates {count} jobs; your quota is {limit} jobs per minute: send at most {limit} per request")
        place_limit = quota.max_unfinished_jobs if with_place else None
        now = self.clock() if at is None else at
        window = int(now // WINDOW_SECONDS)
        refused = self._spend(user_id, window, count, limit, place_limit) if self.block_size > 1 else (
            self.store.take(user_id, window, count, limit, place_limit=place_limit)
        )
        if refused is Refused.RATE:
            retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
            raise TooManyJobs(
                f"you created {limit} jobs this minute, your quota (jobsPerMinute); retry after {retry_after} s", retry_after=retry_after
            )
        if refused is Refused.UNFINISHED:
            raise TooManyJobs(
                f"you have {place_limit} unfinished jobs, your quota; retry after some finish", retry_after=self.unfinished_retry_after
            )
        if place_limit is None:
            return None
        return ACCOUNT_BLOCK_COUNTER if self.block_size > 1 else ACCOUNT_COUNTER

    def _spend(self, user_id: str, window: int, count: int, limit: int, place_limit: int | None) -> Refused | None:
        """Count ``count`` creates (and, with ``place_limit``, one place) from this container's block of
        the user's quota, taking a new block in one write when it runs short: most creates write nothing."""
        with self._block_lock:
            if len(self._blocks) > 10_000:
                self._blocks.clear()  # what they held is given back with their minute's slot
                self._user_locks.clear()
            lock = self._user_locks.setdefault(user_id, threading.Lock())
        with lock:  # one write at a time per user in this container
            block = self._blocks.setdefault(user_id, _Block())
            if block.window != window:
                block.window, block.creates, block.places = window, 0, 0  # void once the minute turns (the item gives them back)
            if count > 1:
                # A bulk request or a flow: all its creates at once (this block's first); the places held are
                # given back in the same write, as a flow takes its places with its queues' counters.
                held = min(block.creates, count)
                if held == count and not block.places:
                    block.creates -= count
                    return None
                lease = self.store.lease(user_id, window, count - held, limit, give_back=block.places, block=True)
                if isinstance(lease, Refused):
                    return lease  # nothing taken, nothing given back
                block.creates -= held
                block.places = 0
                return None
            need_rate, need_place = block.creates < 1, place_limit is not None and block.places < 1
            if need_rate or need_place:
                extra = self.block_size - 1
                lease = self.store.lease(
                    user_id,
                    window,
                    1 if need_rate else 0,
                    limit,
                    extra=extra if need_rate else 0,
                    places=1 if need_place else 0,
                    extra_places=extra if need_place else 0,
                    place_limit=place_limit if need_place else None,
                    block=True,
                )
                if isinstance(lease, Refused):
                    return lease
                block.creates += lease.creates
                block.places += lease.places
            block.creates -= 1
            block.places -= 1 if place_limit is not None else 0
            return None

    def held(self, user_id: str) -> tuple[int, int]:
        """What this container holds of the user's quota unspent: ``(creates this minute, places)``."""
        window = int(self.clock() // WINDOW_SECONDS)
        with self._block_lock:
            block = self._blocks.get(user_id) or _Block()
            return (block.creates, block.places) if block.window == window else (0, 0)

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
        creates, places = self.held(user_id)  # counted on the item, not spent yet (other containers' blocks are not known here)
        return QuotaUsage(self.of(user_id), self.store.rate_used(user_id, window) - creates, self.store.unfinished(user_id) - places)


__all__ = ["WINDOW_SECONDS", "Quota", "QuotaOverride", "QuotaStore", "QuotaUsage", "Quotas", "Refused"]
