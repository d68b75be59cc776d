"""The back-pressure counters in DynamoDB (shared/admission.py says what they mean).

    queue counter    pk=QUEUE#<queue>        sk=ADMISSION                unfinished (N)
    user counter     pk=QUEUE#<queue>        sk=ADMISSION#USER#<userId>  unfinished (N)
    account counter  pk=QUOTA#USER#<userId>  sk=UNFINISHED               unfinished (N), every queue (quotas)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.adapters import clients
from shared.adapters.aws_errors import AWS_ERRORS, aws_errors, cancellation_reasons
from shared.admission import ADMISSION_SK, Full, counter_key, user_sk
from shared.errors import Conflict
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
            with aws_errors(f"cannot count the job on queue {queue}"):
                if len(updates) == 1:
                    ddb.update_item(**updates[0])
                else:
                    ddb.transact_write_items(TransactItems=[{"Update": u} for u in updates])
        except Conflict as err:  # a counter's condition: that limit is reached
            reasons = cancellation_reasons(err) or ["ConditionalCheckFailed"]
            full = next((name for name, reason in zip(names, reasons, strict=False) if reason == "ConditionalCheckFailed"), names[0])
            raise Full(full) from err

    def take_many(self, user_id: str, wanted: Mapping[tuple[str, str], tuple[int, int | None]]) -> None:
        """``count`` places in each counter, in one transaction (at most 100 counters): all, or Full and none."""
        names = list(wanted)
        for (_, name), (count, limit) in wanted.items():
            if limit is not None and count > limit:
                raise Full(name)  # could never fit
        updates = [
            self._update(counter_key(name, queue, user_id), count, None if limit is None else limit - count + 1)
            for (queue, name), (count, limit) in wanted.items()
        ]
        ddb = clients.client("dynamodb")
        try:
            with aws_errors("cannot count the flow's jobs"):
                if len(updates) == 1:
                    ddb.update_item(**updates[0])
                else:
                    ddb.transact_write_items(TransactItems=[{"Update": u} for u in updates])
        except Conflict as err:
            reasons = cancellation_reasons(err) or ["ConditionalCheckFailed"]
            full = next((key for key, reason in zip(names, reasons, strict=False) if reason == "ConditionalCheckFailed"), names[0])
            raise Full(full[1]) from err

    def give_back_many(self, user_id: str, taken: Mapping[tuple[str, str], int]) -> None:
        ddb = clients.client("dynamodb")
        for (queue, name), count in taken.items():
            try:
                ddb.update_item(**self._update(counter_key(name, queue, user_id), -count, None))
            except AWS_ERRORS:
                logger.error("back-pressure places not given back", extra={"queue": queue, "counter": name, "count": count})

    def give_back(self, queue: str, user_id: str, held: Iterable[str]) -> None:
        ddb = clients.client("dynamodb")
        for name in held:
            try:
                ddb.update_item(**self._update(counter_key(name, queue, user_id), -1, None))
            except AWS_ERRORS:
                # A place kept: the limit is one lower until an operator resets the counter. Never fail the request for it.
                logger.error("back-pressure place not given back", extra={"queue": queue, "counter": name})

    def read(self, queue: str, user_id: str | None = None) -> int:
        """The counter's value (tests, operators)."""
        with aws_errors(f"cannot read the counter of queue {queue}"):
            out = clients.client("dynamodb").get_item(
                TableName=self.table_name,
                Key={"pk": {"S": f"QUEUE#{queue}"}, "sk": {"S": ADMISSION_SK if user_id is None else user_sk(user_id)}},
                ConsistentRead=True,
            )
        return int(out.get("Item", {}).get("unfinished", {}).get("N", 0))


__all__ = ["DynamoAdmissionCounters"]
