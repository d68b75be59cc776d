"""Flow control: what may start now. Rate limits per queue and per group key, at most N active per key, timeouts.

The rules (issue 13), free of the AWS SDK; ``shared/adapters/limits.py`` keeps the counters in DynamoDB.

* **Rate limit** ``{max, duration}``: at most ``max`` jobs *start* in each window of
  ``duration`` ms, windows aligned to the epoch (BullMQ's limiter counts the same way). The
  consumer adds 1 to the window's counter item (one UpdateItem, ``ADD``, the new value
  returned) just before it claims a job; the n-th delivery of a window starts only if
  n <= max. A delivery past the limit is the (n - max)-th too many: its message's visibility
  moves to the start of window ``+ ceil((n - max) / max)``, so a backlog spreads over the
  windows it needs instead of coming back all at once, and no attempt is spent.
* **Groups** (a key per job: ``options.group``, or a path into its data per job type): the
  same rate limit per key, and at most ``maxActive`` jobs of a key active at once (a slot:
  the job's lease token in the key's slots item, bounded by ``maxActive``; a slot whose lease
  ran out is taken back by the next claim, so a consumer that died leaks nothing). Overrides
  per key; a key can be paused. Every counter item carries a TTL: idle keys cost nothing.
* **keepLastIfActive** (deduplication): at most one job of a dedup key active at once, with or
  without a ``groups`` policy: the job carries the key (``Job.exclusive_key``, and in its message)
  and holds the key's exclusive slot, a slot as above with a built-in ``maxActive`` of 1, while it runs.
* **Timeouts**: ``options.timeout`` (ms) or the queue's ``defaultTimeout``; below the
  consumer's Lambda timeout, checked at creation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import Field, field_validator

from shared.camel import CamelModel

MAX_GROUP_KEY = 128
# '#' separates the parts of the counters' keys; '/' and control characters could not be named in
# the /queues/{name}/groups/{key} routes (a path segment).
GROUP_KEY_PATTERN = r"^[^\s#/\x00-\x1f\x7f][^#/\x00-\x1f\x7f]{0,127}$"
_NOT_IN_KEYS = re.compile(r"[#/\x00-\x1f\x7f]")
MAX_OVERRIDES = 1000
# A window counter outlives its window by this long (TTL), so a late reader still finds it.
WINDOW_TTL_MARGIN_SECONDS = 120
# A key's slots item is kept this long after its last claim (TTL refreshed on every claim).
SLOTS_IDLE_TTL_SECONDS = 86400
# An exclusive slot's key (keepLastIfActive) starts with this, which no group key can (GROUP_KEY_PATTERN):
# the two never share a slot, and the adapter keeps exclusive slots out of GET /queues/{name}/groups.
EXCLUSIVE_SLOT_PREFIX = "#"
# A paused key's jobs look again after this many seconds (no attempt spent).
PAUSED_KEY_RECHECK_SECONDS = 30
# SQS moves a message to the DLQ after maxReceiveCount receives: a job that waits often is sent
# again as a new message (its receive count starts over) once it has been received this share of it.
RESEND_AFTER_RECEIVE_SHARE = 0.5
SQS_MAX_VISIBILITY_SECONDS = 12 * 3600


class _Model(CamelModel):
    """Flow control's settings (part of a queue's policy): camelCase, unknown fields refused."""


class RateLimit(_Model):
    """At most ``max`` jobs start per ``duration`` ms (seed 001's 5/min is ``{"max": 5, "duration": 60000}``)."""

    max: int = Field(ge=1, le=1_000_000, description="Jobs started per window.")
    duration: int = Field(ge=1000, le=86_400_000, description="The window in milliseconds (1 s to 1 day).")

    def window_start(self, now_ms: int) -> int:
        return now_ms - now_ms % self.duration

    def wait_seconds(self, now_ms: int, taken: int) -> int:
        """Seconds until the window where the ``taken``-th start of this window fits (0: it fits now)."""
        if taken <= self.max:
            return 0
        ahead = math.ceil((taken - self.max) / self.max)
        due = self.window_start(now_ms) + ahead * self.duration
        return min(SQS_MAX_VISIBILITY_SECONDS, max(1, math.ceil((due - now_ms) / 1000)))

    def ttl(self, now_ms: int) -> int:
        """Epoch seconds at which the current window's counter may go."""
        return (self.window_start(now_ms) + self.duration) // 1000 + WINDOW_TTL_MARGIN_SECONDS


class KeyLimits(_Model):
    """The limits of one group key (the queue's ``groups`` defaults, or an override)."""

    rate_limit: RateLimit | None = None
    max_active: int | None = Field(default=None, ge=1, le=1000, description="At most this many jobs of the key active at once.")
    paused: bool = Field(default=False, description="A paused key's jobs wait (no attempt spent) until it is resumed.")


class GroupPolicy(_Model):
    """``groups`` in a queue's policy: how a job's key is found, and the limits per key."""

    key_paths: dict[str, str] = Field(
        default_factory=dict,
        description="Per job type, a dotted path into the job's data whose value is its key (\"customer.id\"); options.group wins.",
    )
    rate_limit: RateLimit | None = None
    max_active: int | None = Field(default=None, ge=1, le=1000)
    overrides: dict[str, KeyLimits] = Field(default_factory=dict, description="Per key: its own limits (replacing the defaults), or paused.")

    @field_validator("overrides")
    @classmethod
    def _bounded(cls, overrides: dict[str, KeyLimits]) -> dict[str, KeyLimits]:
        if len(overrides) > MAX_OVERRIDES:
            raise ValueError(f"at most {MAX_OVERRIDES} overrides")
        for key in overrides:
            check_group_key(key)
        return overrides

    def limits_for(self, key: str) -> KeyLimits:
        return self.overrides.get(key) or KeyLimits(rate_limit=self.rate_limit, max_active=self.max_active)


def check_group_key(key: str) -> str:
    if not isinstance(key, str) or re.fullmatch(GROUP_KEY_PATTERN, key) is None:
        raise ValueError(f"a group key is 1 to {MAX_GROUP_KEY} characters, without '#', '/', control characters or leading whitespace")
    return key


def group_key_of(job_type: str, data: dict[str, Any], given: str | None, groups: GroupPolicy | None) -> str | None:
    """A job's group key: ``options.group``, else its type's path into the data (None when absent or not a scalar)."""
    if given is not None:
        return given
    path = groups.key_paths.get(job_type) if groups else None
    if not path:
        return None
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    key = _NOT_IN_KEYS.sub("_", str(value)[:MAX_GROUP_KEY]).lstrip()
    return key or None


def check_timeout(timeout_ms: int | None, consumer_timeout_s: int) -> None:
    """A job's timeout must end before its consumer's Lambda does (ValueError otherwise)."""
    if timeout_ms is not None and timeout_ms >= consumer_timeout_s * 1000:
        raise ValueError(f"timeout is {timeout_ms} ms; it must be below the consumer's timeout of {consumer_timeout_s * 1000} ms")


# ---- the gate the consumer passes before it claims a job --------------------------------------------------
class Limits(Protocol):
    """The counters (shared/adapters/limits.py)."""

    def take_window(self, queue: str, key: str | None, window_start: int, ttl: int) -> int: ...
    def take_slot(self, queue: str, key: str, token: str, until_ms: int, max_active: int | None, now_ms: int) -> bool: ...
    def release_slot(self, queue: str, key: str, token: str) -> str | None:
        """Give the slot back; returns the message body of a job that waits for it (an exclusive slot's), to send now."""
        ...

    def wait_on_slot(self, queue: str, key: str, message: str) -> None:
        """Note ``message`` (a waiting job's SQS body) on the key's exclusive slot: its holder wakes it when it ends."""
        ...


@dataclass(frozen=True)
class Admission:
    """The gate's answer: go (``wait_seconds`` 0, and the slots to give back after the attempt), or wait."""

    wait_seconds: int = 0
    reason: str = ""
    slots: tuple[tuple[str, str, str], ...] = ()  # (queue, key, token) held for the attempt

    @property
    def go(self) -> bool:
        return self.wait_seconds == 0


def admit(
    limits: Limits,
    *,
    queue: str,
    group: str | None,
    rate_limit: RateLimit | None,
    groups: GroupPolicy | None,
    token: str,
    lease_until_ms: int,
    now_ms: int,
    slot_wait_seconds: int,
    exclusive: str | None = None,
    waiter: str | None = None,
) -> Admission:
    """May this job start now? Its keys' slots first (given back if a later check says no), then the rates."""
    key_limits = groups.limits_for(group) if groups is not None and group is not None else None
    if key_limits is not None and key_limits.paused:
        return Admission(PAUSED_KEY_RECHECK_SECONDS, f"group {group} is paused")
    slots: list[tuple[str, str, str]] = []

    def refuse(wait: int, reason: str) -> Admission:
        for slot in slots:
            limits.release_slot(*slot)
        return Admission(wait, reason)

    if exclusive is not None:
        # keepLastIfActive: one active job per dedup key, whatever the queue's policy.
        if not limits.take_slot(queue, EXCLUSIVE_SLOT_PREFIX + exclusive, token, lease_until_ms, 1, now_ms):
            if waiter is not None:  # woken by the active job as it ends; the wait below is the fallback
                limits.wait_on_slot(queue, EXCLUSIVE_SLOT_PREFIX + exclusive, waiter)
            return Admission(slot_wait_seconds, "a job with its deduplication key is active (keepLastIfActive)")
        slots.append((queue, EXCLUSIVE_SLOT_PREFIX + exclusive, token))
    if key_limits is not None and group is not None:
        # Every job of a key holds a slot while it runs (the key's active count), limited or not.
        if not limits.take_slot(queue, group, token, lease_until_ms, key_limits.max_active, now_ms):
            return refuse(slot_wait_seconds, f"group {group} has {key_limits.max_active} active jobs")
        slots.append((queue, group, token))
    for key, rate in ((None, rate_limit), (group, key_limits.rate_limit if key_limits else None)):
        if rate is None:
            continue
        taken = limits.take_window(queue, key, rate.window_start(now_ms), rate.ttl(now_ms))
        wait = rate.wait_seconds(now_ms, taken)
        if wait:
            scope = f"group {key}" if key is not None else f"queue {queue}"
            return refuse(wait, f"{scope} is at its rate limit of {rate.max} per {rate.duration} ms")
    return Admission(slots=tuple(slots))


__all__ = [
    "EXCLUSIVE_SLOT_PREFIX",
    "Admission",
    "GroupPolicy",
    "KeyLimits",
    "Limits",
    "RateLimit",
    "admit",
    "check_group_key",
    "check_timeout",
    "group_key_of",
]
