"""The report store: what the health and cleanup runs found, and the health sweep's own state.

Items in the jobs table, none of them a job (the stream filter lets only ``sk=JOB`` through):

    pk=MAINTENANCE     sk=HEALTH | CLEANUP    the last run of each function (``report``: JSON)
    pk=QUEUE#<queue>   sk=HEALTH              the queue's health as last found (+ status, reasons)
    pk=QUEUE#<queue>   sk=RECOUNT             its last recount
    pk=QUEUE#<queue>   sk=SWEEP               ids woken lately, the delayed-jobs cursor (``state``: JSON)
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors

Run = Literal["HEALTH", "CLEANUP"]
QueueReport = Literal["HEALTH", "RECOUNT"]


class DynamoReportStore:
    """The ``ReportStore`` (shared/ports.py) on the jobs table."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def _put(self, pk: str, sk: str, attribute: str, text: str, extra: dict[str, Any] | None = None) -> None:
        item: dict[str, Any] = {"pk": {"S": pk}, "sk": {"S": sk}, attribute: {"S": text}, **(extra or {})}
        with aws_errors(f"cannot store the maintenance report {pk}/{sk}"):
            clients.client("dynamodb").put_item(TableName=self.table_name, Item=item)

    def _get(self, pk: str, sk: str, attribute: str, *, consistent: bool = False) -> Any:
        with aws_errors(f"cannot read the maintenance report {pk}/{sk}"):
            out = clients.client("dynamodb").get_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=consistent)
        item = out.get("Item")
        return json.loads(item[attribute]["S"]) if item and attribute in item else None

    def put_run(self, kind: Run, report: BaseModel) -> None:
        self._put("MAINTENANCE", kind, "report", report.model_dump_json(by_alias=True))

    def get_run(self, kind: Run) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._get("MAINTENANCE", kind, "report")
        return found

    def put_queue_report(self, queue: str, kind: QueueReport, report: BaseModel, *, status: str | None = None, reasons: list[str] | None = None) -> None:
        """A queue's report; its health also carries status and reasons as attributes, readable in the console."""
        extra: dict[str, Any] = {}
        if status is not None:
            extra["status"] = {"S": status}
            extra["reasons"] = {"L": [{"S": r} for r in reasons or []]}
            extra["checkedAt"] = {"S": getattr(report, "checked_at", "")}
        self._put(f"QUEUE#{queue}", kind, "report", report.model_dump_json(by_alias=True), extra)

    def get_queue_report(self, queue: str, kind: QueueReport) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._get(f"QUEUE#{queue}", kind, "report")
        return found

    def get_sweep_state(self, queue: str) -> dict[str, Any]:
        # Consistent: one run's steps each read the state another step of it just wrote (its cursors).
        found: dict[str, Any] | None = self._get(f"QUEUE#{queue}", "SWEEP", "state", consistent=True)
        return found or {}

    def put_sweep_state(self, queue: str, state: dict[str, Any]) -> None:
        self._put(f"QUEUE#{queue}", "SWEEP", "state", json.dumps(state, separators=(",", ":")))


__all__ = ["DynamoReportStore", "QueueReport", "Run"]
