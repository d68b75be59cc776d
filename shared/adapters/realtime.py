"""The AWS calls of live events: connection and subscription items, and PostToConnection.

Items of the realtime table (template.yaml's RealtimeTable; all expire by ``expiresAt``):

    connection      pk=CONN#<connectionId>  sk=CONN            userId, admin, reader, groups, connectedAt
    its topics      pk=CONN#<connectionId>  sk=TOPIC#<topic>   (what $disconnect removes)
    subscription    pk=<topic>              sk=CONN#<connectionId>   userId, admin, reader, groups
    flow subscription  pk=FLOWS             sk=<topic>|CONN#<connectionId>   the same attributes
    watch marker    pk=WATCH#<scope>        sk=WATCH                 until (epoch s), expiresAt (= until)

``admin``, ``reader`` and ``groups`` are the caller's from the token verified at $connect: every
event is checked against them (shared/realtime.py), without reading the connection again.

``<topic>`` is ``JOB#<owner>#<jobId>`` or ``QUEUE#<queue>`` (shared/realtime.py). Looking up a
job's subscribers is one Query on its topic; a connection's own items are one Query on its id.
A watch marker says until when someone may be subscribed to a job of ``<owner>`` (scope
``JOBS#<owner>``) or to a queue (``QUEUE#<queue>``): written before the subscription, read for a
whole stream batch with one BatchGetItem, so records nobody watches cost no Query.
Flow subscriptions (topic ``FLOW#<owner>#<rootId>``) share one partition so that a stream batch
learns every one of them with one Query (a flow's jobs carry their root's id, not a list of
watchers), and only when the ``FLOWS`` scope is marked watched: ~200 bytes each, so a 1 MB page
holds ~5,000 before the Query pages.
botocore's errors stop here.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import boto3
from botocore.config import Config

from shared.access import Identity
from shared.adapters import clients
from shared.adapters.aws_errors import AWS_ERRORS, aws_code, aws_errors, domain_error, http_status
from shared.adapters.job_repository import JobStore
from shared.errors import Conflict, Unavailable
from shared.models import Job
from shared.observability import logger
from shared.realtime import Connection, SendResult, Subscriber

_CONN = "CONN"
_WATCH = "WATCH"


def _conn_pk(connection_id: str) -> str:
    return f"CONN#{connection_id}"


_FLOWS = "FLOWS"


def _subscription_key(topic: str, connection_id: str) -> dict[str, Any]:
    if topic.startswith("FLOW#"):
        return {"pk": {"S": _FLOWS}, "sk": {"S": f"{topic}|{_conn_pk(connection_id)}"}}
    return {"pk": {"S": topic}, "sk": {"S": _conn_pk(connection_id)}}


_WHAT = "DynamoDB (realtime connections)"


def _caller_attributes(caller: Identity) -> dict[str, Any]:
    item: dict[str, Any] = {"userId": {"S": caller.user_id}, "admin": {"BOOL": caller.is_admin}}
    if caller.is_reader:
        item["reader"] = {"BOOL": True}
    if caller.groups:
        item["groups"] = {"L": [{"S": g} for g in sorted(caller.groups)]}
    return item


def _caller_of(item: dict[str, Any]) -> Identity:
    return Identity(
        user_id=item["userId"]["S"],
        is_admin=bool(item.get("admin", {}).get("BOOL")),
        is_reader=bool(item.get("reader", {}).get("BOOL")),
        groups=frozenset(g["S"] for g in item.get("groups", {}).get("L", []) if "S" in g),
    )


class DynamoConnectionStore:
    """shared.realtime.ConnectionStore on DynamoDB."""

    def __init__(self, table_name: str, ddb: Any = None) -> None:
        self.table_name = table_name
        self._ddb = ddb or clients.client("dynamodb")

    def put_connection(self, connection: Connection, *, now_ms: int, expires_at: int) -> None:
        item = {
            "pk": {"S": _conn_pk(connection.connection_id)},
            "sk": {"S": _CONN},
            **_caller_attributes(connection.caller),
            "connectedAt": {"N": str(now_ms)},
            "expiresAt": {"N": str(expires_at)},
        }
        with aws_errors(_WHAT):
            self._ddb.put_item(TableName=self.table_name, Item=item)

    def get_connection(self, connection_id: str) -> Connection | None:
        with aws_errors(_WHAT):
            out = self._ddb.get_item(
                TableName=self.table_name, Key={"pk": {"S": _conn_pk(connection_id)}, "sk": {"S": _CONN}}, ConsistentRead=True
            )
        item = out.get("Item")
        if not item or int(item.get("expiresAt", {}).get("N", "0")) < time.time():
            return None  # TTL deletes lazily: an expired connection counts as gone
        return Connection(connection_id, _caller_of(item))

    def subscribe(self, connection: Connection, topic: str, *, expires_at: int) -> None:
        ttl = {"N": str(expires_at)}
        self._write(
            [
                {"PutRequest": {"Item": {"pk": {"S": _conn_pk(connection.connection_id)}, "sk": {"S": f"TOPIC#{topic}"}, "expiresAt": ttl}}},
                {
                    "PutRequest": {
                        "Item": {
                            **_subscription_key(topic, connection.connection_id),
                            **_caller_attributes(connection.caller),
                            "expiresAt": ttl,
                        }
                    }
                },
            ]
        )

    def unsubscribe(self, connection_id: str, topic: str) -> None:
        self._write(
            [
                {"DeleteRequest": {"Key": _subscription_key(topic, connection_id)}},
                {"DeleteRequest": {"Key": {"pk": {"S": _conn_pk(connection_id)}, "sk": {"S": f"TOPIC#{topic}"}}}},
            ]
        )

    def forget_connection(self, connection_id: str) -> int:
        """Remove the connection and every subscription of it; returns how many items went."""
        keys: list[dict[str, Any]] = []
        for item in self._query(_conn_pk(connection_id)):
            sk = item["sk"]["S"]
            keys.append({"pk": {"S": _conn_pk(connection_id)}, "sk": {"S": sk}})
            if sk.startswith("TOPIC#"):
                keys.append(_subscription_key(sk.removeprefix("TOPIC#"), connection_id))
        self._write([{"DeleteRequest": {"Key": key}} for key in keys])
        return len(keys)

    def mark_watched(self, scope: str, *, until: int) -> None:
        """Someone may be subscribed in ``scope`` until ``until`` (epoch s); a later ``until`` already there stays."""
        try:
            with aws_errors(_WHAT):
                self._ddb.update_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": f"{_WATCH}#{scope}"}, "sk": {"S": _WATCH}},
                    UpdateExpression="SET #until = :until, expiresAt = :until",
                    ConditionExpression="attribute_not_exists(#until) OR #until < :until",
                    ExpressionAttributeNames={"#until": "until"},
                    ExpressionAttributeValues={":until": {"N": str(until)}},
                )
        except Conflict:
            pass  # a subscription of a later expiry marked it already

    def watched_until(self, scopes: Iterable[str]) -> dict[str, int]:
        """Per scope with a marker: until when it may have subscribers (strongly consistent, 100 keys a request)."""
        wanted = sorted(set(scopes))
        found: dict[str, int] = {}
        for start in range(0, len(wanted), 100):
            keys = [{"pk": {"S": f"{_WATCH}#{scope}"}, "sk": {"S": _WATCH}} for scope in wanted[start : start + 100]]
            pending: dict[str, Any] = {
                self.table_name: {"Keys": keys, "ConsistentRead": True, "ProjectionExpression": "pk, #until", "ExpressionAttributeNames": {"#until": "until"}}
            }
            for attempt in range(6):
                with aws_errors(_WHAT):
                    out = self._ddb.batch_get_item(RequestItems=pending)
                for item in out.get("Responses", {}).get(self.table_name, []):
                    found[item["pk"]["S"].removeprefix(f"{_WATCH}#")] = int(item.get("until", {}).get("N", "0"))
                pending = out.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)
            if pending:
                raise Unavailable("DynamoDB is throttling the realtime table")
        return found

    def subscribers(self, topic: str) -> list[Subscriber]:
        if topic.startswith("FLOW#"):
            return self.flow_subscribers().get(topic, [])
        now = time.time()
        return [
            Subscriber(item["sk"]["S"].removeprefix("CONN#"), _caller_of(item))
            for item in self._query(topic)
            if int(item.get("expiresAt", {}).get("N", "0")) >= now
        ]

    def flow_subscribers(self) -> dict[str, list[Subscriber]]:
        """Every live flow subscription, by flow topic: one Query."""
        now = time.time()
        found: dict[str, list[Subscriber]] = {}
        for item in self._query(_FLOWS):
            if int(item.get("expiresAt", {}).get("N", "0")) < now:
                continue
            topic, _, conn = item["sk"]["S"].rpartition("|")
            found.setdefault(topic, []).append(Subscriber(conn.removeprefix("CONN#"), _caller_of(item)))
        return found

    def _query(self, pk: str) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,  # a subscription written just before an ending must be seen
        }
        items: list[dict[str, Any]] = []
        while True:
            with aws_errors(_WHAT):
                out = self._ddb.query(**params)
            items.extend(out.get("Items", []))
            last = out.get("LastEvaluatedKey")
            if not last:
                return items
            params["ExclusiveStartKey"] = last

    def _write(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.table_name: requests[start : start + 25]}
            for attempt in range(6):
                with aws_errors(_WHAT):
                    out = self._ddb.batch_write_item(RequestItems=pending)
                pending = out.get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)
            if pending:
                raise Unavailable("DynamoDB is throttling the realtime table")


def management_url(websocket_endpoint: str) -> str:
    """The @connections API of a WebSocket stage: ``wss://host/stage`` -> ``https://host/stage``."""
    if websocket_endpoint.startswith("wss://"):
        return "https://" + websocket_endpoint[len("wss://") :]
    if websocket_endpoint.startswith("ws://"):
        return "http://" + websocket_endpoint[len("ws://") :]
    return websocket_endpoint


_client_lock = threading.Lock()


@functools.cache
def _management_client(endpoint_url: str) -> Any:
    with _client_lock:
        core = boto3.session.Session()
        return core.client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint_url,
            config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2, read_timeout=5, max_pool_connections=64),
        )


class ConnectionsApi:
    """shared.realtime.ConnectionSender on API Gateway's management API (PostToConnection)."""

    def __init__(self, websocket_endpoint: str, client: Any = None) -> None:
        self.endpoint = management_url(websocket_endpoint)
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _management_client(self.endpoint)
        return self._client

    def post(self, connection_id: str, message: Mapping[str, Any]) -> SendResult:
        data = json.dumps(message, separators=(",", ":"), default=str).encode()
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
        except AWS_ERRORS as err:
            if aws_code(err) == "GoneException" or http_status(err) == 410:
                return SendResult.GONE
            logger.warning("PostToConnection failed", extra={"connection_id": connection_id, "error": str(domain_error(err, "PostToConnection"))})
            return SendResult.FAILED
        return SendResult.SENT


class StoreJobReader:
    """shared.realtime.JobReader on the job store: ``user_id``'s job ``job_id`` (ids are per owner)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def get(self, user_id: str, job_id: str) -> Job | None:
        return self.store.get(user_id, job_id)
