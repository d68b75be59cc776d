"""Per-user quota items in DynamoDB (shared/quotas.py says what they mean). One partition per user:

    rate window      pk=QUOTA#USER#<userId>  sk=RATE#<epoch minute>  n (N), expiresAt (TTL, 2 minutes on)
    account counter  pk=QUOTA#USER#<userId>  sk=UNFINISHED           unfinished (N) (shared/adapters/admission.py)
    override         pk=QUOTA#USER#<userId>  sk=LIMITS               jobsPerMinute, maxUnfinishedJobs (N, optional), updatedAt
"""

from __future__ import annotations

from typing import Any

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors
from shared.admission import ACCOUNT_SK, quota_pk
from shared.errors import Conflict
from shared.quotas import QuotaOverride

_LIMITS_SK = "LIMITS"


def _rate_sk(window: int) -> str:
    return f"RATE#{window}"


class DynamoQuotaStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def _key(self, user_id: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": quota_pk(user_id)}, "sk": {"S": sk}}

    def take_rate(self, user_id: str, window: int, count: int, limit: int, *, expires_at: int) -> bool:
        try:
            with aws_errors("cannot count the request against your quota"):
                clients.client("dynamodb").update_item(
                    TableName=self.table_name,
                    Key=self._key(user_id, _rate_sk(window)),
                    UpdateExpression="ADD n :count SET expiresAt = if_not_exists(expiresAt, :expires)",
                    ConditionExpression="attribute_not_exists(n) OR n <= :room",
                    ExpressionAttributeValues={
                        ":count": {"N": str(count)}, ":room": {"N": str(limit - count)}, ":expires": {"N": str(expires_at)}
                    },
                )
        except Conflict:  # the window is full
            return False
        return True

    def _get(self, user_id: str, sk: str) -> dict[str, Any]:
        with aws_errors("reading a quota"):
            out = clients.client("dynamodb").get_item(TableName=self.table_name, Key=self._key(user_id, sk), ConsistentRead=True)
        item: dict[str, Any] = out.get("Item") or {}
        return item

    def rate_used(self, user_id: str, window: int) -> int:
        return int(self._get(user_id, _rate_sk(window)).get("n", {}).get("N", 0))

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
