"""The back-pressure counters in DynamoDB (shared/admission.py says what they mean).

    queue counter    pk=QUEUE#<queue>        sk=ADMISSION                unfinished (N)
    user counter     pk=QUEUE#<queue>        sk=ADMISSION#USER#<userId>  unfinished (N)
    account counter  pk=QUOTA#USER#<userId>  sk=UNFINISHED               unfinished (N), every queue (quotas)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import clients
from shared.admission import ADMISSION_SK, Full, counter_key, user_sk
from shared.errors import Unavailable
from shared.observability import logger


class DynamoAdmissionCounters:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def _update(self, key: tuple[str, str], step: int, limit: int | None) -> dict[str, Any]:
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"pk": {"S": key[0]}, "sk": {"S": key[1]}},
            "UpdateExpression": "ADD unfinished :step",
            "ExpressionAttributeValues": {":step": {"N": str(step)}},
        }
        if limit is not None:
            update["ConditionExpression"] = "attribute_not_exists(unfinished) OR unfinished < :max"
            update["ExpressionAttributeValues"][":max"] = {"N": str(limit)}
        return update

    def take(self, queue: str, user_id: str, limits: Mapping[str, int | None]) -> None:
        names = sorted(limits)
        updates = [self._update(counter_key(name, queue, user_id), 1, limits[name]) for name in names]
        ddb = clients.client("dynamodb")
        try:
            if len(updates) == 1:
                ddb.update_item(**updates[0])
            else:
                ddb.transact_write_items(TransactItems=[{"Update": u} for u in updates])
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise Full(names[0]) from err
            if code == "TransactionCanceledException":
                reasons = [r.get("Code") for r in err.response.get("CancellationReasons") or []]
                for name, reason in zip(names, reasons, strict=False):
                    if reason == "ConditionalCheckFailed":
                        raise Full(name) from err
            raise Unavailable(f"cannot count the job on queue {queue} ({code}); retry the request") from err
        except BotoCoreError as err:
            raise Unavailable(f"cannot count the job on queue {queue}; retry the request") from err

    def give_back(self, queue: str, user_id: str, held: Iterable[str]) -> None:
        ddb = clients.client("dynamodb")
        for name in held:
            try:
                ddb.update_item(**self._update(counter_key(name, queue, user_id), -1, None))
            except (ClientError, BotoCoreError):
                # A place kept: the limit is one lower until an operator resets the counter. Never fail the request for it.
                logger.error("back-pressure place not given back", extra={"queue": queue, "counter": name})

    def read(self, queue: str, user_id: str | None = None) -> int:
        """The counter's value (tests, operators)."""
        out = clients.client("dynamodb").get_item(
            TableName=self.table_name,
            Key={"pk": {"S": f"QUEUE#{queue}"}, "sk": {"S": ADMISSION_SK if user_id is None else user_sk(user_id)}},
            ConsistentRead=True,
        )
        return int(out.get("Item", {}).get("unfinished", {}).get("N", 0))


__all__ = ["DynamoAdmissionCounters"]
