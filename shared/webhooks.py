"""Webhooks: a job's events POSTed to its ``options.webhook`` (or its queue's default), signed, retried.

Path of one delivery:

1. the RealtimeEventsFunction reads the job's change from the table's stream; if the job's
   webhook (else the queue policy's ``webhook``) lists the event, ``WebhookDispatcher`` writes a
   ``pending`` delivery record beside the job and sends the delivery to the webhook SQS queue
   (a stream batch that fails is retried by Lambda: nothing is lost before SQS has it);
2. the WebhookDeliveryFunction (that queue's consumer) POSTs it: ``WebhookDeliverer``. A 2xx is
   ``delivered``. Anything else (a status, a timeout, a refused connection) is ``retrying``: the
   message's visibility is set to the backoff (``webhook_backoff_ms`` doubling, with jitter,
   capped at ``webhook_backoff_cap_seconds``) and it comes back; after ``webhook_max_attempts``
   the record says ``failed`` and SQS moves the message to the queue's DLQ (kept 14 days, to
   redrive). A receiver that is down for hours gets every ending once it is back.

Delivery is at least once: ``X-Jobq-Delivery`` is the same id on every attempt and on a
duplicate (receivers dedupe on it); a delivery already recorded ``delivered`` is not POSTed again.

The signature (secret per queue, in Secrets Manager; never logged, never in a job or a record)::

    X-Jobq-Timestamp: 1795485600
    X-Jobq-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

A receiver recomputes it over the raw body, compares in constant time (``hmac.compare_digest``)
and rejects timestamps older than a few minutes (``verify`` below does exactly that).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

from shared.backoff import backoff_seconds
from shared.clock import iso, now_ms
from shared.models import Backoff, BackoffType, WebhookOptions
from shared.observability import logger
from shared.realtime import EventType, JobChange, ProgressThrottle, _at_ms, change_kind, event_for
from shared.settings import Settings

SIGNATURE_HEADER = "X-Jobq-Signature"
TIMESTAMP_HEADER = "X-Jobq-Timestamp"
DELIVERY_HEADER = "X-Jobq-Delivery"
EVENT_HEADER = "X-Jobq-Event"
MAX_ERROR_CHARS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(secret: str, timestamp: str | int, body: bytes, signature: str, *, now_s: int, tolerance_s: int = 300) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now_s - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature.strip())


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    user_id: str
    job_id: str
    queue: str
    url: str
    event: dict[str, Any]

    @property
    def event_type(self) -> str:
        return str(self.event.get("type", ""))

    def to_message(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def from_message(cls, body: str) -> Delivery:
        raw = json.loads(body)
        return cls(**{k: raw[k] for k in ("delivery_id", "user_id", "job_id", "queue", "url", "event")})


@dataclass(frozen=True)
class DeliveryAttempt:
    """How one POST of a delivery went (what its record then says)."""

    status: DeliveryStatus
    attempt: int
    at_ms: int
    http_status: int | None = None
    error: str | None = None
    next_attempt_at: str | None = None


def delivery_id(user_id: str, job_id: str, version: int, kind: str) -> str:
    """The same change gives the same id (a stream batch read twice sends duplicates, not new deliveries)."""
    return hashlib.sha256(f"{user_id}\0{job_id}\0{version}\0{kind}".encode()).hexdigest()[:32]


class DeliveryLog(Protocol):
    """Delivery records beside the job (shared/adapters/webhooks.py)."""

    def record_pending(self, delivery: Delivery, *, now_ms: int, expires_at: int) -> None: ...
    def record_attempt(self, delivery: Delivery, attempt: DeliveryAttempt) -> None: ...
    def is_delivered(self, delivery: Delivery) -> bool: ...
    def deliveries(self, user_id: str, job_id: str) -> list[dict[str, Any]]: ...


class DeliveryQueue(Protocol):
    def enqueue(self, deliveries: list[Delivery]) -> None: ...
    def retry_later(self, receipt_handle: str, seconds: int) -> None: ...


class Poster(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> tuple[int | None, str | None]: ...


class DeliveryFailed(Exception):
    """Leave the message on the queue: it returns after the backoff set for it."""


# ---- the stream side ----------------------------------------------------------------------------------------------


class WebhookDispatcher:
    """Job changes in, deliveries recorded and queued for the events their webhook asked for."""

    def __init__(
        self,
        log: DeliveryLog,
        queue: DeliveryQueue,
        queue_webhook: Callable[[str], WebhookOptions | None],
        settings: Settings,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.log = log
        self.queue = queue
        self.queue_webhook = queue_webhook
        self.settings = settings
        self.clock = clock
        # Progress webhooks (opt-in) are coalesced like pushes: one a second per job.
        self.throttle = ProgressThrottle(settings.realtime_progress_interval_ms)

    def dispatch(self, changes: Iterable[JobChange]) -> int:
        deliveries: list[Delivery] = []
        for change in changes:
            kind = change_kind(change.old, change.new)
            job = change.new
            if kind is None or job is None:
                continue
            hook = job.webhook or self.queue_webhook(job.queue)
            if hook is None or kind.value not in hook.events:
                continue
            event = event_for(kind, job, inline_result_bytes=self.settings.max_result_bytes)
            delivery = Delivery(delivery_id(job.user_id, job.job_id, job.version, kind.value), job.user_id, job.job_id, job.queue, hook.url, event)
            key = ("webhook", job.user_id, job.job_id)
            if kind is EventType.PROGRESS:
                if not self.throttle.offer(key, _at_ms(job, self.clock), {"delivery": delivery}):
                    continue
            else:
                self.throttle.drop(key)
            deliveries.append(delivery)
        deliveries += [held["delivery"] for _, held in self.throttle.due(self.clock())]
        if not deliveries:
            return 0
        now = self.clock()
        expires_at = now // 1000 + self.settings.webhook_delivery_ttl_days * 86400
        for delivery in deliveries:
            self.log.record_pending(delivery, now_ms=now, expires_at=expires_at)
        self.queue.enqueue(deliveries)  # raises when SQS does not take them: the stream batch is retried
        return len(deliveries)


# ---- the delivery side ------------------------------------------------------------------------------------------------


class WebhookDeliverer:
    """One queued delivery: POST it signed; record the outcome; back off on failure."""

    def __init__(
        self,
        log: DeliveryLog,
        queue: DeliveryQueue,
        poster: Poster,
        secret_of: Callable[[str], str],
        settings: Settings,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.log = log
        self.queue = queue
        self.poster = poster
        self.secret_of = secret_of
        self.settings = settings
        self.clock = clock

    def deliver(self, body: str, *, receipt_handle: str, receive_count: int) -> DeliveryStatus | None:
        try:
            delivery = Delivery.from_message(body)
        except (ValueError, KeyError, TypeError):
            logger.error("malformed webhook delivery dropped")
            return None
        if self.log.is_delivered(delivery):
            return DeliveryStatus.DELIVERED  # a duplicate message: the receiver has it
        attempt = max(1, receive_count)
        try:
            WebhookOptions(url=delivery.url).check_url(allow_loopback_http=self.settings.allow_loopback_http_targets)
        except ValueError as err:
            self._record(delivery, DeliveryStatus.FAILED, attempt, None, f"not sent: {err}")
            return DeliveryStatus.FAILED
        payload = json.dumps(delivery.event, separators=(",", ":"), default=str).encode()
        timestamp = self.clock() // 1000
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "jobq-webhooks/1",
            EVENT_HEADER: delivery.event_type,
            DELIVERY_HEADER: delivery.delivery_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.secret_of(delivery.queue), timestamp, payload),
        }
        status, error = self.poster.post(delivery.url, payload, headers, timeout=self.settings.webhook_timeout_seconds)
        if status is not None and 200 <= status < 300:
            self._record(delivery, DeliveryStatus.DELIVERED, attempt, status, None)
            logger.info("webhook delivered", extra={"delivery_id": delivery.delivery_id, "attempt": attempt, "status": status})
            return DeliveryStatus.DELIVERED
        problem = error or f"the receiver answered {status}"
        if attempt >= self.settings.webhook_max_attempts:
            # Not acknowledged: SQS moves it to the DLQ at maxReceiveCount, where it waits for a redrive.
            self._record(delivery, DeliveryStatus.FAILED, attempt, status, problem)
            logger.error("webhook failed for good", extra={"delivery_id": delivery.delivery_id, "attempt": attempt, "error": problem})
            raise DeliveryFailed(problem)
        wait = backoff_seconds(
            Backoff(type=BackoffType.EXPONENTIAL, delay=self.settings.webhook_backoff_ms), attempt, cap_seconds=self.settings.webhook_backoff_cap_seconds
        )
        self._record(delivery, DeliveryStatus.RETRYING, attempt, status, problem, next_attempt_at=iso(self.clock() + wait * 1000))
        logger.warning("webhook failed; retrying", extra={"delivery_id": delivery.delivery_id, "attempt": attempt, "retry_in_s": wait, "error": problem})
        self.queue.retry_later(receipt_handle, wait)
        raise DeliveryFailed(problem)

    def _record(
        self, delivery: Delivery, status: DeliveryStatus, attempt: int, http_status: int | None, error: str | None, next_attempt_at: str | None = None
    ) -> None:
        error = error[:MAX_ERROR_CHARS] if error else None
        self.log.record_attempt(delivery, DeliveryAttempt(status, attempt, self.clock(), http_status, error, next_attempt_at))
