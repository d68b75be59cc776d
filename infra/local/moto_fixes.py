"""Fixes to moto's DynamoDB (5.x), its streams and SQS that the local stack needs; applied once per process.

moto serves the local stack's requests from many threads (consumers, stream pollers, the
API), and its DynamoDB backend takes no lock:

1. **TransactWriteItems is neither cheap nor isolated.** Before a transaction, moto
   deep-copies every table it names, items and stream records included, to put the copy
   back if the transaction fails: 0.7 s per transaction at 1,000 jobs, growing with the
   table, and a failed transaction undoes the writes other threads made meanwhile and
   rewinds the stream (records are lost, numbers reused). DynamoDB's transactions are
   isolated. Here a transaction runs under the backend's write lock, snapshots only the
   items it names, and on failure restores those items and drops the stream records it
   added. moto's own table copy is skipped.
2. **Stream records are numbered without a lock**, so two concurrent writes can get one
   SequenceNumber. Item writes (PutItem, UpdateItem, DeleteItem, and BatchWriteItem
   through them) take the same lock.
3. **Shard iterators never expire**: every GetRecords answer adds one (about 1 KB) that moto
   keeps for good, so a stream poller grows the process by ~14 MB an idle hour. As in
   DynamoDB Streams, an iterator now expires 15 minutes after it was handed out.

4. **SQS fair queues** (2025-07): on a standard queue, messages with a ``MessageGroupId`` (jobq
   sends the job's owner) are handed out fairly: the groups with the fewest messages in
   flight come first, one message from each in turn, each group's own in send order. moto
   hands out a standard queue in send order, so one tenant's burst would delay everyone
   behind it locally, which SQS no longer does.

5. **Queries and scans iterate the table's dicts** while other threads' writes add to them
   ("dictionary changed size during iteration", a 500 the SDK retries): they iterate a snapshot
   of each dict (``list()`` of a dict is taken whole under the GIL), without a lock, so reads
   still run beside writes.

6. **SQS is quadratic in a queue's depth.** Every SendMessage reads all of the queue's attributes
   (to find ContentBasedDeduplication), three of which count the messages one by one, and each
   message's visibility is read through a datetime round trip (~20 us): at 3,000 messages one
   send took ~0.1 s, so a 5,000-job backlog took half an hour to build. A send no longer counts
   (it uses none of the counts), visibility compares plain epoch milliseconds (the same clock
   moto stamps them with), and the visible count does not order the messages fairly first.

``apply()`` is idempotent and only patches what it finds; if moto's
internals change shape it logs and leaves moto as it is.
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import threading
import time
from typing import Any

log = logging.getLogger("jobq.local.moto")

__all__ = ["apply"]

_lock = threading.RLock()
_applied = False
ITERATOR_LIFETIME_SECONDS = 15 * 60
SWEEP_EVERY_SECONDS = 60
_iterators_lock = threading.Lock()
_iterators_born: dict[str, float] = {}  # iterator ARN -> when it was handed out
_last_sweep = [0.0]


class _NoTableCopy:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend: tables are not copied."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, self._table_type):
            return value  # the snapshot below replaces moto's whole-table copy
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _locked(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return method(*args, **kwargs)

    return wrapper


def _key_of(table: Any, op_name: str, op: dict[str, Any], dynamo_type: type) -> tuple[Any, Any] | None:
    source = op.get("Item") if op_name == "Put" else op.get("Key")
    if not isinstance(source, dict) or table.hash_key_attr not in source:
        return None
    hash_key = dynamo_type(source[table.hash_key_attr])
    range_key = dynamo_type(source[table.range_key_attr]) if table.range_key_attr and table.range_key_attr in source else None
    return hash_key, range_key


def _transaction(original: Any, dynamo_type: type) -> Any:
    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with _lock:
            snapshots: list[tuple[Any, Any, Any, Any]] = []
            streams: dict[int, tuple[Any, int]] = {}
            for entry in transact_items:
                op_name, op = next(iter(entry.items()))
                table = self.tables.get(op.get("TableName")) if isinstance(op, dict) else None
                if table is None:
                    continue
                key = _key_of(table, op_name, op, dynamo_type)
                if key is not None:
                    hash_key, range_key = key
                    before = table.get_item(hash_key, range_key) if (range_key is not None or not table.has_range_key) else None
                    snapshots.append((table, hash_key, range_key, copy.deepcopy(before)))
                if table.stream_shard is not None and id(table) not in streams:
                    streams[id(table)] = (table.stream_shard, len(table.stream_shard.items))
            try:
                original(self, transact_items)
            except BaseException:
                for table, hash_key, range_key, before in reversed(snapshots):
                    _restore(table, hash_key, range_key, before)
                for shard, length in streams.values():
                    del shard.items[length:]
                raise

    return transact_write_items


def _restore(table: Any, hash_key: Any, range_key: Any, before: Any) -> None:
    if range_key is not None:
        if before is None:
            table.items.get(hash_key, {}).pop(range_key, None)
        else:
            table.items[hash_key][range_key] = before
    elif before is None:
        table.items.pop(hash_key, None)
    else:
        table.items[hash_key] = before


def _remember_iterator(backend: Any, *arns: str | None) -> None:
    now = time.monotonic()
    with _iterators_lock:
        for arn in arns:
            if arn:
                _iterators_born.setdefault(arn, now)
        if now - _last_sweep[0] < SWEEP_EVERY_SECONDS:
            return
        _last_sweep[0] = now
        for arn, born in list(_iterators_born.items()):
            if now - born > ITERATOR_LIFETIME_SECONDS:
                del _iterators_born[arn]
                backend.shard_iterators.pop(arn, None)


def _expiring_iterators(get_shard_iterator: Any, get_records: Any) -> tuple[Any, Any]:
    @functools.wraps(get_shard_iterator)
    def new_iterator(self: Any, *args: Any, **kwargs: Any) -> Any:
        iterator = get_shard_iterator(self, *args, **kwargs)
        _remember_iterator(self, iterator.arn)
        return iterator

    @functools.wraps(get_records)
    def records(self: Any, iterator_arn: str, *args: Any, **kwargs: Any) -> Any:
        out = get_records(self, iterator_arn, *args, **kwargs)
        _remember_iterator(self, iterator_arn, out.get("NextShardIterator"))
        return out

    return new_iterator, records


def _fair_standard_queues() -> None:
    from moto.sqs.models import Queue

    visible_in_order = Queue.messages.fget  # type: ignore[attr-defined]

    def fair(queue: Any) -> list[Any]:
        visible = visible_in_order(queue)
        if queue.fifo_queue or not any(m.group_id for m in visible[:1000]):
            return visible  # type: ignore[no-any-return]
        in_flight: dict[Any, int] = {}
        for message in list(queue.pending_messages):
            if not message.visible:
                in_flight[message.group_id] = in_flight.get(message.group_id, 0) + 1
        by_group: dict[Any, list[Any]] = {}
        for message in visible:
            by_group.setdefault(message.group_id, []).append(message)
        lanes = [by_group[g] for g in sorted(by_group, key=lambda g: in_flight.get(g, 0))]  # stable: first seen first among equals
        return [m for turn in itertools.zip_longest(*lanes) for m in turn if m is not None]

    Queue.messages = property(fair)  # type: ignore[method-assign,assignment]
    # A count needs no order: moto's own list of the visible messages, without the fair interleaving.
    Queue.approximate_number_of_messages = property(lambda queue: len(visible_in_order(queue)))  # type: ignore[method-assign,assignment]


_COUNTS = ("approximate_number_of_messages", "approximate_number_of_messages_delayed", "approximate_number_of_messages_not_visible")


def _linear_sqs() -> None:
    from moto.sqs.models import Message, Queue, SQSBackend

    # moto reads the time as datetime.utcnow() - epoch; time.time() is that same instant, ~20x cheaper.
    Message.visible = property(lambda message: time.time() * 1000.0 > message.visible_at)  # type: ignore[method-assign,assignment]
    Message.delayed = property(lambda message: time.time() * 1000.0 < message.delayed_until)  # type: ignore[method-assign,assignment]

    sending = threading.local()  # moto's server answers each request on a thread of its own
    send_message = SQSBackend.send_message

    @functools.wraps(send_message)
    def send_without_counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        sending.active = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            sending.active = False

    def not_while_sending(count: Any) -> property:
        return property(lambda queue: 0 if getattr(sending, "active", False) else count(queue))

    for name in _COUNTS:
        setattr(Queue, name, not_while_sending(getattr(Queue, name).fget))
    SQSBackend.send_message = send_without_counting  # type: ignore[method-assign]


def _snapshot_all_items(self: Any) -> list[Any]:
    """moto's ``Table.all_items`` over snapshots of its dicts (a write may add to them meanwhile)."""
    items: list[Any] = []
    for hash_set in list(self.items.values()):
        if self.range_key_attr:
            items.extend(list(hash_set.values()))
        else:
            items.append(hash_set)
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def _snapshot_has_idx_items(self: Any, index_name: str) -> list[Any]:
    """moto's ``Table.has_idx_items`` over snapshots of its dicts."""
    wanted = {i["AttributeName"] for i in self.get_index(index_name).schema}
    items: list[Any] = []
    for hash_set in list(self.items.values()):
        for item in list(hash_set.values()) if self.range_key_attr else [hash_set]:
            if wanted.issubset(set(item.attrs)):
                items.append(item)
    return items


def apply() -> None:
    global _applied
    with _lock:
        if _applied:
            return
        try:
            from moto.dynamodb import models as ddb_models
            from moto.dynamodb.models.dynamo_type import DynamoType
            from moto.dynamodb.models.table import Table

            backend = ddb_models.DynamoDBBackend
            for name in ("put_item", "update_item", "delete_item"):
                setattr(backend, name, _locked(getattr(backend, name)))
            Table.all_items = _snapshot_all_items  # type: ignore[method-assign]
            Table.has_idx_items = _snapshot_has_idx_items  # type: ignore[method-assign]
            backend.transact_write_items = _transaction(backend.transact_write_items, DynamoType)  # type: ignore[method-assign]
            ddb_models.copy = _NoTableCopy(Table)  # type: ignore[attr-defined]
            from moto.dynamodbstreams.models import DynamoDBStreamsBackend as streams

            streams.get_shard_iterator, streams.get_records = _expiring_iterators(streams.get_shard_iterator, streams.get_records)  # type: ignore[method-assign]
            _fair_standard_queues()
            _linear_sqs()
        except (ImportError, AttributeError) as exc:  # a moto whose internals moved: leave it as it is
            log.warning("moto's DynamoDB was not patched (%s); transactions stay slow and unisolated", exc)
            return
        _applied = True
