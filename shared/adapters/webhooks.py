"""The AWS and HTTP calls of webhooks: delivery records, the delivery queue, the secrets, the POST.

Delivery records live in the realtime table beside nothing else of the job (so a retry never
rewrites the job item or its indexes), one item per delivery, expiring by TTL:

    pk=WEBHOOK#<userId>#<jobId>   sk=DELIVERY#<deliveryId>
        event, url, status, attempts, createdAt, lastAttemptAt, httpStatus, error, nextAttemptAt, deliveredAt

``GET /jobs/{jobId}/webhooks`` is one Query on the job's partition. botocore's errors stop here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import HTTPRedirectHandler, Request, build_opener

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors
from shared.clock import iso
from shared.errors import Conflict, Unavailable
from shared.webhooks import Delivery, DeliveryAttempt, DeliveryStatus


def _pk(user_id: str, job_id: str) -> str:
    return f"WEBHOOK#{user_id}#{job_id}"


class DynamoDeliveryLog:
    def __init__(self, table_name: str, ddb: Any = None) -> None:
        self.table_name = table_name
        self._ddb = ddb or clients.client("dynamodb")

    def _key(self, delivery: Delivery) -> dict[str, Any]:
        return {"pk": {"S": _pk(delivery.user_id, delivery.job_id)}, "sk": {"S": f"DELIVERY#{delivery.delivery_id}"}}

    def record_pending(self, delivery: Delivery, *, now_ms: int, expires_at: int) -> None:
        item = {
            **self._key(delivery),
            "deliveryId": {"S": delivery.delivery_id},
            "event": {"S": delivery.event_type},
            "url": {"S": delivery.url},
            "status": {"S": DeliveryStatus.PENDING.value},
            "attempts": {"N": "0"},
            "createdAt": {"S": iso(now_ms)},
            "expiresAt": {"N": str(expires_at)},
        }
        try:
            with aws_errors("DynamoDB (webhook deliveries)"):
                self._ddb.put_item(TableName=self.table_name, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except Conflict:
            return  # the same change read twice: one record

    def record_attempt(self, delivery: Delivery, attempt: DeliveryAttempt) -> None:
        status = attempt.status
        names = {"#status": "status", "#attempts": "attempts", "#last": "lastAttemptAt", "#event": "event", "#url": "url"}
        values: dict[str, Any] = {
            ":status": {"S": status.value},
            ":attempts": {"N": str(attempt.attempt)},
            ":last": {"S": iso(attempt.at_ms)},
            ":delivered": {"S": DeliveryStatus.DELIVERED.value},
            ":event": {"S": delivery.event_type},
            ":url": {"S": delivery.url},
            ":id": {"S": delivery.delivery_id},
        }
        names["#id"] = "deliveryId"
        sets = ["#status = :status", "#attempts = :attempts", "#last = :last", "#event = :event", "#url = :url", "#id = :id"]
        removes = []
        # every name aliased: "error" is one of DynamoDB's reserved words
        for attribute, value in (("httpStatus", attempt.http_status), ("error", attempt.error), ("nextAttemptAt", attempt.next_attempt_at)):
            names[f"#{attribute}"] = attribute
            if value is None:
                removes.append(f"#{attribute}")
            else:
                values[f":{attribute}"] = {"N": str(value)} if isinstance(value, int) else {"S": str(value)}
                sets.append(f"#{attribute} = :{attribute}")
        if status is DeliveryStatus.DELIVERED:
            names["#deliveredAt"] = "deliveredAt"
            sets.append("#deliveredAt = :last")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            with aws_errors("DynamoDB (webhook deliveries)"):
                self._ddb.update_item(
                    TableName=self.table_name,
                    Key=self._key(delivery),
                    UpdateExpression=expression,
                    # a late duplicate never turns a delivered record back into a failure
                    ConditionExpression="attribute_not_exists(#status) OR #status <> :delivered",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
        except Conflict:
            return

    def is_delivered(self, delivery: Delivery) -> bool:
        with aws_errors("DynamoDB (webhook deliveries)"):
            out = self._ddb.get_item(TableName=self.table_name, Key=self._key(delivery), ConsistentRead=True)
        return (out.get("Item") or {}).get("status", {}).get("S") == DeliveryStatus.DELIVERED.value

    def deliveries(self, user_id: str, job_id: str) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": _pk(user_id, job_id)}},
        }
        items: list[dict[str, Any]] = []
        while True:
            with aws_errors("DynamoDB (webhook deliveries)"):
                out = self._ddb.query(**params)
            items.extend(out.get("Items", []))
            if not out.get("LastEvaluatedKey"):
                break
            params["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        records = []
        for item in items:
            record: dict[str, Any] = {}
            for name in ("deliveryId", "event", "url", "status", "createdAt", "lastAttemptAt", "nextAttemptAt", "deliveredAt", "error"):
                if name in item:
                    record[name] = item[name]["S"]
            record["attempts"] = int(item.get("attempts", {}).get("N", "0"))
            if "httpStatus" in item:
                record["httpStatus"] = int(item["httpStatus"]["N"])
            records.append(record)
        return sorted(records, key=lambda r: (r.get("createdAt", ""), r.get("deliveryId", "")))


class SqsDeliveryQueue:
    def __init__(self, queue_url: str, sqs: Any = None) -> None:
        self.queue_url = queue_url
        self._sqs = sqs or clients.client("sqs")

    def enqueue(self, deliveries: list[Delivery]) -> None:
        if not self.queue_url:
            raise Unavailable("no webhook queue is configured (JOBQ_WEBHOOK_QUEUE_URL)")
        for start in range(0, len(deliveries), 10):
            entries = [{"Id": str(i), "MessageBody": d.to_message()} for i, d in enumerate(deliveries[start : start + 10])]
            for _ in range(3):
                with aws_errors("SQS (webhook deliveries)"):
                    out = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
                failed = {f["Id"] for f in out.get("Failed", [])}
                entries = [e for e in entries if e["Id"] in failed]
                if not entries:
                    break
            if entries:
                raise Unavailable(f"SQS did not take {len(entries)} webhook deliveries")

    def retry_later(self, receipt_handle: str, seconds: int) -> None:
        with aws_errors("SQS (webhook deliveries)"):
            self._sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=min(seconds, 12 * 3600))


class SecretsManagerSecrets:
    """Secret strings by ARN, cached per container for ``cache_seconds`` (a rotation shows within that)."""

    def __init__(self, cache_seconds: int, client: Any = None) -> None:
        self.cache_seconds = cache_seconds
        self._client = client
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, arn: str) -> str:
        if not arn:
            raise Unavailable("the queue has no webhook secret (webhookSecretArn)")
        with self._lock:
            hit = self._cache.get(arn)
            if hit and time.monotonic() - hit[0] < self.cache_seconds:
                return hit[1]
        client = self._client or clients.client("secretsmanager")
        with aws_errors("Secrets Manager (webhook secret)"):
            value = str(client.get_secret_value(SecretId=arn)["SecretString"])
        with self._lock:
            self._cache[arn] = (time.monotonic(), value)
        return value


class _NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class UrllibPoster:
    """POST with no redirects followed (a redirect is an answer: 3xx, retried like any non-2xx)."""

    def __init__(self) -> None:
        self._opener = build_opener(_NoRedirect)

    def post(self, url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> tuple[int | None, str | None]:
        request = Request(url, data=body, method="POST", headers=dict(headers))
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(64 * 1024)
                return int(response.status), None
        except HTTPError as err:
            return int(err.code), f"the receiver answered {err.code}"
        except (URLError, TimeoutError, ConnectionError, OSError) as err:
            return None, f"the receiver is unreachable: {getattr(err, 'reason', err)}"
