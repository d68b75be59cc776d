"""Circuit breaker state per processor target, in DynamoDB (shared/breakers.py decides; this stores).

Keys (new items; no index touches them):
    state           pk=BREAKER#<queue>#<type>   sk=STATE
        state (closed | open | half_open), openUntil (ms), probe (``<userId>/<jobId>``),
        probeUntil (ms), manual (bool: opened by an admin, no probe), reason, updatedAt, version
    window          pk=BREAKER#<queue>#<type>   sk=WINDOW#<windowStart ms>
        attempts, failures (ADDed per attempt), expiresAt (TTL)

An attempt's outcome is one UpdateItem on its window item (ADD, returning the new counts); a
state change is one conditional UpdateItem on the state item, so two consumers never both open
the breaker or both take the probe. Only targets with a ``breaker`` pay for any of this.
"""

from __future__ import annotations

from typing import Any

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors
from shared.breakers import BreakerState, WindowCounts
from shared.clock import iso, now_ms
from shared.errors import Conflict


def _pk(queue: str, job_type: str) -> dict[str, Any]:
    return {"S": f"BREAKER#{queue}#{job_type}"}


class DynamoBreakerStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _ddb(self) -> Any:
        return clients.client("dynamodb")

    def read(self, queue: str, job_type: str) -> BreakerState:
        with aws_errors(f"cannot read the breaker of {queue}/{job_type}"):
            out = self._ddb.get_item(TableName=self.table_name, Key={"pk": _pk(queue, job_type), "sk": {"S": "STATE"}}, ConsistentRead=True)
        item = out.get("Item")
        if not item:
            return BreakerState()
        return BreakerState(
            state=item["state"]["S"],
            open_until=int(item.get("openUntil", {}).get("N", "0")),
            probe=item.get("probe", {}).get("S"),
            probe_until=int(item.get("probeUntil", {}).get("N", "0")),
            manual=bool(item.get("manual", {}).get("BOOL", False)),
            reason=item.get("reason", {}).get("S"),
            updated_at=item.get("updatedAt", {}).get("S"),
            version=int(item.get("version", {}).get("N", "0")),
        )

    def record(self, queue: str, job_type: str, *, window_start: int, failed: bool, expires_at: int) -> WindowCounts:
        with aws_errors(f"cannot record an attempt on the breaker of {queue}/{job_type}"):
            out = self._ddb.update_item(
                TableName=self.table_name,
                Key={"pk": _pk(queue, job_type), "sk": {"S": f"WINDOW#{window_start}"}},
                UpdateExpression="ADD attempts :one, failures :failed SET expiresAt = :ttl",
                ExpressionAttributeValues={":one": {"N": "1"}, ":failed": {"N": "1" if failed else "0"}, ":ttl": {"N": str(expires_at)}},
                ReturnValues="ALL_NEW",
            )
        attributes = out["Attributes"]
        return WindowCounts(attempts=int(attributes["attempts"]["N"]), failures=int(attributes["failures"]["N"]))

    def change(self, queue: str, job_type: str, new: BreakerState, *, expected_version: int) -> bool:
        """Write ``new`` over the state read at ``expected_version``; False if another writer got there first."""
        item: dict[str, Any] = {
            "pk": _pk(queue, job_type),
            "sk": {"S": "STATE"},
            "state": {"S": new.state},
            "openUntil": {"N": str(new.open_until)},
            "probeUntil": {"N": str(new.probe_until)},
            "manual": {"BOOL": new.manual},
            "updatedAt": {"S": iso(now_ms())},
            "version": {"N": str(expected_version + 1)},
        }
        if new.probe:
            item["probe"] = {"S": new.probe}
        if new.reason:
            item["reason"] = {"S": new.reason[:500]}
        params: dict[str, Any] = {"TableName": self.table_name, "Item": item}
        if expected_version == 0:
            params["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            params["ConditionExpression"] = "version = :v"
            params["ExpressionAttributeValues"] = {":v": {"N": str(expected_version)}}
        try:
            with aws_errors(f"cannot change the breaker of {queue}/{job_type}"):
                self._ddb.put_item(**params)
        except Conflict:
            return False
        return True


__all__ = ["DynamoBreakerStore"]
