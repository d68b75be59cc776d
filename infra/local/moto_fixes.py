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

7. **A Query reads the whole table.** For a query on an index, moto tests every item of the
   table (and sorts them all first); on the table itself, every item too: ~90 ms a query at
   10,000 items, ~450 ms at 40,000, so a 10,000-job soak spent its drain listing. DynamoDB reads
   one partition. Here a query reads only its partition: the table's own from its dict of
   partitions, an index's from a map of index key -> items, built on the first query of that
   index and kept current by every write (put, update, delete, a transaction and its undo mark
   the keys they touch; the next query re-files those items under the write lock). moto's own
   loop still filters the partition, so a stale map could only miss an item, never add one;
   a test checks the map against a full scan under random writes.

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
from dataclasses import dataclass, field
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
    _touch(table, hash_key, range_key)
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
    """moto's ``Table.all_items`` over snapshots of its dicts (a write may add to them meanwhile).

    Inside a query (fix 7) it is that query's partition only.
    """
    partition = getattr(_query_scope, "items", None)
    if partition is not None and partition[0] is self:
        return partition[1]  # type: ignore[no-any-return]
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


_PARTITIONS = "_jobq_partitions"
_query_scope = threading.local()  # (table, its items in the partition a query on this thread reads)


@dataclass
class _IndexPartitions:
    """One table's items filed by each queried index's hash key; ``dirty``: keys written since."""

    hash_attrs: dict[str, list[str]] = field(default_factory=dict)  # index -> its HASH attributes
    buckets: dict[str, dict[tuple[Any, ...], dict[Any, Any]]] = field(default_factory=dict)
    filed: dict[Any, dict[str, tuple[Any, ...]]] = field(default_factory=dict)  # item key -> index -> bucket
    dirty: set[Any] = field(default_factory=set)

    def file(self, key: Any, item: Any, index: str) -> None:
        attrs = self.hash_attrs[index]
        values = tuple(item.attrs.get(a) for a in attrs)
        if all(v is not None for v in values):
            self.buckets[index].setdefault(values, {})[key] = item
            self.filed.setdefault(key, {})[index] = values

    def refile(self, table: Any) -> None:
        for key in self.dirty:
            for index, values in self.filed.pop(key, {}).items():
                bucket = self.buckets[index].get(values)
                if bucket is not None:
                    bucket.pop(key, None)
                    if not bucket:
                        del self.buckets[index][values]
            item = _current(table, *key)
            if item is not None:
                for index in self.hash_attrs:
                    self.file(key, item, index)
        self.dirty.clear()


def _current(table: Any, hash_key: Any, range_key: Any) -> Any:
    if table.range_key_attr:
        return table.items.get(hash_key, {}).get(range_key)
    return table.items.get(hash_key)


def _touch(table: Any, hash_key: Any, range_key: Any) -> None:
    partitions = table.__dict__.get(_PARTITIONS)
    if partitions is not None:
        partitions.dirty.add((hash_key, range_key if table.range_key_attr else None))


def _index_partition(table: Any, index_name: str, hash_key_conditions: Any) -> list[Any] | None:
    """The items of the index partition the query's hash key conditions name (None: let moto read all)."""
    try:
        index = table.get_index(index_name)
    except KeyError:
        return None  # moto answers an unknown index with its own error
    attrs = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
    conditions = dict(hash_key_conditions or [])
    if not attrs or any(a not in conditions for a in attrs):
        return None
    with _lock:
        partitions = table.__dict__.get(_PARTITIONS)
        if partitions is None:
            partitions = table.__dict__[_PARTITIONS] = _IndexPartitions()
        partitions.refile(table)
        if partitions.hash_attrs.get(index_name) != attrs:
            partitions.hash_attrs[index_name] = attrs
            partitions.buckets[index_name] = {}
            for item in _snapshot_all_items(table):
                partitions.file((item.hash_key, item.range_key if table.range_key_attr else None), item, index_name)
        return list(partitions.buckets[index_name].get(tuple(conditions[a] for a in attrs), {}).values())


def _partition_queries(table_type: Any, backend: Any, dynamo_type: type) -> None:
    import inspect

    query = table_type.query
    signature = inspect.signature(query)

    @functools.wraps(query)
    def partition_query(self: Any, *args: Any, **kwargs: Any) -> Any:
        call = signature.bind(self, *args, **kwargs).arguments
        if call.get("index_name"):
            partition = _index_partition(self, call["index_name"], call.get("hash_key_conditions"))
        else:
            hash_key = call.get("hash_key")
            found = self.items.get(hash_key) if hash_key is not None else None
            partition = (list(found.values()) if self.range_key_attr else [found]) if found is not None else []
        if partition is None:
            return query(self, *args, **kwargs)
        _query_scope.items = (self, partition)
        try:
            return query(self, *args, **kwargs)
        finally:
            _query_scope.items = None

    table_put, table_delete, update = table_type.put_item, table_type.delete_item, backend.update_item

    @functools.wraps(table_put)
    def put_item(self: Any, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return table_put(self, item_attrs, *args, **kwargs)
        finally:
            if self.hash_key_attr in item_attrs:
                range_attr = self.range_key_attr
                range_key = dynamo_type(item_attrs[range_attr]) if range_attr and range_attr in item_attrs else None
                _touch(self, dynamo_type(item_attrs[self.hash_key_attr]), range_key)

    @functools.wraps(table_delete)
    def delete_item(self: Any, hash_key: Any, range_key: Any) -> Any:
        try:
            return table_delete(self, hash_key, range_key)
        finally:
            _touch(self, hash_key, range_key)

    @functools.wraps(update)
    def update_item(self: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return update(self, table_name, key, *args, **kwargs)
        finally:
            table = self.tables.get(table_name)
            if table is not None and table.hash_key_attr in key:
                range_attr = table.range_key_attr
                range_key = dynamo_type(key[range_attr]) if range_attr and range_attr in key else None
                _touch(table, dynamo_type(key[table.hash_key_attr]), range_key)

    table_type.query = partition_query
    table_type.put_item, table_type.delete_item, backend.update_item = put_item, delete_item, update_item


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
            _partition_queries(Table, backend, DynamoType)  # first: its write hooks then run under the lock below
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
