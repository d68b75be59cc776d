"""An opt-in meter of what the local stack would be billed for on AWS (``--meter FILE``).

Off by default: nothing here is imported into moto or wrapped unless ``install()`` is called
(``LocalStack(meter=...)``, ``python -m infra.local --meter FILE`` or ``JOBQ_LOCAL_METER=FILE``).
When on, it counts, from the moto server's side:

* **requests** per origin, service and operation, at the server's WSGI dispatch (every call
  any client makes reaches moto there). The origin is the caller: the local stack's
  emulators tag their clients with an app id (``client_config()``): ``lambda-sqs-poller``
  (the event source mappings' ReceiveMessage / DeleteMessageBatch: billed on AWS too),
  ``lambda-stream-poller`` (DynamoDB Streams reads by Lambda: free on AWS),
  ``scheduler-emulation`` (the emulator reading schedules: no AWS counterpart); untagged
  calls are ``jobq`` (the handlers and the API). SQS requests also count 64 KB chunks of the
  larger of request and response, as SQS bills them.
* **DynamoDB write units** per table and per GSI, from the writes moto's backend applies
  (PutItem, UpdateItem, DeleteItem, and BatchWriteItem / TransactWriteItems through them),
  as DynamoDB bills: the table by the larger of the item before and after, in 1 KB units
  rounded up; every GSI whose keys or projected attributes the write changes, by the index
  entry's size (a key change there is a delete plus a put; an entry that appears or goes
  is one write); a failed condition still costs the item's size (at least 1) on the table;
  transactional writes cost twice on the table. Index maintenance after a transaction is
  billed once here (GSIs are updated asynchronously, outside the transaction): an
  assumption, which no job item's transaction exercises today.
* **DynamoDB read units** from the requests and responses at dispatch: GetItem and
  BatchGetItem per item in 4 KB units (half for eventually consistent reads), Query and
  Scan by the summed size of the items returned (a COUNT query, whose items are not
  returned, counts one unit), TransactGetItems twice.
* **Lambda invocations** (``count_invocation``), and **HTTP API requests** (``count_api_request``):
  the stack calls these where it invokes a handler or serves an API request.

Key schemas and projections come from the table definitions the stack was provisioned
with (template.yaml's ``AWS::DynamoDB::Table`` properties, ``register_table``); a table not
registered is read from moto's own description of it.

The arithmetic (``item_size``, ``write_units``, ``TableSpec.write_cost``) is plain Python on
DynamoDB JSON, tested in tests/unit/test_meter.py.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import io
import json
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("jobq.local.meter")

__all__ = [
    "IndexSpec",
    "Meter",
    "TableSpec",
    "client_config",
    "install",
    "item_size",
    "uninstall",
    "read_units",
    "value_size",
    "write_units",
]

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
SQS_CHUNK_BYTES = 64 * 1024
APP_ID_PREFIX = "jobq-local-"
ORIGIN_JOBQ = "jobq"
# Emulator clients identify themselves with botocore's app id ("app/<id>" in the User-Agent).
ORIGINS = {"esm": "lambda-sqs-poller", "streams": "lambda-stream-poller", "scheduler": "scheduler-emulation"}
_APP_ID = re.compile(r"app/" + re.escape(APP_ID_PREFIX) + r"([A-Za-z0-9_-]+)")


def client_config(origin: str) -> dict[str, str]:
    """botocore ``Config`` arguments that tag an emulator's client, so the meter knows its calls."""
    return {"user_agent_appid": APP_ID_PREFIX + origin}


# ---- the arithmetic: sizes and units as DynamoDB bills them -------------------------------------


def _number_size(text: str) -> int:
    digits = text.strip().lstrip("+-").lower().split("e")[0].replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def _binary_size(value: Any) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError, TypeError):
        return len(str(value).encode())


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one DynamoDB-JSON value (``{"S": "x"}``), without its attribute name."""
    (kind, inner), = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return _number_size(str(inner))
    if kind == "B":
        return _binary_size(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(v).encode()) for v in inner)
    if kind == "NS":
        return sum(_number_size(str(v)) for v in inner)
    if kind == "BS":
        return sum(_binary_size(v) for v in inner)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in inner.items())
    raise ValueError(f"not a DynamoDB attribute value: {kind}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Bytes of an item: every attribute's name and value (DynamoDB's "item sizes and formats")."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    """Write units of one write of ``size`` bytes: 1 KB each, rounded up, at least 1."""
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int, *, consistent: bool) -> float:
    """Read units of reading ``size`` bytes: 4 KB each, rounded up, at least 1; half if eventually consistent."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


@dataclass(frozen=True)
class IndexSpec:
    """A GSI as CreateTable / CloudFormation define it: its keys and what it projects."""

    name: str
    hash_key: str
    range_key: str | None
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    non_key_attributes: frozenset[str] = frozenset()

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> IndexSpec:
        keys = {k["KeyType"]: k["AttributeName"] for k in definition["KeySchema"]}
        projection = definition.get("Projection") or {}
        return cls(
            name=str(definition["IndexName"]),
            hash_key=keys["HASH"],
            range_key=keys.get("RANGE"),
            projection=str(projection.get("ProjectionType", "ALL")),
            non_key_attributes=frozenset(projection.get("NonKeyAttributes") or ()),
        )

    def key_of(self, item: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
        """The item's key in this index, or None if the item is not in it (sparse index)."""
        if not item or self.hash_key not in item or (self.range_key and self.range_key not in item):
            return None
        return (json.dumps(item[self.hash_key], sort_keys=True), json.dumps(item.get(self.range_key or ""), sort_keys=True))

    def entry(self, item: Mapping[str, Any] | None, table_keys: Iterable[str]) -> dict[str, Any] | None:
        """What the index stores for ``item``: its keys, the table's keys and the projected attributes."""
        if self.key_of(item) is None:
            return None
        assert item is not None
        if self.projection == "ALL":
            return dict(item)
        wanted = {self.hash_key, *(k for k in (self.range_key,) if k), *table_keys}
        if self.projection == "INCLUDE":
            wanted |= self.non_key_attributes
        return {k: v for k, v in item.items() if k in wanted}


@dataclass(frozen=True)
class TableSpec:
    name: str  # the template's logical id where known, else the physical name
    hash_key: str
    range_key: str | None
    indexes: tuple[IndexSpec, ...] = ()

    @classmethod
    def from_definition(cls, name: str, definition: Mapping[str, Any]) -> TableSpec:
        """From a table's properties as template.yaml (or DescribeTable) spells them."""
        keys = {k["KeyType"]: k["AttributeName"] for k in definition["KeySchema"]}
        indexes = tuple(IndexSpec.from_definition(d) for d in definition.get("GlobalSecondaryIndexes") or ())
        return cls(name=name, hash_key=keys["HASH"], range_key=keys.get("RANGE"), indexes=indexes)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.hash_key,) + ((self.range_key,) if self.range_key else ())

    def write_cost(
        self, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, *, transactional: bool = False
    ) -> dict[str, int]:
        """Write units of one applied write, keyed ``"table"`` and by index name (only those it touches).

        ``before`` / ``after`` are the item before and after (None: absent). Put and update cost the
        larger of the two; a delete the item deleted (1 if there was none).
        """
        cost = {"table": write_units(max(item_size(before), item_size(after))) * (2 if transactional else 1)}
        for index in self.indexes:
            old, new = index.entry(before, self.keys), index.entry(after, self.keys)
            if old is None and new is None:
                continue
            if old is None or new is None:
                units = write_units(item_size(old if new is None else new))
            elif index.key_of(before) != index.key_of(after):
                units = write_units(item_size(old)) + write_units(item_size(new))  # delete + put
            elif old != new:
                units = write_units(max(item_size(old), item_size(new)))
            else:
                continue  # nothing this index holds changed
            cost[index.name] = units
        return cost


# ---- the counters --------------------------------------------------------------------------------


@dataclass
class _Current:
    """What the server thread is handling (set at dispatch, read by the backend wrappers)."""

    origin: str = ORIGIN_JOBQ
    operation: str = "internal"
    transaction: list[tuple[TableSpec, dict[str, Any] | None, dict[str, Any] | None]] | None = None


@dataclass
class Meter:
    """Counters, a snapshot of them as JSON, and where to write it when the stack stops."""

    path: Path | None = None
    tables: dict[str, TableSpec] = field(default_factory=dict)  # physical name -> spec
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.started = time.time()
            self.requests: Counter[tuple[str, str, str]] = Counter()  # (origin, service, operation)
            self.sqs_chunks: Counter[tuple[str, str]] = Counter()  # (origin, operation)
            self.write_units: Counter[tuple[str, str, str]] = Counter()  # (table, "table" | index, operation)
            self.read_units: Counter[tuple[str, str, str]] = Counter()  # (table, "table" | index, operation)
            self.failed_conditions: Counter[tuple[str, str]] = Counter()  # (table, operation)
            self.invocations: Counter[str] = Counter()  # Lambda handler
            self.largest_item: Counter[str] = Counter()  # table -> the largest item written, in bytes
            self.api_requests = 0

    # -- what the stack reports --

    def register_table(self, physical: str, logical: str, definition: Mapping[str, Any]) -> None:
        self.tables[physical] = TableSpec.from_definition(logical, definition)

    def count_invocation(self, function: str) -> None:
        with self._lock:
            self.invocations[function] += 1

    def count_api_request(self) -> None:
        with self._lock:
            self.api_requests += 1

    def wrap_handler(self, name: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handler)
        def counted(event: Any, context: Any) -> Any:
            self.count_invocation(name)
            return handler(event, context)

        return counted

    # -- what the moto hooks report --

    @property
    def current(self) -> _Current:
        current = getattr(self._local, "current", None)
        if current is None:
            current = self._local.current = _Current()
        return current

    def count_request(self, origin: str, service: str, operation: str, chunks: int = 1) -> None:
        with self._lock:
            self.requests[(origin, service, operation)] += 1
            if service == "sqs":
                self.sqs_chunks[(origin, operation)] += chunks

    def count_write(self, table: TableSpec, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        current = self.current
        if current.transaction is not None:
            current.transaction.append((table, before, after))  # counted when the transaction commits
            return
        self._add_write(table, before, after, current.operation, transactional=False)

    def _add_write(self, table: TableSpec, before: Any, after: Any, operation: str, *, transactional: bool) -> None:
        cost = table.write_cost(before, after, transactional=transactional)
        size = item_size(after)
        with self._lock:
            self.largest_item[table.name] = max(self.largest_item[table.name], size)
            for target, units in cost.items():
                self.write_units[(table.name, target, operation)] += units

    def count_failed_condition(self, table: TableSpec, item: dict[str, Any] | None, *, transactional: bool = False) -> None:
        units = write_units(item_size(item)) * (2 if transactional else 1)
        with self._lock:
            self.write_units[(table.name, "table", self.current.operation)] += units
            self.failed_conditions[(table.name, self.current.operation)] += 1

    def count_read(self, table: str, index: str | None, operation: str, units: float) -> None:
        name = self.tables[table].name if table in self.tables else table
        with self._lock:
            self.read_units[(name, index or "table", operation)] += units

    # -- out --

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "startedAt": self.started,
                "seconds": round(time.time() - self.started, 3),
                "requests": [{"origin": o, "service": s, "operation": op, "count": n} for (o, s, op), n in sorted(self.requests.items())],
                "sqsChunks": [{"origin": o, "operation": op, "count": n} for (o, op), n in sorted(self.sqs_chunks.items())],
                "writeUnits": [{"table": t, "target": x, "operation": op, "units": n} for (t, x, op), n in sorted(self.write_units.items())],
                "readUnits": [{"table": t, "target": x, "operation": op, "units": n} for (t, x, op), n in sorted(self.read_units.items())],
                "failedConditions": [{"table": t, "operation": op, "count": n} for (t, op), n in sorted(self.failed_conditions.items())],
                "invocations": dict(sorted(self.invocations.items())),
                "httpApiRequests": self.api_requests,
                "largestItem": [{"table": t, "bytes": n} for t, n in sorted(self.largest_item.items())],
            }

    def dump(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path)


# ---- the hooks into moto (only installed when metering) ------------------------------------------

_installed: list[Meter] = []  # the meter the hooks report to (one per process)
_install_lock = threading.Lock()


def _meter() -> Meter | None:
    return _installed[0] if _installed else None


def install(meter: Meter) -> Meter:
    """Hook moto (server dispatch, DynamoDB backend) to report to ``meter``. Once per process; later
    calls make ``meter`` the one reported to. Call after ``moto_fixes.apply()`` and before the server starts."""
    with _install_lock:
        first = not _installed
        _installed[:] = [meter]
        if first:
            _patch_dispatch()
            _patch_dynamodb()
    return meter


def uninstall(meter: Meter) -> None:
    """Stop reporting to ``meter``; the hooks stay in place and pass everything through unchanged."""
    with _install_lock:
        if _installed and _installed[0] is meter:
            _installed.clear()


def _origin(user_agent: str) -> str:
    match = _APP_ID.search(user_agent or "")
    return ORIGINS.get(match.group(1), match.group(1)) if match else ORIGIN_JOBQ


def _operation(service: str, environ: Mapping[str, Any], body: bytes) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return str(target).rsplit(".", 1)[-1]
    method = str(environ.get("REQUEST_METHOD", "GET"))
    path = str(environ.get("PATH_INFO", "/"))
    if service == "s3":
        has_key = path.strip("/").count("/") >= 1
        query = str(environ.get("QUERY_STRING", ""))
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        noun = "Object" if has_key else ("Objects" if method == "GET" else "Bucket")
        verb = {"GET": "Get" if has_key else "List", "PUT": "Put", "HEAD": "Head", "DELETE": "Delete", "POST": "Post"}.get(method, method)
        return verb + noun
    if body and str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded"):
        for pair in body.decode("utf-8", "replace").split("&"):
            if pair.startswith("Action="):
                return pair[len("Action=") :]
    segment = path.strip("/").split("/", 1)[0]
    return f"{method} /{segment}"


def _patch_dispatch() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    def __call__(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        meter = _meter()
        app = self.get_application(environ)
        if meter is None:
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        service = str(getattr(app, "service", "unknown"))
        operation = _operation(service, environ, body)
        origin = _origin(str(environ.get("HTTP_USER_AGENT", "")))
        current = meter.current
        current.origin, current.operation, current.transaction = origin, operation, None
        status: list[str] = []

        def remember(code: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(code)
            return start_response(code, headers, exc_info) if exc_info else start_response(code, headers)

        try:
            chunks = app(environ, remember)
            response = b"".join(chunks)
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        finally:
            current.operation, current.transaction = "internal", None
        meter.count_request(origin, service, operation, max(1, math.ceil(max(len(body), len(response)) / SQS_CHUNK_BYTES)))
        if service == "dynamodb" and status and status[0].startswith("2"):
            _count_reads(meter, operation, body, response)
        return [response]

    DomainDispatcherApplication.__call__ = __call__  # type: ignore[method-assign]


def _count_reads(meter: Meter, operation: str, body: bytes, response: bytes) -> None:
    if operation not in ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"):
        return
    try:
        request, answer = json.loads(body or b"{}"), json.loads(response or b"{}")
    except ValueError:
        return
    consistent = bool(request.get("ConsistentRead"))
    if operation == "GetItem":
        meter.count_read(request["TableName"], None, operation, read_units(item_size(answer.get("Item")), consistent=consistent))
    elif operation in ("Query", "Scan"):
        items = answer.get("Items")
        size = sum(item_size(i) for i in items) if items is not None else 0
        index = request.get("IndexName")
        meter.count_read(request["TableName"], index, operation, read_units(size, consistent=consistent and not index))
    elif operation == "BatchGetItem":
        wanted = request.get("RequestItems") or {}
        for table, items in (answer.get("Responses") or {}).items():
            strong = bool((wanted.get(table) or {}).get("ConsistentRead"))
            for item in items:
                meter.count_read(table, None, operation, read_units(item_size(item), consistent=strong))
    else:  # TransactGetItems: twice a strongly consistent read per item
        names = [next(iter(t.values())).get("TableName", "?") for t in request.get("TransactItems") or []]
        for table, result in zip(names, answer.get("Responses") or [], strict=False):
            meter.count_read(table, None, operation, 2 * read_units(item_size(result.get("Item")), consistent=True))


def _patch_dynamodb() -> None:
    from moto.dynamodb import models as ddb_models
    from moto.dynamodb.exceptions import ConditionalCheckFailed, TransactionCanceledException
    from moto.dynamodb.models.dynamo_type import DynamoType

    backend = ddb_models.DynamoDBBackend
    from infra.local import moto_fixes

    lock = moto_fixes._lock  # the item-write lock: before, write and after are read as one

    def spec_of(self: Any, table_name: str, meter: Meter) -> tuple[Any, TableSpec]:
        table = self.get_table(table_name)
        spec = meter.tables.get(table_name)
        if spec is None:  # not from the template: what moto was told at CreateTable
            spec = TableSpec.from_definition(
                table_name,
                {
                    "KeySchema": table.schema,
                    "GlobalSecondaryIndexes": [i.describe() for i in table.global_indexes],
                },
            )
            meter.tables[table_name] = spec
        return table, spec

    def image(table: Any, key: Mapping[str, Any]) -> dict[str, Any] | None:
        if table.hash_key_attr not in key:
            return None
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr and table.range_key_attr in key else None
        if table.range_key_attr and range_value is None:
            return None
        item = table.get_item(hash_value, range_value)
        return copy.deepcopy(item.to_json()["Attributes"]) if item is not None else None

    def metered(original: Any, key_of: Callable[[tuple[Any, ...], dict[str, Any]], Mapping[str, Any]]) -> Any:
        @functools.wraps(original)
        def write(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
            meter = _meter()
            if meter is None:
                return original(self, table_name, *args, **kwargs)
            with lock:
                table, spec = spec_of(self, table_name, meter)
                key = key_of(args, kwargs)
                before = image(table, key)
                try:
                    out = original(self, table_name, *args, **kwargs)
                except ConditionalCheckFailed:
                    meter.count_failed_condition(spec, before, transactional=meter.current.transaction is not None)
                    raise
                meter.count_write(spec, before, image(table, key))
                return out

        return write

    def put_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Mapping[str, Any]:
        return kwargs.get("item_attrs") or (args[0] if args else {})

    def update_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Mapping[str, Any]:
        return kwargs.get("key") or (args[0] if args else {})

    backend.put_item = metered(backend.put_item, put_key)  # type: ignore[method-assign]
    backend.update_item = metered(backend.update_item, update_key)  # type: ignore[method-assign]
    backend.delete_item = metered(backend.delete_item, update_key)  # type: ignore[method-assign]

    transact = backend.transact_write_items

    @functools.wraps(transact)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        meter = _meter()
        if meter is None:
            return transact(self, transact_items)
        current = meter.current
        with lock:
            current.transaction = []
            checks = []
            for entry in transact_items:
                kind, op = next(iter(entry.items()))
                if kind == "ConditionCheck" and op.get("TableName") in self.tables:
                    table, spec = spec_of(self, op["TableName"], meter)
                    checks.append((spec, image(table, op.get("Key") or {})))
            try:
                transact(self, transact_items)
            except TransactionCanceledException:
                current.transaction = None  # a cancelled transaction: its writes were undone
                raise
            writes, current.transaction = current.transaction, None
            for spec, before, after in writes:
                meter._add_write(spec, before, after, current.operation, transactional=True)
            for spec, item in checks:  # a condition check is billed as a transactional write of its item
                meter._add_write(spec, item, item, current.operation, transactional=True)

    backend.transact_write_items = transact_write_items  # type: ignore[method-assign]
