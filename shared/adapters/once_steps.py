"""Once-only steps of a job (``JobContext.once``): one small item per step, beside the job, not in it.

Key: ``pk=JOB#<owner>#<jobId>`` (the job's own partition) ``sk=ONCE#<name>``, so the consumer's
existing grant (LeadingKeys ``JOB#*``) covers it, the stream readers ignore it (their filter
is ``sk=JOB``), and the job item stays as small as it was. Attributes: ``state``
(``started | done | failed``), ``attempt`` (the attempt that last started it), ``result`` (JSON,
when done), ``updatedAt``, ``expiresAt`` (TTL: the job's log lifetime).

Per step: a first run is one conditional PutItem (``started``) and one UpdateItem (``done`` and
the result); a step already done costs the failed PutItem and one GetItem. A step is never
started by two attempts at once: the condition lets a new start replace only a ``failed``
step, or a ``started`` one from an earlier attempt (that attempt's consumer died in the step).
"""

from __future__ import annotations

import json
from typing import Any

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors
from shared.adapters.job_repository import _job_pk
from shared.clock import iso, now_ms
from shared.errors import Conflict
from shared.once import StepRecord, StepStart, StepState


def _key(user_id: str, job_id: str, name: str) -> dict[str, Any]:
    return {"pk": {"S": _job_pk(user_id, job_id)}, "sk": {"S": f"ONCE#{name}"}}


def _record(item: dict[str, Any]) -> StepRecord:
    raw = item.get("result", {}).get("S")
    return StepRecord(state=item["state"]["S"], attempt=int(item["attempt"]["N"]), result=json.loads(raw) if raw is not None else None)


class OnceSteps:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _ddb(self) -> Any:
        return clients.client("dynamodb")

    def start(self, user_id: str, job_id: str, name: str, *, attempt: int, expires_at: int) -> StepStart:
        item = {
            **_key(user_id, job_id, name),
            "state": {"S": "started"},
            "attempt": {"N": str(attempt)},
            "updatedAt": {"S": iso(now_ms())},
            "expiresAt": {"N": str(expires_at)},
        }
        try:
            with aws_errors(f"cannot start step {name} of job {job_id}"):
                out = self._ddb.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk) OR #s = :failed OR (#s = :started AND attempt < :attempt)",
                    ExpressionAttributeNames={"#s": "state"},
                    ExpressionAttributeValues={":failed": {"S": "failed"}, ":started": {"S": "started"}, ":attempt": {"N": str(attempt)}},
                    ReturnValues="ALL_OLD",
                )
        except Conflict:
            current = self.get(user_id, job_id, name)
            if current is None:  # removed in between (TTL): start afresh
                return self.start(user_id, job_id, name, attempt=attempt, expires_at=expires_at)
            return StepStart(started=False, previous=current)
        old = out.get("Attributes")
        return StepStart(started=True, previous=_record(old) if old else None)

    def finish(self, user_id: str, job_id: str, name: str, *, attempt: int, state: StepState, result: Any = None) -> None:
        values: dict[str, Any] = {":state": {"S": state}, ":at": {"S": iso(now_ms())}, ":attempt": {"N": str(attempt)}}
        update = "SET #s = :state, updatedAt = :at"
        if state == "done":
            update += ", #r = :result"
            values[":result"] = {"S": json.dumps(result, separators=(",", ":"))}
        with aws_errors(f"cannot record step {name} of job {job_id}"):
            self._ddb.update_item(
                TableName=self.table_name,
                Key=_key(user_id, job_id, name),
                UpdateExpression=update,
                # Only the attempt that started it ends it.
                ConditionExpression="attempt = :attempt",
                ExpressionAttributeNames={"#s": "state", **({"#r": "result"} if state == "done" else {})},
                ExpressionAttributeValues=values,
            )

    def get(self, user_id: str, job_id: str, name: str) -> StepRecord | None:
        with aws_errors(f"cannot read step {name} of job {job_id}"):
            out = self._ddb.get_item(TableName=self.table_name, Key=_key(user_id, job_id, name), ConsistentRead=True)
        item = out.get("Item")
        return _record(item) if item else None


__all__ = ["OnceSteps"]
