"""Audit entries in the jobs table (the AWS side of shared/audit.py).

    audit entry    pk=AUDIT    sk=<epoch ns, 20 digits>#<random>    entry (JSON)    expiresAt (TTL)

(nanoseconds, so two actions in one millisecond still list in the order they were made)

One partition: administrative actions come by the handful per minute, far below a partition's
1,000 writes a second, and one partition is what lets ``GET /audit`` be a single Query, newest
first (``ScanIndexForward=False``), whatever the table holds. The table's stream filter passes
job items only, so entries cost the EventsFunction nothing. No GSI sees them (they carry none of
the index keys).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors
from shared.adapters.job_repository import decode_cursor, encode_cursor
from shared.audit import AuditEntry

AUDIT_PK = "AUDIT"


class DynamoAuditStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _ddb(self) -> Any:
        return clients.client("dynamodb")

    def put(self, entry: AuditEntry, *, expires_at: int) -> None:
        item = {
            "pk": {"S": AUDIT_PK},
            "sk": {"S": f"{time.time_ns():020d}#{uuid.uuid4().hex[:12]}"},
            "entry": {"S": entry.model_dump_json(by_alias=True)},
            "expiresAt": {"N": str(expires_at)},
        }
        with aws_errors("the audit trail cannot be written"):
            self._ddb.put_item(TableName=self.table_name, Item=item)

    def page(self, *, limit: int, cursor: str | None) -> tuple[list[AuditEntry], str | None]:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": AUDIT_PK}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            params["ExclusiveStartKey"] = decode_cursor(cursor)
        with aws_errors("the audit trail cannot be read"):
            out = self._ddb.query(**params)
        last = out.get("LastEvaluatedKey")
        entries = [AuditEntry.model_validate_json(item["entry"]["S"]) for item in out.get("Items", [])]
        return entries, encode_cursor(last) if last else None


__all__ = ["AUDIT_PK", "DynamoAuditStore"]
