"""Per-user quota items in DynamoDB (shared/quotas.py says what they mean). One partition per user:

    account item     pk=QUOTA#USER#<userId>  sk=UNFINISHED   unfinished (N) (shared/adapters/admission.py),
                                                             rateWindow (N, epoch minute), rateCount (N, creates in it)
    override         pk=QUOTA#USER#<userId>  sk=LIMITS       jobsPerMinute, maxUnfinishedJobs (N, optional), updatedAt

A create's rate and unfinished place are one conditional UpdateItem of the account item. It is
written in one of two forms: the same window (``ADD rateCount``, the window must be the one this
container last saw) or a new one (``SET rateWindow, rateCount``, the stored window must be older).
A failed condition returns the item as it was (``ReturnValuesOnConditionCheckFailure``), which
says whether the other form applies or a quota refused.
"""

from __future__ import annotations

import threading
from typing import Any

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors, old_item
from shared.admission import ACCOUNT_SK, quota_pk
from shared.errors import Conflict
from shared.quotas import QuotaOverride, Refused

_LIMITS_SK = "LIMITS"
_PLACE_FREE = "(attribute_not_exists(unfinished) OR unfinished < :max)"


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
        with self._lock:
            same = self._windows.get(user_id) == window
        for _ in range(3):  # a form whose window was wrong, then the other; a third only if a minute turned between
            values: dict[str, Any] = {":w": {"N": str(window)}, ":c": {"N": str(count)}}
            if same:
                update, condition = "ADD rateCount :c", "rateWindow = :w AND rateCount <= :room"
                values[":room"] = {"N": str(limit - count)}
            else:
                update, condition = "SET rateWindow = :w, rateCount = :c", "(attribute_not_exists(rateWindow) OR rateWindow < :w)"
            if place_limit is not None:
                update += " ADD unfinished :one" if not same else ", unfinished :one"
                condition += f" AND {_PLACE_FREE}"
                values[":one"] = {"N": "1"}
                values[":max"] = {"N": str(place_limit)}
            try:
                with aws_errors("cannot count the request against your quota"):
                    clients.client("dynamodb").update_item(
                        TableName=self.table_name,
                        Key=self._key(user_id, ACCOUNT_SK),
                        UpdateExpression=update,
                        ConditionExpression=condition,
                        ExpressionAttributeValues=values,
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
            except Conflict as err:
                item = old_item(err) or {}
                if place_limit is not None and (_number(item, "unfinished") or 0) >= place_limit:
                    return Refused.UNFINISHED
                stored = _number(item, "rateWindow")
                if stored is not None and stored > window:
                    window = stored  # another container's clock turned the minute already: count in its window
                if stored == window and (_number(item, "rateCount") or 0) + count > limit:
                    return Refused.RATE
                same = stored == window
                continue
            with self._lock:
                if len(self._windows) > 10_000:
                    self._windows.clear()
                self._windows[user_id] = window
            return None
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
