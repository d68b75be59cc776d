"""Per-user quota items in DynamoDB (shared/quotas.py says what they mean). One partition per user:

    account item     pk=QUOTA#USER#<userId>  sk=UNFINISHED   unfinished (N) (shared/adapters/admission.py),
                                                             rateWindow (N, epoch minute), rateCount (N, creates in it),
                                                             blockPlaces0, blockPlaces1 (N): places of blocks taken in
                                                             even / odd minutes no job has spent yet (QuotaBlockSize > 1)
    override         pk=QUOTA#USER#<userId>  sk=LIMITS       jobsPerMinute, maxUnfinishedJobs (N, optional), updatedAt

A create's rate and unfinished place are one conditional UpdateItem of the account item. It is
written in one of two forms: the same window (``ADD rateCount``, the window must be the one this
container last saw) or a new one (``SET rateWindow, rateCount``, the stored window must be older).
A failed condition returns the item as it was (``ReturnValuesOnConditionCheckFailure``), which
says whether the other form applies or a quota refused. With blocks, the new-minute form also
empties the slot of two minutes ago (both after a quiet minute), on the condition that each holds
what the old item said, and subtracts that from ``unfinished``.
"""

from __future__ import annotations

import threading
from typing import Any

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors, old_item
from shared.admission import ACCOUNT_SK, block_slot, quota_pk
from shared.errors import Conflict
from shared.quotas import Lease, QuotaOverride, Refused

_LIMITS_SK = "LIMITS"


def _number(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name, {}).get("N")
    return int(value) if value is not None else None


class DynamoQuotaStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name
        self._windows: dict[str, int] = {}  # user -> the rate window this container last saw on the account item
        self._lock = threading.Lock()

    def _key(self, user_id: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": quota_pk(user_id)}, "sk": {"S": sk}}

    def take(self, user_id: str, window: int, count: int, limit: int, *, place_limit: int | None = None) -> Refused | None:
        taken = self.lease(user_id, window, count, limit, places=1 if place_limit is not None else 0, place_limit=place_limit)
        return taken if isinstance(taken, Refused) else None

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
        """One conditional write: ``count`` (up to ``count + extra``) creates in window ``window``, and
        ``places`` (up to ``places + extra_places``) unfinished places if ``place_limit`` allows. What
        was taken (a Lease), or what refused (nothing taken). The extras are what a block takes beyond
        the request: when the item has less room, the failed condition's old item says how much is
        left and the write is tried again with what fits (the last of a quota is taken exactly).

        ``block``: the places are a block's, counted in ``unfinished`` and in the slot of ``window``
        (``block_slot``) until the stream sees the job that spends each; ``give_back`` of them (taken
        in ``window``) are returned. The first write of a minute empties the slot of two minutes ago
        and gives back what is left in it (and both slots after a quiet minute): places no job spent."""
        own = window  # the slot of this container's minute, whatever window the rate is counted in
        rate = min(count + extra, limit) if count else 0
        taking = min(places + extra_places, place_limit) if place_limit is not None else 0
        old: dict[str, Any] | None = None  # the item as a failed condition returned it
        with self._lock:
            same = self._windows.get(user_id) == window
        for attempt in range(6):  # a form whose window was wrong, then the other; a smaller block; a minute turning between
            reclaimed: dict[str, int] = {}
            if old is not None:
                stored = _number(old, "rateWindow")
                if stored is not None and stored > window:
                    window = stored  # another container's clock turned the minute already: count in its window
                same = stored == window
                if block and not same:
                    # Emptied by this write: the slot of this minute (two minutes ago), and after a quiet minute the other.
                    names = [block_slot(own)] + ([block_slot(own + 1)] if stored is None or stored <= window - 2 else [])
                    reclaimed = {name: _number(old, name) or 0 for name in names}
                freed = (give_back if same else sum(reclaimed.values())) if block else give_back
                if taking:
                    room = place_limit - ((_number(old, "unfinished") or 0) - freed) if place_limit is not None else 0
                    if room < places:
                        return Refused.UNFINISHED
                    taking = min(taking, room)
                if stored == window and (count or block):
                    room = limit - (_number(old, "rateCount") or 0)
                    if room < count:
                        return Refused.RATE
                    rate = min(rate, room)
            elif block and not same:
                reclaimed = {block_slot(own): 0, block_slot(own + 1): 0}  # assumed empty; the condition checks it
            if attempt == 5:
                break
            values: dict[str, Any] = {}
            if rate or block:
                values[":w"] = {"N": str(window)}
            if rate or (block and not same):
                values[":c"] = {"N": str(rate)}
            sets: list[str] = []
            adds: list[str] = []
            conditions: list[str] = []
            if (rate or block) and same:
                if rate:
                    adds.append("rateCount :c")
                    conditions.append("rateWindow = :w AND rateCount <= :room")
                    values[":room"] = {"N": str(limit - rate)}
                else:
                    conditions.append("rateWindow = :w")
            elif rate or block:
                sets.append("rateWindow = :w, rateCount = :c")
                if block:  # the slots it empties must hold what it gives back
                    stored = _number(old, "rateWindow") if old is not None else None
                    conditions.append("rateWindow = :rw" if stored is not None else "attribute_not_exists(rateWindow)")
                    if stored is not None:
                        values[":rw"] = {"N": str(stored)}
                else:
                    conditions.append("(attribute_not_exists(rateWindow) OR rateWindow < :w)")
            if block and (taking or give_back or reclaimed):
                delta = taking - (give_back if same else sum(reclaimed.values()))
                if same:
                    if taking - give_back:
                        adds.append(f"{block_slot(own)} :b")
                        values[":b"] = {"N": str(taking - give_back)}
                else:
                    for i, (name, held) in enumerate(reclaimed.items()):
                        sets.append(f"{name} = :s{i}")
                        values[f":s{i}"] = {"N": str(taking if name == block_slot(own) else 0)}
                        conditions.append(f"(attribute_not_exists({name}) OR {name} = :v{i})" if not held else f"{name} = :v{i}")
                        values[f":v{i}"] = {"N": str(held)}
            else:
                delta = taking - give_back
            if delta:
                adds.append("unfinished :p")
                values[":p"] = {"N": str(delta)}
            if taking:
                # Room for ``taking`` once what this write gives back (counted in ``unfinished``) is returned.
                conditions.append("(attribute_not_exists(unfinished) OR unfinished <= :max)")
                values[":max"] = {"N": str((place_limit or 0) - delta)}
            if not sets and not adds:
                return Lease(window, 0, 0)
            update = " ".join(([f"SET {', '.join(sets)}"] if sets else []) + ([f"ADD {', '.join(adds)}"] if adds else []))
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "Key": self._key(user_id, ACCOUNT_SK),
                "UpdateExpression": update,
                "ExpressionAttributeValues": values,
            }
            if conditions:
                request["ConditionExpression"] = " AND ".join(conditions)
                request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            try:
                with aws_errors("cannot count the request against your quota"):
                    clients.client("dynamodb").update_item(**request)
            except Conflict as err:
                old = old_item(err) or {}
                continue
            if rate or block:
                with self._lock:
                    if len(self._windows) > 10_000:
                        self._windows.clear()
                    self._windows[user_id] = window
            return Lease(window, rate, taking)
        return Refused.RATE  # the item kept changing under us: refuse rather than count twice (the client retries)

    def _get(self, user_id: str, sk: str) -> dict[str, Any]:
        with aws_errors("reading a quota"):
            out = clients.client("dynamodb").get_item(TableName=self.table_name, Key=self._key(user_id, sk), ConsistentRead=True)
        item: dict[str, Any] = out.get("Item") or {}
        return item

    def rate_used(self, user_id: str, window: int) -> int:
        item = self._get(user_id, ACCOUNT_SK)
        return (_number(item, "rateCount") or 0) if _number(item, "rateWindow") == window else 0

    def unfinished(self, user_id: str) -> int:
        return int(self._get(user_id, ACCOUNT_SK).get("unfinished", {}).get("N", 0))

    def get_override(self, user_id: str) -> QuotaOverride | None:
        with aws_errors("reading a quota"):
            out = clients.client("dynamodb").get_item(TableName=self.table_name, Key=self._key(user_id, _LIMITS_SK))
        item = out.get("Item")
        if not item:
            return None

        def number(name: str) -> int | None:
            value = item.get(name, {}).get("N")
            return int(value) if value is not None else None

        return QuotaOverride(jobs_per_minute=number("jobsPerMinute"), max_unfinished_jobs=number("maxUnfinishedJobs"))

    def put_override(self, user_id: str, override: QuotaOverride, *, now: str) -> None:
        item: dict[str, Any] = {**self._key(user_id, _LIMITS_SK), "updatedAt": {"S": now}}
        if override.jobs_per_minute is not None:
            item["jobsPerMinute"] = {"N": str(override.jobs_per_minute)}
        if override.max_unfinished_jobs is not None:
            item["maxUnfinishedJobs"] = {"N": str(override.max_unfinished_jobs)}
        with aws_errors("storing a quota"):
            clients.client("dynamodb").put_item(TableName=self.table_name, Item=item)

    def delete_override(self, user_id: str) -> None:
        with aws_errors("removing a quota"):
            clients.client("dynamodb").delete_item(TableName=self.table_name, Key=self._key(user_id, _LIMITS_SK))


__all__ = ["DynamoQuotaStore"]
