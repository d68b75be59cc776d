"""Flow items in DynamoDB: a parent's counter and one edge per child, beside the parent's job item.

Keys (the jobs table; ``<jobKey>`` is the parent job's pk, as shared/adapters/job_repository.py spells it):
    flow counter   pk=<parent jobKey>   sk=FLOW            pending (N), failed (N), total (N)
    child edge     pk=<parent jobKey>   sk=CHILD#<child>   childId, queue, onFailure, state, endedAt
The stream's filter lets only ``sk=JOB`` through, so these items wake nobody. A parent's
children are one key-range Query (``sk begins_with CHILD#``): no index.

Exactly once per child: a child's end is one TransactWriteItems of its edge, conditional on
``state = unprocessed``, and the counter's ``ADD pending -1`` (or ``failed +1``). A redelivered
stream batch, or a child retried and ending again, finds its edge already moved and changes
nothing (``counted`` False). Cost per child: 2 items in a transaction = 4 write units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from shared.adapters import clients
from shared.adapters.aws_errors import AWS_ERRORS, aws_code, cancellation_reasons
from shared.adapters.job_repository import JobStore, _job_key, _job_pk, _unavailable, decode_cursor, encode_cursor
from shared.errors import Conflict, Invalid
from shared.models import FailurePolicy, Job, JobRef

_deserializer = TypeDeserializer()

FLOW_SK = "FLOW"
EDGE_PREFIX = "CHILD#"
MAX_TRANSACTION_ITEMS = 100

UNPROCESSED = "unprocessed"
PROCESSED = "processed"
FAILED = "failed"
IGNORED = "ignored"
EDGE_STATES = (UNPROCESSED, PROCESSED, FAILED, IGNORED)


@dataclass(frozen=True)
class Edge:
    """One child of a parent, as the parent's bookkeeping sees it."""

    child: JobRef
    queue: str
    on_failure: FailurePolicy
    state: str
    ended_at: str | None = None


@dataclass(frozen=True)
class FlowCounts:
    pending: int  # children not finished yet (processed, ignored, removed and continue-failed ones are not)
    failed: int  # failParentOnFailure children failed and not retried yet
    total: int


def _edge_key(parent: JobRef, child_id: str) -> dict[str, Any]:
    return {"pk": {"S": _job_pk(parent.user_id, parent.job_id)}, "sk": {"S": EDGE_PREFIX + child_id}}


def _flow_key(parent: JobRef) -> dict[str, Any]:
    return {"pk": {"S": _job_pk(parent.user_id, parent.job_id)}, "sk": {"S": FLOW_SK}}


def _edge_of(parent_user: str, item: dict[str, Any]) -> Edge:
    raw = {k: _deserializer.deserialize(v) for k, v in item.items()}
    return Edge(
        child=JobRef(parent_user, str(raw["childId"])),
        queue=str(raw["queue"]),
        on_failure=FailurePolicy(str(raw.get("onFailure") or FailurePolicy.FAIL_PARENT.value)),
        state=str(raw.get("state") or UNPROCESSED),
        ended_at=str(raw["endedAt"]) if raw.get("endedAt") else None,
    )


class FlowStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name
        self._jobs = JobStore(table_name)  # a job's item as the repository writes it (its data in S3 when large)

    @property
    def _ddb(self) -> Any:
        return clients.client("dynamodb")

    # ---- the actions of a transaction (written by ``write`` or with a job's completion) ------------
    def put_job(self, job: Job) -> dict[str, Any]:
        return {"Put": {"TableName": self.table_name, "Item": self._jobs.stored_item(job), "ConditionExpression": "attribute_not_exists(pk)"}}

    def put_edge(self, parent: JobRef, child: Job) -> dict[str, Any]:
        link = child.parent
        assert link is not None
        item = {
            **_edge_key(parent, child.job_id),
            "childId": {"S": child.job_id},
            "queue": {"S": child.queue},
            "onFailure": {"S": link.on_failure.value},
            "state": {"S": UNPROCESSED},
        }
        return {"Put": {"TableName": self.table_name, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}

    def add_pending(self, parent: JobRef, count: int) -> dict[str, Any]:
        """The parent's counter grows by ``count`` children (created if absent)."""
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": _flow_key(parent),
                "UpdateExpression": "ADD pending :n, #total :n SET failed = if_not_exists(failed, :zero)",
                "ExpressionAttributeNames": {"#total": "total"},
                "ExpressionAttributeValues": {":n": {"N": str(count)}, ":zero": {"N": "0"}},
            }
        }

    def write(self, actions: list[dict[str, Any]]) -> None:
        """One transaction (at most 100 actions). ``Conflict`` when a put found its item there."""
        if len(actions) > MAX_TRANSACTION_ITEMS:
            raise ValueError("a transaction holds at most 100 items")
        try:
            self._ddb.transact_write_items(TransactItems=actions)
        except AWS_ERRORS as err:
            if aws_code(err) == "TransactionCanceledException":
                reasons = cancellation_reasons(err)
                if "ConditionalCheckFailed" in reasons:
                    raise Conflict("part of the flow exists already", details=reasons) from err
            raise _unavailable(err) from err

    # ---- a child's end, counted once ------------------------------------------------------------
    def count_child(self, parent: JobRef, child_id: str, *, state: str, pending: int, failed: int, now: str, remove: bool = False) -> bool:
        """Move the child's edge from ``unprocessed`` to ``state`` (or delete it) and add ``pending`` and
        ``failed`` to the parent's counter, in one transaction. False: it was counted before."""
        condition = {"ConditionExpression": "#s = :unprocessed", "ExpressionAttributeNames": {"#s": "state"},
                     "ExpressionAttributeValues": {":unprocessed": {"S": UNPROCESSED}}}  # fmt: skip
        if remove:
            edge: dict[str, Any] = {"Delete": {"TableName": self.table_name, "Key": _edge_key(parent, child_id), **condition}}
        else:
            edge = {
                "Update": {
                    "TableName": self.table_name,
                    "Key": _edge_key(parent, child_id),
                    "UpdateExpression": "SET #s = :state, endedAt = :now",
                    "ConditionExpression": condition["ConditionExpression"],
                    "ExpressionAttributeNames": {"#s": "state"},
                    "ExpressionAttributeValues": {":unprocessed": {"S": UNPROCESSED}, ":state": {"S": state}, ":now": {"S": now}},
                }
            }
        return self._move(edge, parent, pending, failed)

    def uncount_child(self, parent: JobRef, child_id: str, *, was: str, pending: int, failed: int) -> bool:
        """A child that ended ``was`` is retried: its edge is ``unprocessed`` again, the counter takes it back."""
        edge = {
            "Update": {
                "TableName": self.table_name,
                "Key": _edge_key(parent, child_id),
                "UpdateExpression": "SET #s = :unprocessed REMOVE endedAt",
                "ConditionExpression": "#s = :was",
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {":unprocessed": {"S": UNPROCESSED}, ":was": {"S": was}},
            }
        }
        return self._move(edge, parent, pending, failed)

    def _move(self, edge: dict[str, Any], parent: JobRef, pending: int, failed: int) -> bool:
        counter = {
            "Update": {
                "TableName": self.table_name,
                "Key": _flow_key(parent),
                "UpdateExpression": "ADD pending :p, failed :f",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":p": {"N": str(pending)}, ":f": {"N": str(failed)}},
            }
        }
        try:
            self.write([edge, counter])
        except Conflict:
            return False
        return True

    def counts(self, parent: JobRef) -> FlowCounts | None:
        try:
            out = self._ddb.get_item(TableName=self.table_name, Key=_flow_key(parent), ConsistentRead=True)
        except AWS_ERRORS as err:
            raise _unavailable(err) from err
        item = out.get("Item")
        if not item:
            return None
        return FlowCounts(int(item["pending"]["N"]), int(item.get("failed", {"N": "0"})["N"]), int(item.get("total", {"N": "0"})["N"]))

    def edge(self, parent: JobRef, child_id: str) -> Edge | None:
        try:
            out = self._ddb.get_item(TableName=self.table_name, Key=_edge_key(parent, child_id), ConsistentRead=True)
        except AWS_ERRORS as err:
            raise _unavailable(err) from err
        item = out.get("Item")
        return _edge_of(parent.user_id, item) if item else None

    # ---- reading a parent's children ----------------------------------------------------------------
    def page_edges(self, parent: JobRef, *, state: str | None, limit: int, cursor: str | None) -> tuple[list[Edge], str | None]:
        """A page of a parent's children (one key-range Query), of one state if asked."""
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :edge)",
            "ExpressionAttributeValues": {":pk": {"S": _job_pk(parent.user_id, parent.job_id)}, ":edge": {"S": EDGE_PREFIX}},
            "Limit": limit,
            "ConsistentRead": True,
        }
        if state is not None:
            params["FilterExpression"] = "#s = :state"
            params["ExpressionAttributeNames"] = {"#s": "state"}
            params["ExpressionAttributeValues"][":state"] = {"S": state}
        if cursor:
            key = decode_cursor(cursor)
            if key.get("pk") != params["ExpressionAttributeValues"][":pk"] or not str(key.get("sk", {}).get("S", "")).startswith(EDGE_PREFIX):
                raise Invalid("cursor is not valid for this listing")
            params["ExclusiveStartKey"] = key
        try:
            out = self._ddb.query(**params)
        except AWS_ERRORS as err:
            raise _unavailable(err) from err
        last = out.get("LastEvaluatedKey")
        return [_edge_of(parent.user_id, item) for item in out.get("Items", [])], encode_cursor(last) if last else None

    def edges(self, parent: JobRef) -> list[Edge]:
        found: list[Edge] = []
        cursor: str | None = None
        while True:
            page, cursor = self.page_edges(parent, state=None, limit=500, cursor=cursor)
            found.extend(page)
            if cursor is None:
                return found

    # ---- removal ------------------------------------------------------------------------------------
    def delete_parent_items(self, parent: JobRef) -> None:
        """The counter and the edges of a removed parent (its job item is the repository's)."""
        keys = [_flow_key(parent)] + [_edge_key(parent, e.child.job_id) for e in self.edges(parent)]
        for start in range(0, len(keys), 25):
            pending: dict[str, Any] = {self.table_name: [{"DeleteRequest": {"Key": k}} for k in keys[start : start + 25]]}
            try:
                for _ in range(6):
                    out = self._ddb.batch_write_item(RequestItems=pending)
                    pending = out.get("UnprocessedItems") or {}
                    if not pending:
                        break
            except AWS_ERRORS as err:
                raise _unavailable(err) from err

    def delete_edge(self, parent: JobRef, child_id: str) -> None:
        try:
            self._ddb.delete_item(TableName=self.table_name, Key=_edge_key(parent, child_id))
        except AWS_ERRORS as err:
            raise _unavailable(err) from err

    def delete_job(self, ref: JobRef) -> None:
        try:
            self._ddb.delete_item(TableName=self.table_name, Key=_job_key(ref.user_id, ref.job_id))
        except AWS_ERRORS as err:
            raise _unavailable(err) from err


def result_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
