"""Back-pressure: a queue's ``maxUnfinishedJobs`` and ``maxUnfinishedJobsPerUser`` (seed 000's
``MAX_JOBS_PER_QUEUE``), held by counters, not counts.

Which counter, and why: a conditional counter item per queue (``QUEUE#<q>/ADMISSION``) and per
user on it (``QUEUE#<q>/ADMISSION#USER#<u>``), not the queue's STATS counters. STATS is written
by the stream a batch after the job (a second or more): a burst of creates would all read the
same old count and all pass, so a limit on it does not hold under concurrent creates. Here a
create takes its place first with one conditional ``ADD unfinished 1`` (``unfinished < max``; both
counters in one transaction when both limits are set). DynamoDB applies the writes to one item
one after another, so of N concurrent creates at most ``max - unfinished`` succeed; the others
get 429 (503 when the queue is paused: it will not drain until someone resumes it) and store
nothing.

The place is given back by the table's stream, in the EventsFunction's exactly-once batch
transaction (shared/stats.py): a job that took a place (its ``held`` says which counters) and
moves from waiting / delayed / active / stalled to completed / failed / cancelled, or is removed
while unfinished, subtracts 1; a retry or redrive that brings it back adds 1 (never refused: it
is not a create). A create that took a place but stores nothing (the id exists) gives it back at
once; one whose enqueue fails deletes its job, and the stream gives the place back.

A place spent from an API container's quota block (``accountBlock``, shared/quotas.py) is given
back the same way; the job's INSERT also moves it out of its minute's block slot on the account
item, in that same transaction.

Costs: only queues with a limit pay anything: one extra small write per create (two with a
per-user limit), and the stream's give-backs ride in the batch transaction it writes anyway.
Jobs created while a queue had no limit hold no place and never count toward one set later;
a place taken by an API container that died between the counter and the job item stays taken
(rare; a lower limit by one) until an operator resets the counter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from shared.clock import parse_iso
from shared.errors import TooManyJobs
from shared.models import QueuePolicy
from shared.status import FINISHED, JobStatus

QUEUE_COUNTER = "queue"
USER_COUNTER = "user"
ACCOUNT_COUNTER = "account"  # the user's unfinished jobs over every queue (shared/quotas.py)
# The same place, spent from an API container's block (shared/quotas.py, QuotaBlockSize > 1): the
# stream also moves it out of the block slot of its creation minute when it sees the job's INSERT.
ACCOUNT_BLOCK_COUNTER = "accountBlock"
UNFINISHED_ATTRIBUTE = "unfinished"
ADMISSION_SK = "ADMISSION"
ACCOUNT_SK = "UNFINISHED"
UNFINISHED = frozenset(s.value for s in JobStatus if s not in FINISHED)


def user_sk(user_id: str) -> str:
    return f"{ADMISSION_SK}#USER#{user_id}"


def quota_pk(user_id: str) -> str:
    """The partition of a user's quota items (shared/adapters/quotas.py): account counter, rate windows, overrides."""
    return f"QUOTA#USER#{user_id}"


def block_slot(window: int) -> str:
    """The account item's attribute holding the places of blocks taken in rate window ``window`` (one
    of two: a slot is emptied, what is left in it given back, two minutes on; shared/adapters/quotas.py)."""
    return f"blockPlaces{window % 2}"


def counter_key(name: str, queue: str, user_id: str) -> tuple[str, str]:
    """``(pk, sk)`` of the counter item ``name`` for a job of ``user_id`` on ``queue``."""
    if name in (ACCOUNT_COUNTER, ACCOUNT_BLOCK_COUNTER):
        return quota_pk(user_id), ACCOUNT_SK
    return f"QUEUE#{queue}", ADMISSION_SK if name == QUEUE_COUNTER else user_sk(user_id)


class Full(Exception):
    """A counter is at its limit: ``which`` is QUEUE_COUNTER or USER_COUNTER."""

    def __init__(self, which: str) -> None:
        super().__init__(which)
        self.which = which


class AdmissionCounters(Protocol):
    def take(self, queue: str, user_id: str, limits: Mapping[str, int | None]) -> None: ...
    def give_back(self, queue: str, user_id: str, held: Iterable[str]) -> None: ...
    # Many places at once (a flow): ``(queue, counter) -> (count, limit)``, one transaction, all or none.
    def take_many(self, user_id: str, wanted: Mapping[tuple[str, str], tuple[int, int | None]]) -> None: ...
    def give_back_many(self, user_id: str, taken: Mapping[tuple[str, str], int]) -> None: ...


def limits_of(policy: QueuePolicy) -> dict[str, int | None]:
    """The counters a new job on this queue takes a place in, with their limits (None: counted, never refused)."""
    limits: dict[str, int | None] = {}
    if policy.max_unfinished_jobs is not None:
        limits[QUEUE_COUNTER] = policy.max_unfinished_jobs
    if policy.max_unfinished_jobs_per_user is not None:
        limits[USER_COUNTER] = policy.max_unfinished_jobs_per_user
    return limits


def admit(
    counters: AdmissionCounters,
    queue: str,
    user_id: str,
    policy: QueuePolicy,
    *,
    retry_after: int,
    force: bool = False,
    account_limit: int | None = None,
) -> list[str] | None:
    """Take the job's places; the counters taken (the job's ``held``), or TooManyJobs.
    ``force``: counted but never refused (a schedule's firing, which must not be lost).
    ``account_limit``: the user's quota of unfinished jobs over every queue (None: no quota)."""
    limits = limits_of(policy)
    if account_limit is not None:
        limits[ACCOUNT_COUNTER] = account_limit
    if not limits:
        return None
    try:
        counters.take(queue, user_id, {name: None for name in limits} if force else limits)
    except Full as full:
        if full.which == ACCOUNT_COUNTER:
            message = f"you have {limits[ACCOUNT_COUNTER]} unfinished jobs, your quota; retry after some finish"
        elif full.which == USER_COUNTER:
            message = f"you have {limits[USER_COUNTER]} unfinished jobs on queue '{queue}', its limit per user; retry after some finish"
        else:
            message = f"queue '{queue}' holds {limits[QUEUE_COUNTER]} unfinished jobs, its limit; retry after some finish"
        paused = policy.paused and full.which != ACCOUNT_COUNTER
        if paused:
            message += " (the queue is paused: it drains once resumed)"
        raise TooManyJobs(message, retry_after=retry_after * (12 if paused else 1), paused=paused) from full
    return sorted(limits)


def admit_many(
    counters: AdmissionCounters,
    user_id: str,
    jobs_per_queue: Mapping[str, int],
    policies: Mapping[str, QueuePolicy],
    *,
    retry_after: int,
    account_limit: int | None = None,
) -> tuple[dict[str, list[str]], dict[tuple[str, str], int]]:
    """Places for many jobs of one user at once (a flow): every one, or TooManyJobs and none.

    Returns each queue's ``held`` (what each of its jobs took) and the places taken (to give
    back if nothing is stored). The account counter is keyed by the first queue (it is one item)."""
    wanted: dict[tuple[str, str], tuple[int, int | None]] = {}
    held: dict[str, list[str]] = {}
    for queue, count in jobs_per_queue.items():
        limits = limits_of(policies[queue])
        if account_limit is not None:
            limits[ACCOUNT_COUNTER] = account_limit
        if limits:
            held[queue] = sorted(limits)
        for name, limit in limits.items():
            if name != ACCOUNT_COUNTER:
                wanted[(queue, name)] = (count, limit)
    total = sum(jobs_per_queue.values())
    if account_limit is not None and total:
        wanted[(next(iter(jobs_per_queue)), ACCOUNT_COUNTER)] = (total, account_limit)
    if not wanted:
        return held, {}
    try:
        counters.take_many(user_id, wanted)
    except Full as full:
        queue = next((q for (q, name) in wanted if name == full.which), "")
        count, limit = next(v for (q, name), v in wanted.items() if name == full.which and q == queue)
        if full.which == ACCOUNT_COUNTER:
            message = f"this flow's {count} jobs do not fit in your quota of {limit} unfinished jobs; retry after some finish"
        elif full.which == USER_COUNTER:
            message = f"this flow's {count} jobs on queue '{queue}' do not fit in its limit of {limit} unfinished jobs per user; retry after some finish"
        else:
            message = f"this flow's {count} jobs on queue '{queue}' do not fit in its limit of {limit} unfinished jobs; retry after some finish"
        raise TooManyJobs(message, retry_after=retry_after) from full
    return held, {key: count for key, (count, _) in wanted.items()}


# ---- the stream side: places given back (shared/stats.py adds these to its batch transaction) ----------------


def _text(image: Mapping[str, Any], name: str) -> str | None:
    value = image.get(name)
    return value.get("S") if isinstance(value, dict) else None


def _held(image: Mapping[str, Any]) -> list[str]:
    value = image.get("held")
    items = value.get("L") if isinstance(value, dict) else None
    return [i["S"] for i in items or [] if isinstance(i, dict) and isinstance(i.get("S"), str)]


def changes(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], int]:
    """Per counter item and attribute ``(pk, sk, attribute)``: what these stream records change in
    ``unfinished`` (and, for places spent from a block, in the block slot they came from)."""
    deltas: dict[tuple[str, str, str], int] = defaultdict(int)
    for record in records:
        change = record.get("dynamodb") or {}
        keys = change.get("Keys") or {}
        if _text(keys, "sk") != "JOB":
            continue
        old: Mapping[str, Any] = change.get("OldImage") or {}
        new: Mapping[str, Any] = change.get("NewImage") or {}
        image = new or old
        held, queue, user = _held(image), _text(image, "queue"), _text(image, "userId")
        if not held or not queue or not user:
            continue
        event = record.get("eventName")
        was = _text(old, "status") in UNFINISHED
        now = _text(new, "status") in UNFINISHED
        step = 0
        if event == "MODIFY" and was != now:
            step = -1 if was else 1
        elif event == "REMOVE" and was:
            step = -1
        if step:
            for name in held:
                deltas[(*counter_key(name, queue, user), UNFINISHED_ATTRIBUTE)] += step
        if event == "INSERT" and ACCOUNT_BLOCK_COUNTER in held:
            created = _text(new, "createdAt")
            if created:  # the place leaves the block: it is this job's now (``unfinished`` counted it all along)
                window = parse_iso(created) // 60_000
                deltas[(*counter_key(ACCOUNT_BLOCK_COUNTER, queue, user), block_slot(window))] -= 1
    return {key: value for key, value in deltas.items() if value}


def release_actions(table: str, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """TransactWriteItems actions applying ``changes(records)``: one Update per counter item."""
    items: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for (pk, sk, attribute), delta in sorted(changes(records).items()):
        items[(pk, sk)][attribute] = delta
    return [
        {
            "Update": {
                "TableName": table,
                "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
                "UpdateExpression": "ADD " + ", ".join(f"{name} :d{i}" for i, name in enumerate(deltas)),
                "ExpressionAttributeValues": {f":d{i}": {"N": str(delta)} for i, delta in enumerate(deltas.values())},
            }
        }
        for (pk, sk), deltas in items.items()
    ]


__all__ = [
    "ACCOUNT_BLOCK_COUNTER",
    "ACCOUNT_COUNTER",
    "ADMISSION_SK",
    "AdmissionCounters",
    "Full",
    "admit",
    "block_slot",
    "changes",
    "counter_key",
    "limits_of",
    "quota_pk",
    "release_actions",
    "user_sk",
]
