"""Group keys of a queue (operators): the busiest keys with their counts, and pausing or resuming one key.

The counts are the flow-control counters (shared/adapters/limits.py); pausing a key is an
override in the queue's policy (``groups.overrides[key].paused``), so every consumer sees it
within the policy cache's few seconds.
"""

from __future__ import annotations

from shared import flow_control
from shared.adapters import policies
from shared.adapters.limits import DynamoLimits
from shared.clock import iso
from shared.errors import Invalid
from shared.flow_control import GroupPolicy, KeyLimits
from shared.models import QueueInfo, QueuePolicy
from shared.observability import logger
from shared.queue_models import GroupCounts, GroupList, GroupPauseState


def busiest(queue: QueueInfo, limits: DynamoLimits, *, limit: int, now: int) -> GroupList:
    policy = policies.get_policy(queue)
    groups = policy.groups or GroupPolicy()
    seen = {k.key: k for k in limits.keys(queue.name, now)}
    ranked = sorted(seen.values(), key=lambda k: (-k.active, -k.started, k.key))[:limit]
    out = []
    for counts in ranked:
        own = groups.limits_for(counts.key)
        rate = own.rate_limit
        out.append(
            GroupCounts(
                key=counts.key,
                active=counts.active,
                started=counts.started,
                last_started_at=iso(counts.last_started_ms) if counts.last_started_ms else None,
                started_this_window=limits.window_count(queue.name, counts.key, rate.window_start(now)) if rate else None,
                max_active=own.max_active,
                rate_limit=rate,
                paused=own.paused,
            )
        )
    # Paused keys no job has reached lately are shown too: an operator looks for them here.
    for key, own in groups.overrides.items():
        if own.paused and key not in seen and len(out) < limit:
            out.append(GroupCounts(key=key, active=0, started=0, max_active=own.max_active, rate_limit=own.rate_limit, paused=True))
    return GroupList(groups=out)


def set_paused(queue: QueueInfo, key: str, *, paused: bool) -> GroupPauseState:
    try:
        flow_control.check_group_key(key)
    except ValueError as err:
        raise Invalid(str(err)) from None

    def change(policy: QueuePolicy) -> QueuePolicy:
        groups = policy.groups or GroupPolicy()
        own = groups.overrides.get(key) or KeyLimits(rate_limit=groups.rate_limit, max_active=groups.max_active)
        overrides = {**groups.overrides, key: own.model_copy(update={"paused": paused})}
        if not paused and own.rate_limit == groups.rate_limit and own.max_active == groups.max_active:
            overrides.pop(key)  # resumed, and no limits of its own: the override has nothing left to say
        return policy.model_copy(update={"groups": groups.model_copy(update={"overrides": overrides})})

    policies.update_policy(queue, change)
    logger.info("group paused" if paused else "group resumed", extra={"queue": queue.name, "group": key})
    return GroupPauseState(key=key, paused=paused)
