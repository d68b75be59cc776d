"""Live job events: what a change of a job means to its watchers, who may watch, and the fan-out.

A client connects to the WebSocket API with its JWT (verified in ``$connect``), then sends

    {"action": "subscribe", "jobId": "invoice-42"}                     # its own job
    {"action": "subscribe", "jobId": "invoice-42", "userId": "alice"}  # alice's job, for those who may read it
    {"action": "subscribe", "queue": "email-sending"}                  # every job of a queue, for its readers
    {"action": "subscribe", "flowId": "order-7"}                       # every job of a flow (by its root), as GET /flows/{id}
    {"action": "unsubscribe", ...the same fields...}
    {"action": "ping"}

and receives events as seed 002 writes them, plus the job's ``userId``, ``queue``, ``status``
and ``at`` (when the change was written) on every one::

    {"type": "job:progress", "jobId", "progress", "message", ...}
    {"type": "job:completed", "jobId", "result" | "resultRef", ...}

Event types: ``job:waiting``, ``job:delayed``, ``job:active``, ``job:progress``,
``job:completed``, ``job:failed`` (``error``, ``willRetry``), ``job:cancelled``, ``job:stalled``.
A flow's subscribers get its jobs' events and, when the root ends, ``flow:completed`` (``flowId``,
``status``, ``result`` | ``resultRef`` | ``error``). A job's flow is its item's ``parent.root``
(or itself, for a root), so no lookup finds it; the flow subscriptions are read once per stream
batch that holds a flow's job (``EventFanout._flow_subscribers``), never for other batches.
Subscribing answers ``{"type": "subscribed", ...}`` and then the job's current state as its
event (a finished job's final event), so a client that subscribes late misses nothing.

Who sees what is the HTTP API's rule (shared/access.py): a job, its owner and whoever may read
every job of its queue (admins, the reader group, the queue's read and operate groups); a whole
queue, the latter. It is checked when subscribing and again for every event sent (the
subscription carries the subscriber's identity; the queue's permissions are read from its
policy, cached a few seconds per container), so a permission taken away stops the events.

Cost: a record nobody watches costs no lookup. Subscribing writes a watch marker first (per
job owner, ``JOBS#<owner>``, or per queue, ``QUEUE#<queue>``: until when a subscription there may
live, its TTL) and only then the subscription; the fan-out reads the markers of a whole batch's
owners and queues in one strongly consistent BatchGetItem (none at all for scopes it already
knows watched, until their marker's time) and Queries a topic only in a watched scope, once a
batch. So a subscription made before a change was written always gets it; a scope whose last
subscriber left keeps costing Queries until its marker's time passes (3 h at most).
Progress is coalesced per connection and job to one event per
``realtime_progress_interval_ms`` of the job's timeline (the latest wins; a held one goes out
with the shard's next batch once due, or is superseded by the job's next change), and a
progress record looks its subscribers up at most once per ``realtime_subscriber_cache_ms``
per container; status changes always read them fresh (strongly consistent), so an ending is
never missed by a subscriber that subscribed before it was written. A queue subscription sees
many jobs, so it has a budget of its own across them (``QueueBudget``): at most
``realtime_queue_progress_per_second`` progress events and ``realtime_queue_events_per_second``
events in all per connection and queue a second; what is over is dropped and counted, and the
connection is told once a second (``{"type": "queue:dropped", "queue", "dropped"}``) so it can
re-read the counts over HTTP. One connection's work per second is bounded whatever the queue does.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from shared.access import Action, Identity, QueueAccess, allows, may_read_job
from shared.clock import iso, now_ms, parse_iso
from shared.errors import Forbidden, Invalid, JobqError, NotFound
from shared.jobs import JobService
from shared.models import JOB_ID_PATTERN, NAME_PATTERN, Job, json_size
from shared.observability import logger
from shared.settings import Settings
from shared.status import FINISHED, JobStatus


class EventType(StrEnum):
    WAITING = "job:waiting"
    DELAYED = "job:delayed"
    ACTIVE = "job:active"
    PROGRESS = "job:progress"
    COMPLETED = "job:completed"
    FAILED = "job:failed"
    CANCELLED = "job:cancelled"
    STALLED = "job:stalled"


ENDINGS: frozenset[EventType] = frozenset({EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED})
FLOW_COMPLETED = "flow:completed"  # a flow's root ended (completed, failed or cancelled): sent to the flow's subscribers


# ---- topics and subscribers ---------------------------------------------------------------------------


def job_topic(user_id: str, job_id: str) -> str:
    """A job's watchers, keyed by its owner and id (two users may both have ``invoice-42``)."""
    return f"JOB#{user_id}#{job_id}"


def queue_topic(queue: str) -> str:
    return f"QUEUE#{queue}"


def owner_scope(user_id: str) -> str:
    """The watch scope of every job of ``user_id``: a subscription to one of them marks it."""
    return f"JOBS#{user_id}"


def queue_scope(queue: str) -> str:
    return f"QUEUE#{queue}"


FLOWS_SCOPE = "FLOWS"  # the watch scope of every flow subscription (they share one partition)


def flow_topic(user_id: str, root_id: str) -> str:
    """Every job of the flow under ``root_id`` (a flow is one user's: its jobs share the owner)."""
    return f"FLOW#{user_id}#{root_id}"


@dataclass(frozen=True)
class Connection:
    """An open WebSocket and who opened it (from the token verified at $connect)."""

    connection_id: str
    caller: Identity


@dataclass(frozen=True)
class Subscriber:
    """One subscription of one connection, with who subscribed (checked again for every event)."""

    connection_id: str
    caller: Identity


class SendResult(StrEnum):
    SENT = "sent"
    GONE = "gone"  # 410: the client went away; the connection is forgotten
    FAILED = "failed"


class ConnectionStore(Protocol):
    """Connections and subscriptions (shared/adapters/realtime.py: DynamoDB items with a TTL)."""

    def put_connection(self, connection: Connection, *, now_ms: int, expires_at: int) -> None: ...
    def get_connection(self, connection_id: str) -> Connection | None: ...
    def forget_connection(self, connection_id: str) -> int: ...
    def subscribe(self, connection: Connection, topic: str, *, expires_at: int) -> None: ...
    def unsubscribe(self, connection_id: str, topic: str) -> None: ...
    def subscribers(self, topic: str) -> list[Subscriber]: ...
    def mark_watched(self, scope: str, *, until: int) -> None: ...
    def watched_until(self, scopes: Iterable[str]) -> dict[str, int]: ...
    def flow_subscribers(self) -> dict[str, list[Subscriber]]: ...  # every flow topic with its subscribers, one lookup


class ConnectionSender(Protocol):
    """API Gateway's @connections API (PostToConnection)."""

    def post(self, connection_id: str, message: Mapping[str, Any]) -> SendResult: ...


class JobReader(Protocol):
    def get(self, user_id: str, job_id: str) -> Job | None: ...


class QueueNames(Protocol):
    def names(self) -> set[str]: ...


QueueAccessOf = Callable[[str], QueueAccess | None]  # a queue's permissions (its policy); None: no such queue


# ---- what a change means --------------------------------------------------------------------------------


def _at_ms(job: Job, clock: Callable[[], int]) -> int:
    try:
        return parse_iso(job.updated_at)
    except (TypeError, ValueError):
        return clock()


def _base(kind: EventType, job: Job) -> dict[str, Any]:
    return {
        "type": kind.value,
        "jobId": job.job_id,
        "userId": job.user_id,
        "queue": job.queue,
        "status": job.status.value,
        "at": job.updated_at,
    }


def event_for(kind: EventType, job: Job, *, inline_result_bytes: int) -> dict[str, Any]:
    """The message for ``kind`` about ``job`` as it is now (seed 002's fields first)."""
    event = _base(kind, job)
    if kind is EventType.PROGRESS:
        event.update(progress=job.progress, message=job.progress_message)
    elif kind is EventType.ACTIVE:
        event.update(attempt=job.attempts, maxAttempts=job.max_attempts, progress=job.progress, message=job.progress_message)
    elif kind is EventType.DELAYED:
        event.update(runAt=job.run_at, delay=job.delay)
    elif kind is EventType.COMPLETED:
        size = json_size(job.result)
        if size <= inline_result_bytes:
            event["result"] = job.result
        else:
            # PostToConnection takes 128 KiB: a large result is fetched from the API instead.
            event["resultRef"] = {"href": f"/jobs/{job.job_id}?userId={job.user_id}", "bytes": size}
        event.update(attempts=job.attempts, processingTime=job.processing_time)
    elif kind is EventType.FAILED:
        retrying = job.status is JobStatus.DELAYED
        event.update(error=job.error, willRetry=retrying, attempt=job.attempts, maxAttempts=job.max_attempts)
        if retrying:
            event["runAt"] = job.run_at
    elif kind is EventType.STALLED:
        event.update(attempt=job.attempts, maxAttempts=job.max_attempts)
    return event


def flow_completed_event(root: Job, *, inline_result_bytes: int) -> dict[str, Any]:
    """The flow under ``root`` ended: its root's id (``flowId``), status, and result (or a pointer) or error."""
    event = {**_base(EventType.COMPLETED, root), "type": FLOW_COMPLETED, "flowId": root.job_id}
    if root.status is JobStatus.COMPLETED:
        size = json_size(root.result)
        if size <= inline_result_bytes:
            event["result"] = root.result
        else:
            event["resultRef"] = {"href": f"/flows/{root.job_id}?userId={root.user_id}", "bytes": size}
    else:
        event["error"] = root.error
    return event


def ends_flow(job: Job) -> bool:
    """A flow's root (no parent, has children) in a final state: its flow ended."""
    return job.parent is None and job.has_children and job.status in FINISHED


def change_kind(old: Job | None, new: Job | None) -> EventType | None:
    """The event a stream record stands for; None for writes no watcher cares about."""
    if new is None:
        return None  # removed (clean, TTL): not an event of the job's life
    status = new.status
    if old is None:
        return {JobStatus.WAITING: EventType.WAITING, JobStatus.DELAYED: EventType.DELAYED}.get(status)
    if status is JobStatus.ACTIVE:
        if old.status is not JobStatus.ACTIVE or old.attempts != new.attempts:
            return EventType.ACTIVE
        if old.progress != new.progress or old.progress_message != new.progress_message:
            return EventType.PROGRESS
        return None  # a cancel request, a lease change
    if old.status is status:
        return None
    if status is JobStatus.DELAYED:
        return EventType.FAILED if old.status is JobStatus.ACTIVE else EventType.DELAYED  # a failed attempt waits out its backoff
    return {
        JobStatus.WAITING: EventType.WAITING,
        JobStatus.COMPLETED: EventType.COMPLETED,
        JobStatus.FAILED: EventType.FAILED,
        JobStatus.CANCELLED: EventType.CANCELLED,
        JobStatus.STALLED: EventType.STALLED,
    }.get(status)


def current_event(job: Job, *, inline_result_bytes: int) -> dict[str, Any]:
    """The job's present state as an event: what a new subscriber gets at once."""
    kind = {
        JobStatus.WAITING: EventType.WAITING,
        JobStatus.DELAYED: EventType.FAILED if job.error and job.attempts else EventType.DELAYED,
        JobStatus.ACTIVE: EventType.ACTIVE,
        JobStatus.COMPLETED: EventType.COMPLETED,
        JobStatus.FAILED: EventType.FAILED,
        JobStatus.CANCELLED: EventType.CANCELLED,
        JobStatus.STALLED: EventType.STALLED,
    }.get(job.status)
    if kind is None:  # a status this module has no event for: the state as it is, named after it
        return {**_base(EventType.WAITING, job), "type": f"job:{job.status.value}"}
    return event_for(kind, job, inline_result_bytes=inline_result_bytes)


@dataclass(frozen=True)
class JobChange:
    """One stream record of a job item: the item before and after (None: absent)."""

    old: Job | None
    new: Job | None


# ---- connections and subscriptions (the WebSocket routes) -------------------------------------------------


class RealtimeService:
    """$connect, $disconnect and $default: who is connected and what they watch."""

    def __init__(
        self,
        connections: ConnectionStore,
        sender: ConnectionSender,
        jobs: JobReader,
        queues: QueueNames,
        access_of: QueueAccessOf,
        settings: Settings,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.connections = connections
        self.sender = sender
        self.jobs = jobs
        self.queues = queues
        self.access_of = access_of
        self.settings = settings
        self.clock = clock

    def _expires_at(self) -> int:
        return self.clock() // 1000 + self.settings.realtime_connection_ttl_seconds

    def connect(self, connection_id: str, caller: Identity) -> None:
        self.connections.put_connection(Connection(connection_id, caller), now_ms=self.clock(), expires_at=self._expires_at())

    def disconnect(self, connection_id: str) -> int:
        return self.connections.forget_connection(connection_id)

    def message(self, connection_id: str, body: str | None) -> list[dict[str, Any]]:
        """One client message: the replies, posted to the connection in order (and returned)."""
        try:
            replies = self._message(connection_id, body)
        except JobqError as err:
            if err.status_code >= 500:
                raise  # the store is down: the route fails, API Gateway tells the client
            replies = [{"type": "error", "code": err.code, "message": err.message}]
        for reply in replies:
            self.sender.post(connection_id, reply)
        return replies

    def _message(self, connection_id: str, body: str | None) -> list[dict[str, Any]]:
        request = _parse(body)
        action = request.get("action")
        if action == "ping":
            return [{"type": "pong"}]
        if action not in ("subscribe", "unsubscribe"):
            raise Invalid('action must be "subscribe", "unsubscribe" or "ping"')
        connection = self.connections.get_connection(connection_id)
        if connection is None:
            raise NotFound("this connection is not known (it expired): reconnect")
        topic, scope, target, job = self._topic(connection, request)
        flow = "flowId" in target
        if action == "unsubscribe":
            self.connections.unsubscribe(connection_id, topic)
            return [{"type": "unsubscribed", **target}]
        # Mark, subscribe, then read: a change written after the read finds the marker (so the
        # stream looks subscribers up) and the subscription.
        expires_at = self._expires_at()
        self.connections.mark_watched(scope, until=expires_at)
        self.connections.subscribe(connection, topic, expires_at=expires_at)
        reply: dict[str, Any] = {"type": "subscribed", **target}
        if job is None:
            return [reply]
        found = self.jobs.get(job[0], job[1])
        if found is not None and not may_read_job(connection.caller, found.user_id, self.access_of(found.queue)):
            # Another user's job on a queue the caller may not read: as the HTTP API, not found.
            self.connections.unsubscribe(connection_id, topic)
            raise NotFound(f"job {found.job_id} not found")
        if flow and found is not None and found.parent is not None:
            self.connections.unsubscribe(connection_id, topic)
            root = found.flow_id()
            raise Invalid(f"job {found.job_id} is part of the flow {root}: subscribe to its root, flowId {root!r}")
        reply["status"] = found.status.value if found else None
        if found is None:
            return [reply]
        inline = self.settings.realtime_inline_result_bytes
        replies = [reply, current_event(found, inline_result_bytes=inline)]
        if flow and ends_flow(found):
            replies.append(flow_completed_event(found, inline_result_bytes=inline))  # the flow ended already
        return replies

    def _topic(self, connection: Connection, request: Mapping[str, Any]) -> tuple[str, str, dict[str, str], tuple[str, str] | None]:
        """The subscription's topic, its watch scope, the reply's fields and the job (owner, id) if it is one."""
        caller = connection.caller
        job_id, queue, user_id, flow_id = request.get("jobId"), request.get("queue"), request.get("userId"), request.get("flowId")
        if [job_id, queue, flow_id].count(None) != 2:
            raise Invalid("send one of jobId (a job), flowId (every job of a flow, by its root's id) or queue (every job of a queue)")
        if queue is not None:
            if not isinstance(queue, str) or queue not in self.queues.names():
                if not (caller.sees_everything or caller.groups):
                    raise Forbidden("you may subscribe to your own jobs only")
                raise Invalid(f"unknown queue {queue!r}; queues: {', '.join(sorted(self.queues.names()))}")
            if not allows(caller, Action.READ, self.access_of(queue)):
                raise Forbidden(f"a queue subscription shows every job of '{queue}': your groups may not read them")
            return queue_topic(queue), queue_scope(queue), {"queue": queue}, None
        named = "jobId" if flow_id is None else "flowId"
        job_id = job_id if flow_id is None else flow_id
        if not isinstance(job_id, str) or not _matches(JOB_ID_PATTERN, job_id):
            raise Invalid(f"{named} is not a valid job id")
        if user_id is not None and (not isinstance(user_id, str) or not user_id or len(user_id) > 256):
            raise Invalid("userId must be a user id")
        owner = JobService.owner_for(caller, user_id)  # whose namespace, by the HTTP API's rule
        if owner is None:
            # As on the HTTP API (?userId= of someone else): the 404 of an id that does not exist.
            raise NotFound(f"job {job_id} not found")
        # Your own namespace: a job you are about to create may be subscribed to already. Another's:
        # the job's queue decides (above, once it is read; and again for every event).
        if flow_id is not None:
            # GET /flows/{id}'s rule: whoever may read the root reads the flow (and each event is checked again).
            return flow_topic(owner, job_id), FLOWS_SCOPE, {"flowId": job_id, "userId": owner}, (owner, job_id)
        return job_topic(owner, job_id), owner_scope(owner), {"jobId": job_id, "userId": owner}, (owner, job_id)


def _matches(pattern: str, value: str) -> bool:
    import re

    return re.fullmatch(pattern, value) is not None


def _parse(body: str | None) -> dict[str, Any]:
    if not body:
        raise Invalid("send a JSON object, e.g. {\"action\": \"subscribe\", \"jobId\": \"...\"}")
    if len(body) > 4096:
        raise Invalid("a message is at most 4096 characters")
    try:
        value = json.loads(body)
    except ValueError:
        raise Invalid("the message is not JSON") from None
    if not isinstance(value, dict):
        raise Invalid("send a JSON object")
    return value


_ = NAME_PATTERN  # queue names are checked against the directory, which only holds valid names


# ---- coalescing progress ----------------------------------------------------------------------------------------

Key = tuple[str, str, str]  # (connection id, job owner, job id)


@dataclass
class _Held:
    due_ms: int
    event: dict[str, Any]


class ProgressThrottle:
    """At most one progress event per key per ``interval_ms`` of the job's own timeline.

    ``offer`` says whether to send now; a held event is replaced by a later one (the latest
    wins) and is sent once its interval is over (``due``), unless an ending of the job comes
    first (``drop``). Kept per container: one shard's records are handled by one invocation
    at a time, so it sees a job's progress in order. Memory is bounded by ``max_keys``.
    """

    def __init__(self, interval_ms: int, *, max_keys: int = 100_000) -> None:
        self.interval_ms = interval_ms
        self.max_keys = max_keys
        self._last_sent: OrderedDict[Key, int] = OrderedDict()
        self._held: dict[Key, _Held] = {}
        self._lock = threading.Lock()

    def offer(self, key: Key, at_ms: int, event: dict[str, Any], *, hold: bool = True) -> bool:
        """Whether to send ``event`` now; if not, it is held (the latest wins) unless ``hold`` is False."""
        if self.interval_ms <= 0:
            return True
        with self._lock:
            last = self._last_sent.get(key)
            if last is None or at_ms >= last + self.interval_ms:
                self._held.pop(key, None)  # superseded by this one
                self._sent(key, at_ms)
                return True
            if hold:
                self._held[key] = _Held(last + self.interval_ms, event)
            return False

    def drop(self, key: Key) -> None:
        with self._lock:
            self._held.pop(key, None)
            self._last_sent.pop(key, None)

    def drop_connection(self, connection_id: str) -> None:
        with self._lock:
            for key in [k for k in self._held if k[0] == connection_id]:
                del self._held[key]

    def next_due(self) -> int | None:
        with self._lock:
            return min((h.due_ms for h in self._held.values()), default=None)

    def due(self, now: int) -> list[tuple[Key, dict[str, Any]]]:
        with self._lock:
            ready = [(k, h) for k, h in self._held.items() if h.due_ms <= now]
            for key, held in ready:
                del self._held[key]
                self._sent(key, held.due_ms)
            return [(k, h.event) for k, h in ready]

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def _sent(self, key: Key, at_ms: int) -> None:
        self._last_sent[key] = at_ms
        self._last_sent.move_to_end(key)
        while len(self._last_sent) > self.max_keys:
            self._last_sent.popitem(last=False)


class QueueBudget:
    """How many events a queue subscription may still get this second, across all the queue's jobs.

    Per (connection, queue) and wall-clock second: at most ``events_per_second`` events, of which
    at most ``progress_per_second`` progress events (so endings keep room when many jobs report).
    What is over is dropped and counted; ``notices`` turns the counts into one
    ``queue:dropped`` message per connection and queue a second. Memory is bounded by ``max_keys``.
    """

    def __init__(self, events_per_second: int, progress_per_second: int, *, max_keys: int = 100_000) -> None:
        self.events_per_second = events_per_second
        self.progress_per_second = progress_per_second
        self.max_keys = max_keys
        self._windows: OrderedDict[tuple[str, str], list[int]] = OrderedDict()  # key -> [second, events, progress]
        self._dropped: dict[tuple[str, str], list[int]] = {}  # key -> [dropped, since ms]
        self._told: dict[tuple[str, str], int] = {}  # key -> the second it was last told
        self._lock = threading.Lock()

    def admit(self, connection_id: str, queue: str, now: int, *, progress: bool) -> bool:
        key, second = (connection_id, queue), now // 1000
        with self._lock:
            window = self._windows.get(key)
            if window is None or window[0] != second:
                window = [second, 0, 0]
                self._windows[key] = window
            self._windows.move_to_end(key)
            while len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)
            if window[1] >= self.events_per_second or (progress and window[2] >= self.progress_per_second):
                dropped = self._dropped.setdefault(key, [0, now])
                dropped[0] += 1
                return False
            window[1] += 1
            window[2] += int(progress)
            return True

    def notices(self, now: int) -> list[tuple[str, dict[str, Any]]]:
        second = now // 1000
        out: list[tuple[str, dict[str, Any]]] = []
        with self._lock:
            for key, (count, since) in list(self._dropped.items()):
                if self._told.get(key) == second:
                    continue  # told this second already: the count carries over to the next notice
                del self._dropped[key]
                self._told[key] = second
                out.append((key[0], {"type": "queue:dropped", "queue": key[1], "dropped": count, "since": iso(since)}))
            while len(self._told) > self.max_keys:
                self._told.pop(next(iter(self._told)))
        return out

    def forget_connection(self, connection_id: str) -> None:
        with self._lock:
            for table in (self._windows, self._dropped, self._told):
                for key in [k for k in table if k[0] == connection_id]:
                    del table[key]


# ---- the fan-out (the stream consumer) ----------------------------------------------------------------------------


@dataclass
class FanoutOutcome:
    records: int = 0
    events: int = 0
    lookups: int = 0  # subscriber Queries made
    cached_lookups: int = 0
    unwatched: int = 0  # topics skipped without a Query: no watch marker in force for their scope
    marker_reads: int = 0  # BatchGetItems of watch markers (one a batch, when any scope is not known watched)
    sent: int = 0
    held: int = 0  # progress held back by coalescing (sent later, or superseded)
    gone: int = 0
    failed: int = 0
    denied: int = 0
    capped: int = 0  # events over a queue subscription's budget (QueueBudget), dropped
    webhooks: int = 0  # webhook deliveries queued (shared/webhooks.py)
    by_type: dict[str, int] = field(default_factory=dict)

    def as_log(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v}


class _SubscriberCache:
    """Subscriber lists of progress records, reused for a moment (a busy job reports often)."""

    def __init__(self, ttl_ms: int, max_entries: int = 10_000) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[int, list[Subscriber]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, topic: str, now: int) -> list[Subscriber] | None:
        with self._lock:
            entry = self._entries.get(topic)
            if entry is None or now - entry[0] > self.ttl_ms:
                return None
            return entry[1]

    def put(self, topic: str, subscribers: list[Subscriber], now: int) -> None:
        with self._lock:
            self._entries[topic] = (now, subscribers)
            self._entries.move_to_end(topic)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget_connection(self, connection_id: str) -> None:
        with self._lock:
            for topic, (at, subs) in list(self._entries.items()):
                kept = [s for s in subs if s.connection_id != connection_id]
                if len(kept) != len(subs):
                    self._entries[topic] = (at, kept)


class _WatchedScopes:
    """Scopes known watched, each until its marker's ``until`` (a marker only ever moves later, so this never hides one)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._until: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def until(self, scope: str) -> int:
        with self._lock:
            return self._until.get(scope, 0)

    def put(self, scope: str, until: int) -> None:
        with self._lock:
            self._until[scope] = until
            self._until.move_to_end(scope)
            while len(self._until) > self.max_entries:
                self._until.popitem(last=False)


class EventFanout:
    """Job changes in (one stream batch, in order), PostToConnection to their subscribers out."""

    def __init__(
        self,
        connections: ConnectionStore,
        sender: ConnectionSender,
        access_of: QueueAccessOf,
        settings: Settings,
        *,
        throttle: ProgressThrottle | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.connections = connections
        self.sender = sender
        self.access_of = access_of
        self.settings = settings
        self.throttle = throttle or ProgressThrottle(settings.realtime_progress_interval_ms)
        self.budget = QueueBudget(settings.realtime_queue_events_per_second, settings.realtime_queue_progress_per_second)
        self.cache = _SubscriberCache(settings.realtime_subscriber_cache_ms)
        self.watched = _WatchedScopes()
        self._flow_cache: tuple[int, dict[str, list[Subscriber]]] | None = None
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=settings.realtime_send_workers, thread_name_prefix="push")

    def publish(self, changes: Iterable[JobChange]) -> FanoutOutcome:
        outcome = FanoutOutcome()
        outbox: list[tuple[str, dict[str, Any]]] = []
        events: list[tuple[EventType, Job]] = []
        for change in changes:
            outcome.records += 1
            kind = change_kind(change.old, change.new)
            if kind is not None and change.new is not None:
                events.append((kind, change.new))
        in_flows = any(job.flow_id() is not None for _, job in events)
        scopes = {scope for _, job in events for scope in (owner_scope(job.user_id), queue_scope(job.queue))}
        watched = self._watched_scopes(scopes | ({FLOWS_SCOPE} if in_flows else set()), outcome)
        batch_subscribers: dict[str, list[Subscriber]] = {}  # one Query per topic a batch: it runs after every record was written
        flows = self._flow_subscribers(events, outcome) if FLOWS_SCOPE in watched else {}
        for kind, job in events:
            outcome.events += 1
            outcome.by_type[kind.value] = outcome.by_type.get(kind.value, 0) + 1
            event = event_for(kind, job, inline_result_bytes=self.settings.realtime_inline_result_bytes)
            progress = kind is EventType.PROGRESS
            subscribers = self._subscribers(job, watched, batch_subscribers, progress=progress, outcome=outcome, flows=flows)
            access = self.access_of(job.queue) if subscribers or flows else None  # the queue's policy only when someone may get it
            for subscriber, via_queue in subscribers:
                if not may_read_job(subscriber.caller, job.user_id, access):
                    outcome.denied += 1  # a subscription that no longer holds (a permission taken away; defence in depth)
                    continue
                key = (subscriber.connection_id, job.user_id, job.job_id)
                if progress:
                    # A job's own watcher gets the latest progress once due; a queue watcher, the next one.
                    if not self.throttle.offer(key, _at_ms(job, self.clock), event, hold=not via_queue):
                        outcome.held += 1
                        continue
                else:
                    self.throttle.drop(key)  # an ending (or a new attempt) supersedes held progress
                if via_queue and not self.budget.admit(subscriber.connection_id, job.queue, self.clock(), progress=progress):
                    outcome.capped += 1
                    continue
                outbox.append((subscriber.connection_id, event))
            if flows and ends_flow(job):
                ended = flow_completed_event(job, inline_result_bytes=self.settings.realtime_inline_result_bytes)
                for subscriber in flows.get(flow_topic(job.user_id, job.job_id), ()):
                    if may_read_job(subscriber.caller, job.user_id, access):
                        outbox.append((subscriber.connection_id, ended))
                        outcome.by_type[FLOW_COMPLETED] = outcome.by_type.get(FLOW_COMPLETED, 0) + 1
        outbox += self.budget.notices(self.clock())
        self._send(outbox, outcome)
        self._flush_held(outcome)
        return outcome

    def _watched_scopes(self, scopes: set[str], outcome: FanoutOutcome) -> set[str]:
        """The scopes among ``scopes`` that may have subscribers now.

        A scope known watched (a marker read earlier, still in force) needs no read; the others are
        read in one strongly consistent BatchGetItem, so a subscription made before a record was
        written is found: its marker was written before it.
        """
        now_s = self.clock() // 1000
        watched = {scope for scope in scopes if self.watched.until(scope) > now_s}
        unknown = scopes - watched
        if unknown:
            outcome.marker_reads += 1
            for scope, until in self.connections.watched_until(unknown).items():
                if until > now_s:
                    watched.add(scope)
                    self.watched.put(scope, until)
        return watched

    def _flow_subscribers(self, events: list[tuple[EventType, Job]], outcome: FanoutOutcome) -> dict[str, list[Subscriber]]:
        """Every flow subscription, by topic: one lookup per batch, and only for a batch with a job of a flow.

        A batch of jobs outside flows pays nothing. One with a status change of a flow's job reads them
        fresh (strongly consistent: an ending is never missed); one with only progress reuses the last
        answer for ``realtime_subscriber_cache_ms``, as a job's own subscribers are.
        """
        in_flows = [kind for kind, job in events if job.flow_id() is not None]
        if not in_flows:
            return {}
        now = self.clock()
        cached = self._flow_cache
        if cached is not None and all(k is EventType.PROGRESS for k in in_flows) and now - cached[0] <= self.settings.realtime_subscriber_cache_ms:
            outcome.cached_lookups += 1
            return cached[1]
        subscribers = self.connections.flow_subscribers()
        outcome.lookups += 1
        self._flow_cache = (now, subscribers)
        return subscribers

    def _subscribers(
        self,
        job: Job,
        watched: set[str],
        batch: dict[str, list[Subscriber]],
        *,
        progress: bool,
        outcome: FanoutOutcome,
        flows: Mapping[str, list[Subscriber]] | None = None,
    ) -> list[tuple[Subscriber, bool]]:
        """The job's subscribers (its own, its queue's, its flow's), each once, and whether only through the job's queue."""
        found: dict[str, tuple[Subscriber, bool]] = {}
        root = job.flow_id() if flows else None
        for subscriber in flows.get(flow_topic(job.user_id, root), ()) if flows and root else ():
            found.setdefault(subscriber.connection_id, (subscriber, False))
        for topic, scope, via_queue in (
            (job_topic(job.user_id, job.job_id), owner_scope(job.user_id), False),
            (queue_topic(job.queue), queue_scope(job.queue), True),
        ):
            if scope not in watched:
                outcome.unwatched += 1
                continue
            now = self.clock()
            subscribers = batch.get(topic)
            if subscribers is None and progress:
                subscribers = self.cache.get(topic, now)
            if subscribers is None:
                subscribers = self.connections.subscribers(topic)
                outcome.lookups += 1
                self.cache.put(topic, subscribers, now)
                batch[topic] = subscribers
            else:
                outcome.cached_lookups += 1
            for subscriber in subscribers:
                # A connection subscribed to both the job and its queue gets the event once, as the job's.
                found.setdefault(subscriber.connection_id, (subscriber, via_queue))
        return list(found.values())

    def _send(self, outbox: list[tuple[str, dict[str, Any]]], outcome: FanoutOutcome) -> None:
        if not outbox:
            return
        per_connection: dict[str, list[dict[str, Any]]] = {}
        for connection_id, event in outbox:
            per_connection.setdefault(connection_id, []).append(event)

        def deliver(connection_id: str, events: list[dict[str, Any]]) -> tuple[int, SendResult | None]:
            sent = 0
            for event in events:  # in order, one connection at a time
                result = self.sender.post(connection_id, event)
                if result is not SendResult.SENT:
                    return sent, result
                sent += 1
            return sent, None

        futures = {cid: self._pool.submit(deliver, cid, events) for cid, events in per_connection.items()}
        for connection_id, future in futures.items():
            sent, problem = future.result()
            outcome.sent += sent
            if problem is SendResult.GONE:
                outcome.gone += 1
                self._forget(connection_id)
            elif problem is SendResult.FAILED:
                outcome.failed += 1

    def _forget(self, connection_id: str) -> None:
        self.throttle.drop_connection(connection_id)
        self.budget.forget_connection(connection_id)
        self.cache.forget_connection(connection_id)
        self._flow_cache = None
        try:
            self.connections.forget_connection(connection_id)
        except JobqError as err:  # TTL removes it anyway
            logger.warning("could not forget a gone connection", extra={"connection_id": connection_id, "error": str(err)})

    def _flush_held(self, outcome: FanoutOutcome) -> None:
        """Send held progress whose interval is over (the latest of each job and connection).

        No waiting: a held event goes out with the shard's next batch once due, unless the
        job's next change (a later progress, an ending) superseded it. Sleeping here for it
        would hold up every other job's events on the shard.
        """
        ready = self.throttle.due(self.clock())
        self._send([(key[0], event) for key, event in ready], outcome)

    def flush_all_now(self) -> None:
        """Tests: nothing held."""
        self._send([(k[0], e) for k, e in self.throttle.due(2**62)], FanoutOutcome())


def is_finished(job: Job | None) -> bool:
    return job is not None and job.status in FINISHED
