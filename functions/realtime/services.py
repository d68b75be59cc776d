"""The live-events services, built once per container from the settings (the composition root).

Three functions share it, each needing a part: the WebSocket routes (``realtime_service``,
``token_verifier``), the stream consumer (``event_fanout``, ``webhook_dispatcher``) and the webhook
deliveries (``webhook_deliverer``). Each builder imports what it builds, so a function's cold start
imports its own part only (the deliveries never load the JWT verifier or the WebSocket code). The other functions' root is
functions/composition.py.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from shared import clock as clocks
from shared.adapters.configuration import use_settings
from shared.errors import NotFound
from shared.settings import get_settings, validate_at_cold_start

if TYPE_CHECKING:
    from shared.access import QueueAccess
    from shared.models import WebhookOptions
    from shared.realtime import EventFanout, RealtimeService
    from shared.realtime_auth import TokenVerifier
    from shared.webhooks import WebhookDeliverer, WebhookDispatcher

validate_at_cold_start()  # inside Lambda: a missing or invalid variable fails the container's init, named
use_settings(get_settings)  # the module-level adapters (counters, policies, the queue directory) read these

_clock: clocks.Clock = clocks.now_ms


def use_clock(clock: clocks.Clock | None) -> None:
    """Build the services on ``clock`` (None: the wall clock): the local stack passes its own. Forgets the services built so far."""
    global _clock
    _clock = clock or clocks.now_ms
    reset()


def clock() -> clocks.Clock:
    return _clock

class _QueueNames:
    def names(self) -> set[str]:
        from shared.adapters import queues

        return set(queues.directory().all())


def queue_access(queue: str) -> QueueAccess | None:
    """A queue's permissions, from its policy (cached a few seconds per container); None: no such queue."""
    from shared.adapters import policies, queues

    try:
        return policies.get_policy(queues.directory().get(queue)).access
    except NotFound:
        return None


def queue_webhook(queue: str) -> WebhookOptions | None:
    """The queue policy's default webhook (the policy is cached a few seconds per container)."""
    from shared.adapters import policies, queues

    try:
        return policies.get_policy(queues.directory().get(queue)).webhook
    except NotFound:
        return None


@lru_cache(maxsize=1)
def realtime_service() -> RealtimeService:
    from shared.adapters.job_repository import JobStore
    from shared.adapters.realtime import ConnectionsApi, DynamoConnectionStore, StoreJobReader
    from shared.realtime import RealtimeService

    settings = get_settings()
    return RealtimeService(
        DynamoConnectionStore(settings.realtime_table_name),
        ConnectionsApi(settings.websocket_endpoint),
        StoreJobReader(JobStore(settings.table_name)),
        _QueueNames(),
        queue_access,
        settings,
        clock=_clock,
    )


@lru_cache(maxsize=1)
def token_verifier() -> TokenVerifier:
    from shared.realtime_auth import TokenVerifier

    settings = get_settings()
    return TokenVerifier(
        settings.jwt_issuer,
        [a.strip() for a in settings.jwt_audience.split(",")],
        groups_claim=settings.admin_groups_claim,
        admin_group=settings.admin_group,
        reader_group=settings.reader_group,
    )


@lru_cache(maxsize=1)
def event_fanout() -> EventFanout:
    from shared.adapters.realtime import ConnectionsApi, DynamoConnectionStore
    from shared.realtime import EventFanout

    settings = get_settings()
    return EventFanout(
        DynamoConnectionStore(settings.realtime_table_name), ConnectionsApi(settings.websocket_endpoint), queue_access, settings, clock=_clock
    )


@lru_cache(maxsize=1)
def webhook_dispatcher() -> WebhookDispatcher:
    from shared.adapters.webhooks import DynamoDeliveryLog, SqsDeliveryQueue
    from shared.webhooks import WebhookDispatcher

    settings = get_settings()
    return WebhookDispatcher(
        DynamoDeliveryLog(settings.realtime_table_name), SqsDeliveryQueue(settings.webhook_queue_url), queue_webhook, settings, clock=_clock
    )


@lru_cache(maxsize=1)
def webhook_deliverer() -> WebhookDeliverer:
    from shared.adapters import queues
    from shared.adapters.webhooks import DynamoDeliveryLog, SecretsManagerSecrets, SqsDeliveryQueue, UrllibPoster
    from shared.webhooks import WebhookDeliverer

    settings = get_settings()
    secrets = SecretsManagerSecrets(settings.webhook_secret_cache_seconds)
    return WebhookDeliverer(
        DynamoDeliveryLog(settings.realtime_table_name),
        SqsDeliveryQueue(settings.webhook_queue_url),
        UrllibPoster(),
        lambda queue: secrets.get(queues.directory().get(queue).webhook_secret_arn),
        settings,
        clock=_clock,
    )


def reset() -> None:
    """Tests: forget the services (they hold clients of one endpoint)."""
    for builder in (realtime_service, token_verifier, event_fanout, webhook_dispatcher, webhook_deliverer):
        builder.cache_clear()
