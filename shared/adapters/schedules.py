"""The schedule store: recurring schedules' records, their run markers and firing counts in DynamoDB.

    pk=SCHEDULES           sk=SCHEDULE#<name>         the schedule (shared/schedule_models.py)
    pk=SCHEDULE#<name>     sk=RUN#<scheduled time>    one firing's run marker (TTL)
    pk=SCHEDULER           sk=RUNS#<hour>#<shard>     firings counted per hour (TTL)

What the records mean and how a firing creates exactly one job is shared/schedules.py's docstring.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from shared.adapters import clients
from shared.adapters.aws_errors import AWS_ERRORS, aws_errors, cancellation_reasons, domain_error
from shared.adapters.job_repository import decode_cursor, encode_cursor
from shared.clock import iso
from shared.errors import Conflict, Invalid, Unavailable
from shared.observability import logger
from shared.schedule_models import Schedule

RUN_MARKER_TTL_SECONDS = 7 * 86400
METRIC_SHARDS = 8
METRIC_TTL_SECONDS = 35 * 86400
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _key(name: str) -> dict[str, Any]:
    return {"pk": {"S": "SCHEDULES"}, "sk": {"S": f"SCHEDULE#{name}"}}


_JSON = ("data", "options")


def _to_item(schedule: Schedule) -> dict[str, Any]:
    fields = schedule.model_dump(by_alias=True, mode="json", exclude_none=True, exclude={"next_run_at"})
    item = {k: ({"S": json.dumps(v, separators=(",", ":"))} if k in _JSON else _serializer.serialize(v)) for k, v in fields.items()}
    item.update(_key(schedule.name))
    return item


def _from_item(item: dict[str, Any]) -> Schedule:
    raw = {k: _deserializer.deserialize(v) for k, v in item.items() if k not in ("pk", "sk")}
    for name in _JSON:
        if isinstance(raw.get(name), str):
            raw[name] = json.loads(raw[name])
    for key, value in list(raw.items()):
        if hasattr(value, "as_integer_ratio") and not isinstance(value, bool | int | float):
            raw[key] = int(value)
    return Schedule.model_validate(raw)


_WHAT = "DynamoDB (schedules)"


class ScheduleStore:
    """The schedule records, run markers and firing counters (DynamoDB)."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _ddb(self) -> Any:
        return clients.client("dynamodb")

    def create(self, schedule: Schedule) -> None:
        try:
            with aws_errors(_WHAT):
                self._ddb.put_item(TableName=self.table_name, Item=_to_item(schedule), ConditionExpression="attribute_not_exists(pk)")
        except Conflict as err:
            raise Conflict(f"schedule '{schedule.name}' already exists") from err

    def get(self, name: str) -> Schedule | None:
        with aws_errors(_WHAT):
            out = self._ddb.get_item(TableName=self.table_name, Key=_key(name), ConsistentRead=True)
        return _from_item(out["Item"]) if "Item" in out else None

    def delete(self, name: str) -> None:
        with aws_errors(_WHAT):
            self._ddb.delete_item(TableName=self.table_name, Key=_key(name))

    def page(self, *, limit: int, cursor: str | None) -> tuple[list[Schedule], str | None]:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": "SCHEDULES"}, ":prefix": {"S": "SCHEDULE#"}},
            "Limit": limit,
        }
        if cursor:
            params["ExclusiveStartKey"] = decode_cursor(cursor)
        try:
            with aws_errors(_WHAT):
                out = self._ddb.query(**params)
        except Invalid as err:
            if cursor:
                raise Invalid("cursor is not valid for this listing") from err
            raise
        last = out.get("LastEvaluatedKey")
        return [_from_item(i) for i in out.get("Items", [])], encode_cursor(last) if last else None

    def all(self, *, cap: int = 2000) -> list[Schedule]:
        found: list[Schedule] = []
        cursor = None
        while len(found) < cap:
            page, cursor = self.page(limit=200, cursor=cursor)
            found.extend(page)
            if cursor is None:
                break
        return found[:cap]

    def update(self, name: str, sets: dict[str, Any]) -> bool:
        """SET attributes (camelCase names) of an existing record; False if it is gone."""
        names = {f"#s{i}": key for i, key in enumerate(sets)}
        values = {f":s{i}": _serializer.serialize(value) for i, value in enumerate(sets.values())}
        names["#version"] = "version"
        values[":one"] = {"N": "1"}
        try:
            with aws_errors(_WHAT):
                self._ddb.update_item(
                    TableName=self.table_name,
                    Key=_key(name),
                    UpdateExpression="SET " + ", ".join(f"#s{i} = :s{i}" for i in range(len(sets))) + ", #version = #version + :one",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
        except Conflict:
            return False
        return True

    def mark_completed(self, name: str, *, now: int) -> bool:
        """``active`` -> ``completed`` once the run count reached the limit; True if this call did it."""
        try:
            with aws_errors(_WHAT):
                self._ddb.update_item(
                    TableName=self.table_name,
                    Key=_key(name),
                    UpdateExpression="SET #state = :completed, updatedAt = :now, version = version + :one",
                    ConditionExpression="#state = :active AND runCount >= #limit",
                    ExpressionAttributeNames={"#state": "state", "#limit": "limit"},
                    ExpressionAttributeValues={
                        ":completed": {"S": "completed"},
                        ":active": {"S": "active"},
                        ":now": {"S": iso(now)},
                        ":one": {"N": "1"},
                    },
                )
        except Conflict:
            return False
        return True

    def reserve_run(self, schedule: Schedule, scheduled_time: str, job_id: str, *, now: int) -> Literal["reserved", "duplicate", "refused"]:
        """One transaction: the firing's marker (absent before) and the run counted (active, under the limit)."""
        marker = {
            "pk": {"S": f"SCHEDULE#{schedule.name}"},
            "sk": {"S": f"RUN#{scheduled_time}"},
            "jobId": {"S": job_id},
            "firedAt": {"S": iso(now)},
            "expiresAt": {"N": str(now // 1000 + RUN_MARKER_TTL_SECONDS)},
        }
        try:
            self._ddb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self.table_name, "Item": marker, "ConditionExpression": "attribute_not_exists(pk)"}},
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": _key(schedule.name),
                            "UpdateExpression": (
                                "SET runCount = if_not_exists(runCount, :zero) + :one, lastRunAt = :now, "
                                "lastScheduledTime = :time, lastJobId = :job, version = version + :one REMOVE lastError"
                            ),
                            "ConditionExpression": "#state = :active AND (attribute_not_exists(#limit) OR runCount < #limit)",
                            "ExpressionAttributeNames": {"#state": "state", "#limit": "limit"},
                            "ExpressionAttributeValues": {
                                ":zero": {"N": "0"},
                                ":one": {"N": "1"},
                                ":now": {"S": iso(now)},
                                ":time": {"S": scheduled_time},
                                ":job": {"S": job_id},
                                ":active": {"S": "active"},
                            },
                        }
                    },
                ]
            )
        except AWS_ERRORS as err:
            reasons = cancellation_reasons(err)
            if not reasons:
                raise domain_error(err, _WHAT) from err
            if reasons[0] == "ConditionalCheckFailed":
                return "duplicate"
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return "refused"
            raise Unavailable(f"could not reserve the run of schedule {schedule.name} ({reasons}); it will be retried") from err
        return "reserved"

    def count_firing(self, name: str, outcome: str, *, now: int) -> None:
        hour = iso(now)[:13]
        shard = zlib.crc32(name.encode()) % METRIC_SHARDS
        try:
            self._ddb.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": "SCHEDULER"}, "sk": {"S": f"RUNS#{hour}#{shard}"}},
                UpdateExpression="ADD #o :one SET expiresAt = if_not_exists(expiresAt, :ttl)",
                ExpressionAttributeNames={"#o": outcome},
                ExpressionAttributeValues={":one": {"N": "1"}, ":ttl": {"N": str(now // 1000 + METRIC_TTL_SECONDS)}},
            )
        except AWS_ERRORS as err:  # a counter must never fail a firing
            logger.warning("could not count a schedule firing", extra={"schedule": name, "error": str(domain_error(err, _WHAT))})

    def firing_counts(self, since_ms: int, until_ms: int) -> dict[str, dict[str, int]]:
        """hour (``YYYY-MM-DDTHH``) -> outcome -> count, shards summed."""
        out_counts: dict[str, dict[str, int]] = {}
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": {
                ":pk": {"S": "SCHEDULER"},
                ":a": {"S": f"RUNS#{iso(since_ms)[:13]}"},
                ":b": {"S": f"RUNS#{iso(until_ms)[:13]}#~"},
            },
        }
        while True:
            with aws_errors(_WHAT):
                out = self._ddb.query(**params)
            for item in out.get("Items", []):
                hour = item["sk"]["S"].split("#")[1]
                bucket = out_counts.setdefault(hour, {})
                for key, value in item.items():
                    if "N" in value and key != "expiresAt":
                        bucket[key] = bucket.get(key, 0) + int(value["N"])
            if "LastEvaluatedKey" not in out:
                return out_counts
            params["ExclusiveStartKey"] = out["LastEvaluatedKey"]


