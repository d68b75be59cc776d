"""The jobs repository on DynamoDB: jobs, their log lines and queue processor targets in one table.

Keys (template.yaml's JobsTable):
    job             pk=JOB#<owner>#<jobId>    sk=JOB
    job log line    pk=JOB#<owner>#<jobId>    sk=LOG#<ms>#<rand>
    http target     pk=QUEUE#<queue>          sk=TARGET#<type>
A job is addressed by its owner and its id together (``JobRef``): two users' ``invoice-42``
are two items, so no answer about one can depend on the other. ``<owner>`` is the user id
percent-encoded (``%`` and ``#`` escaped), so the key is unambiguous for any user id; the
job id never holds ``#``. Only this module spells keys; everything else passes
``(user_id, job_id)``.
GSIs on jobs (sparse: only job items carry these attributes), sort key ``createdKey``
(``<createdAt>#<jobId>``, so newest first is ScanIndexForward=False), every one KEYS_ONLY (byOwner
also projects the immutable ``queue``) so that no later write of a job touches an index:
    byOwner         ownerKey=O#<owner>#<shard>             written once, at create
    byQueue         queueKey=Q#<queue>#<shard>             written once, at create
    byQueueState    stateKey=Q#<queue>#<status>#<shard>    only while delayed, stalled, completed,
                                                           failed or cancelled (docs/data-model.md)
``<shard>`` is crc32(pk) mod ``IndexShards``: a queue's or a user's writes spread over that many
partition keys; a listing queries every shard and merges them (``_merged_page``), and its cursor
holds each shard's position. Waiting and active jobs are found by a bounded scan of byQueue or
byOwner (their items read and filtered), as no index keys them.

Every status change is ``apply()`` of a change the lifecycle made (shared/lifecycle.py),
called by shared/transitions.py alone: the write sets only what the change changes, adds 1
to the version and is conditional on the status as read and the change's guard (lease
token, version or attempt), so a racing writer gets ``Conflict`` instead of overwriting.
botocore's errors stop here (mapped by shared/adapters/aws_errors.py).
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import re
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from shared.adapters import clients
from shared.adapters.aws_errors import AWS_ERRORS, aws_code, cancellation_reasons, domain_error, old_item
from shared.adapters.payloads import PayloadStore
from shared.adapters.payloads import bucket_name as payloads_bucket
from shared.clock import iso
from shared.errors import Conflict, Invalid, JobqError, NotFound, Throttled, Unavailable
from shared.lifecycle import Change, Guard
from shared.models import AnyTarget, Job, JobRef, parse_target
from shared.observability import logger
from shared.status import JobStatus

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

# Stored as JSON text: DynamoDB rejects Python floats, and clients send floats.
_JSON_FIELDS = ("data", "result", "progress")
_LOG_SEQUENCE = itertools.count()
_INTERNAL = ("pk", "sk", "ownerKey", "queueKey", "stateKey", "createdKey", "expiresAt")
# The statuses byQueueState keys: those worth finding by state. Waiting and active jobs are the
# queue's live set (SQS holds it); keying them would move an index entry on every claim.
INDEXED_STATES = frozenset({JobStatus.DELAYED, JobStatus.STALLED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
# A filter no index keys reads at most this many index entries per page (and returns a cursor).
SCAN_FACTOR = 5
# Past these (their JSON, bytes) data and results go to S3, the item keeping the key: three
# writes of the item cost ~1,875 $/M per extra KB against 5.40 $/M for a PUT and a GET
# (docs/data-model.md); a result is written inline once, so it stays inline longer.
INLINE_DATA_BYTES = 2048
INLINE_RESULT_BYTES = 4096
_INDEX_KEYS = {"byOwner": "ownerKey", "byQueue": "queueKey", "byQueueState": "stateKey"}


def _job_pk(user_id: str, job_id: str) -> str:
    if not user_id or not job_id or "#" in job_id:
        raise Invalid("a job is addressed by a user id and a job id without '#'")
    return f"JOB#{_owner(user_id)}#{job_id}"


def _job_key(user_id: str, job_id: str) -> dict[str, Any]:
    return {"pk": {"S": _job_pk(user_id, job_id)}, "sk": {"S": "JOB"}}


def _owner(user_id: str) -> str:
    return user_id.replace("%", "%25").replace("#", "%23")


def shard_of(user_id: str, job_id: str, shards: int) -> int:
    """The job's index shard: fixed by its key, so its entries are put once and deleted once."""
    return zlib.crc32(_job_pk(user_id, job_id).encode()) % shards


def _state_key(queue: str, status: JobStatus, shard: int) -> str:
    return f"Q#{queue}#{status.value}#{shard}"


def _index_keys(job: Job, shards: int) -> dict[str, str]:
    shard = shard_of(job.user_id, job.job_id, shards)
    keys = {
        "ownerKey": f"O#{_owner(job.user_id)}#{shard}",
        "queueKey": f"Q#{job.queue}#{shard}",
        "createdKey": f"{job.created_at}#{job.job_id}",
    }
    if job.status in INDEXED_STATES:
        keys["stateKey"] = _state_key(job.queue, job.status, shard)
    return keys


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; jobq only stores integers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "as_integer_ratio") and not isinstance(value, (bool, int, float)):
        return int(value) if value == int(value) else float(value)
    return value


def default_shards() -> int:
    """``JOBQ_INDEX_SHARDS`` (template.yaml's IndexShards), 8 when unset."""
    try:
        return max(1, int(os.environ.get("JOBQ_INDEX_SHARDS", "8")))
    except ValueError:
        return 8


# ---- the job item's stored form -----------------------------------------------------------------
# Every write of a job is billed by its whole item (1 unit a KB, rounded up: create, claim and
# completion at least), so the item carries nothing it can do without (docs/data-model.md, fourth
# pass). What this changes is only how the item spells the job: ``from_item`` reads back the same
# ``Job``, and ``readable_image`` gives the stream's readers the long names (shared/stats.py,
# shared/flows.py, shared/admission.py read raw images).
#
# Short names for what every job carries (the model's alias -> the item's attribute). ``queue`` keeps
# its name (byOwner projects it, a listing filters on it), and so does what only some jobs carry.
_STORED_NAMES = {
    "status": "st", "data": "d", "result": "r", "history": "h", "attempts": "n", "maxAttempts": "mx", "version": "v",
    "updatedAt": "u", "startedAt": "sa", "completedAt": "ca", "failedAt": "fa", "cancelledAt": "xa", "processingTime": "pt",
    "progress": "p", "progressMessage": "pm", "leaseUntil": "lu", "leaseToken": "lt", "type": "ty",
}  # fmt: skip
_ALIASES = {stored: alias for alias, stored in _STORED_NAMES.items()}
# An attempt record's keys, and its usage's.
_RECORD_NAMES = {"attempt": "a", "startedAt": "s", "endedAt": "e", "outcome": "o", "error": "x", "usage": "g"}
_RECORD_ALIASES = {stored: alias for alias, stored in _RECORD_NAMES.items()}
_USAGE_NAMES = {"durationMs": "d", "memorySizeMb": "m", "peakMemoryMb": "k", "costNanoUsd": "c"}
_USAGE_ALIASES = {stored: alias for alias, stored in _USAGE_NAMES.items()}
# Derivable, so not stored: the owner and the job id are in ``pk``, ``createdAt`` begins ``createdKey``.
_DERIVED = ("jobId", "userId", "createdAt")
# Timestamps stored as epoch ms (8 B instead of 24) when that reads back as the same text.
_STAMPS = frozenset({"updatedAt", "startedAt", "completedAt", "failedAt", "cancelledAt"})
_RECORD_STAMPS = frozenset({"startedAt", "endedAt"})
# Attributes left out at their model default (from_item restores it; an update that returns one to it
# REMOVEs it).
_OMITTED_AT_DEFAULT: dict[str, Any] = {
    "cancelRequested": False, "hasChildren": False, "outbox": False, "retries": 0, "delay": 0, "priority": 0,
    "backoff": {"type": "exponential", "delay": 1000}, "progress": 0, "history": [],
}  # fmt: skip
# Data and results inline are zlib-compressed (a Binary attribute) when that saves a real margin:
# typical JSON shrinks 2-4x, which keeps a job with ~1 KB of data within one write unit a write.
_COMPRESS_FROM_BYTES = 64
_PAYLOADS = ("data", "result")


def _stored(alias: str) -> str:
    """The job item's attribute for the model's ``alias``."""
    return _STORED_NAMES.get(alias, alias)


def _stamp(text: str) -> dict[str, Any]:
    """A timestamp as stored: epoch ms when ``iso`` gives the same text back, else the text."""
    try:
        ms = round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        return {"S": text}
    return {"N": str(ms)} if iso(ms) == text else {"S": text}


def _packed(text: str) -> dict[str, Any]:
    """JSON as stored inline: zlib-compressed when that saves at least an eighth and 32 bytes."""
    raw = text.encode()
    if len(raw) >= _COMPRESS_FROM_BYTES:
        packed = zlib.compress(raw, 9)
        if len(packed) + max(32, len(raw) // 8) <= len(raw):
            return {"B": packed}
    return {"S": text}


def _unpacked(value: Any) -> str:
    """A Binary payload's JSON (boto3 gives bytes; a Lambda stream event gives base64 text)."""
    raw = base64.b64decode(value) if isinstance(value, str) else bytes(value)
    return zlib.decompress(raw).decode()


def _encode(alias: str, value: Any) -> dict[str, Any]:
    if alias in _PAYLOADS:
        return _packed(json.dumps(value, separators=(",", ":")))
    if alias == "progress":
        return {"S": json.dumps(value, separators=(",", ":"))}
    if alias in _STAMPS and isinstance(value, str):
        return _stamp(value)
    if alias == "history":
        return {"L": [{"M": _stored_record(record)} for record in value]}
    encoded: dict[str, Any] = dict(_serializer.serialize(value))
    return encoded


def _stored_record(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in record.items():
        if name in _RECORD_STAMPS and isinstance(value, str):
            out[_RECORD_NAMES[name]] = _stamp(value)
        elif name == "usage" and isinstance(value, dict):
            out["g"] = {"M": {_USAGE_NAMES.get(k, k): _serializer.serialize(v) for k, v in value.items()}}
        else:
            out[_RECORD_NAMES.get(name, name)] = _serializer.serialize(value)
    return out


def to_item(
    job: Job, shards: int | None = None, *, only: Iterable[str] | None = None, store_apart: Callable[[str, bytes], str | None] | None = None
) -> dict[str, Any]:
    """The job's item: its keys and index keys, and its attributes as stored (``only`` those aliases, if given).

    ``store_apart(name, json)`` may keep ``data`` or ``result`` out of the item: the key it returns
    is stored as ``dataRef`` / ``resultRef`` instead (the claim check, shared/adapters/payloads.py).
    """
    fields = job.model_dump(by_alias=True, mode="json", exclude_none=True)
    wanted = None if only is None else set(only)
    item: dict[str, Any] = {}
    for alias, value in fields.items():
        if alias in _DERIVED or (wanted is not None and alias not in wanted) or _OMITTED_AT_DEFAULT.get(alias, ...) == value:
            continue
        if alias in _PAYLOADS and store_apart is not None:
            text = json.dumps(value, separators=(",", ":"))
            ref = store_apart(alias, text.encode())
            if ref is not None:
                item[f"{alias}Ref"] = {"S": ref}
                continue
            item[_stored(alias)] = _packed(text)
            continue
        item[_stored(alias)] = _encode(alias, value)
    item.update(_job_key(job.user_id, job.job_id))
    item.update({k: {"S": v} for k, v in _index_keys(job, shards or default_shards()).items()})
    return item


def readable_image(image: dict[str, Any]) -> dict[str, Any]:
    """A job item (or a stream image of one) with the model's attribute names and plain forms: what
    ``to_item`` shortened, packed or left out to be derived, spelled out again (as DynamoDB values)."""
    out: dict[str, Any] = {}
    for name, value in image.items():
        alias = _ALIASES.get(name, name)
        if alias in _PAYLOADS and isinstance(value, dict) and "B" in value:
            value = {"S": _unpacked(value["B"])}
        elif alias in _STAMPS and isinstance(value, dict) and "N" in value:
            value = {"S": iso(int(value["N"]))}
        elif alias == "history" and isinstance(value, dict) and isinstance(value.get("L"), list):
            value = {"L": [{"M": _readable_record(r["M"])} if isinstance(r, dict) and isinstance(r.get("M"), dict) else r for r in value["L"]]}
        out[alias] = value
    pk = (image.get("pk") or {}).get("S")
    if isinstance(pk, str) and pk.startswith("JOB#") and pk.count("#") >= 2:
        _, owner, job_id = pk.split("#", 2)
        out.setdefault("jobId", {"S": job_id})
        out.setdefault("userId", {"S": _owner_of(owner)})
    created = (image.get("createdKey") or {}).get("S")
    if isinstance(created, str) and "#" in created:
        out.setdefault("createdAt", {"S": created.split("#", 1)[0]})
    return out


def _readable_record(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in record.items():
        alias = _RECORD_ALIASES.get(name, name)
        if alias in _RECORD_STAMPS and isinstance(value, dict) and "N" in value:
            value = {"S": iso(int(value["N"]))}
        elif alias == "usage" and isinstance(value, dict) and isinstance(value.get("M"), dict):
            value = {"M": {_USAGE_ALIASES.get(k, k): v for k, v in value["M"].items()}}
        out[alias] = value
    return out


def readable_record(record: dict[str, Any]) -> dict[str, Any]:
    """A stream record whose job images are ``readable_image``'s: what the stream's readers parse."""
    change = record.get("dynamodb")
    if not isinstance(change, dict) or ((change.get("Keys") or {}).get("sk") or {}).get("S") != "JOB":
        return record
    images = {k: readable_image(change[k]) for k in ("NewImage", "OldImage") if isinstance(change.get(k), dict)}
    return {**record, "dynamodb": {**change, **images}} if images else record


def _owner_of(encoded: str) -> str:
    """``_owner`` undone (one pass, so ``%2523`` stays ``%23``)."""
    return re.sub("%2[35]", lambda m: "#" if m.group(0) == "%23" else "%", encoded)


def _renderable(value: Any) -> Any:
    """What was stored, made strict JSON: items written before the API refused such values
    (lone surrogates, NaN, Infinity) still render instead of failing a whole listing."""
    if isinstance(value, str):
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value) if _has_surrogate(value) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_renderable(k): _renderable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_renderable(v) for v in value]
    return value


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _json_field(text: str) -> Any:
    try:
        return _renderable(json.loads(text))
    except ValueError:
        return None


def from_item(item: dict[str, Any]) -> Job:
    raw = {k: _deserializer.deserialize(v) for k, v in readable_image(item).items() if k not in _INTERNAL}
    for name in _JSON_FIELDS:
        if isinstance(raw.get(name), str):
            raw[name] = _json_field(raw[name])
    for record in raw.get("history") or ():
        if isinstance(record, dict) and "attempt" not in record:  # appended by a read-free claim (JobStore.claim)
            record["attempt"] = raw.get("attempts", 0)
    return Job.model_validate(_renderable(_plain(raw)))


def encode_cursor(key: dict[str, Any]) -> str:
    """An opaque cursor: the last key of a page. The partition stays the server's choice."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError) as err:
        raise Invalid("cursor is not valid: pass back the nextCursor of the previous page") from err
    if not isinstance(key, dict) or not all(isinstance(v, dict) and len(v) == 1 for v in key.values()):
        raise Invalid("cursor is not valid: pass back the nextCursor of the previous page")
    return key


def _encode_positions(positions: dict[str, Any]) -> str:
    """A merged listing's cursor: each shard's position (a key to go on from, or "done")."""
    return encode_cursor({"v": {"N": "2"}, "p": {"M": {s: {"S": "done"} if p == "done" else {"M": p} for s, p in positions.items()}}})


def _decode_positions(cursor: str | None, shards: int) -> dict[str, Any]:
    if not cursor:
        return {}
    raw = decode_cursor(cursor)
    bad = Invalid("cursor is not valid for this listing")
    if raw.get("v") != {"N": "2"} or not isinstance(raw.get("p"), dict) or not isinstance(raw["p"].get("M"), dict):
        raise bad
    positions: dict[str, Any] = {}
    for shard, position in raw["p"]["M"].items():
        if not shard.isdigit() or int(shard) >= shards or not isinstance(position, dict):
            raise bad
        if position == {"S": "done"}:
            positions[shard] = "done"
            continue
        key = position.get("M")
        if not isinstance(key, dict) or set(key) - {"pk", "sk", "createdKey"} or not all(
            isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in key.values()
        ):
            raise bad
        positions[shard] = key
    return positions


_old_item = old_item


def _is(err: BaseException, code: str) -> bool:
    return aws_code(err) == code


class JobStore:
    def __init__(self, table_name: str, *, index_shards: int | None = None, payloads: PayloadStore | None = None) -> None:
        self.table_name = table_name
        self.shards = index_shards or default_shards()
        bucket = payloads_bucket()
        self.payloads = payloads or (PayloadStore(bucket) if bucket else None)

    # ---- the claim check: large data and results as S3 objects (shared/adapters/payloads.py) ----
    def stored_item(self, job: Job) -> dict[str, Any]:
        """The job's item, its data moved to S3 when its JSON is past ``INLINE_DATA_BYTES``."""
        return to_item(job, self.shards, store_apart=lambda name, raw: self._apart(job, name, raw, INLINE_DATA_BYTES) if name == "data" else None)

    def _apart(self, job: Job, name: str, raw: bytes, limit: int) -> str | None:
        """The S3 key ``raw`` (the JSON of ``name``) is stored under, when past ``limit``; None keeps it inline.

        The limit is on the JSON as sent, not as compressed: what stays inline is what a listing,
        a stream image and a webhook carry whole, so it stays bounded whatever compresses how well.
        """
        if self.payloads is None or len(raw) <= limit:
            return None
        return self.payloads.put(job.user_id, job.job_id, f"{name}-{uuid.uuid4().hex[:12]}", raw)

    def with_payloads(self, job: Job, *, data: bool = True, result_budget: int | None = None) -> Job:
        """``job`` with its data and result read back from S3 where they were stored apart.

        ``result_budget``: leave the result out (``JobPublic.omitted``) when data and result
        together would pass it (bytes), so an answer stays within Lambda's response limit.
        """
        if self.payloads is None:
            return job
        update: dict[str, Any] = {}
        size = 0
        if data and job.data_ref and not job.data:
            raw = self.payloads.get(job.data_ref)
            size += len(raw)
            update["data"] = _json_field(raw.decode())
        if job.result_ref and job.result is None:
            raw = self.payloads.get(job.result_ref)
            if result_budget is None or size + len(raw) <= result_budget:
                update["result"] = _json_field(raw.decode())
        return job.model_copy(update=update) if update else job

    @property
    def _ddb(self) -> Any:
        return clients.client("dynamodb")

    # ---- jobs ------------------------------------------------------------------
    def create(self, job: Job) -> Job:
        """Store a new job. ``Conflict`` (with the stored job as details) if its id exists."""
        try:
            self._ddb.put_item(
                TableName=self.table_name,
                Item=self.stored_item(job),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except AWS_ERRORS as err:
            if _is(err, "ConditionalCheckFailedException"):
                existing = _old_item(err)
                raise Conflict(
                    f"job {job.job_id} already exists", details=from_item(existing) if existing else self.get(job.user_id, job.job_id)
                ) from err
            raise _unavailable(err) from err
        return job

    def get(self, user_id: str, job_id: str, *, consistent: bool = True) -> Job | None:
        """The job ``job_id`` of user ``user_id``, or None. No other user's job is ever read."""
        try:
            out = self._ddb.get_item(TableName=self.table_name, Key=_job_key(user_id, job_id), ConsistentRead=consistent)
        except AWS_ERRORS as err:
            raise _unavailable(err) from err
        item = out.get("Item")
        return from_item(item) if item else None

    def require(self, user_id: str, job_id: str) -> Job:
        job = self.get(user_id, job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    def delete(self, user_id: str, job_id: str) -> None:
        try:
            self._ddb.delete_item(TableName=self.table_name, Key=_job_key(user_id, job_id))
        except AWS_ERRORS as err:
            raise _unavailable(err) from err

    def delete_unchanged(self, job: Job) -> bool:
        """Delete ``job`` only if it is still as read (status and version): a job retried since stays."""
        try:
            self._ddb.delete_item(
                TableName=self.table_name,
                Key=_job_key(job.user_id, job.job_id),
                ConditionExpression="#status = :status AND #version = :version",
                ExpressionAttributeNames={"#status": _stored("status"), "#version": _stored("version")},
                ExpressionAttributeValues={":status": {"S": job.status.value}, ":version": {"N": str(job.version)}},
            )
        except AWS_ERRORS as err:
            if _is(err, "ConditionalCheckFailedException"):
                return False
            raise _unavailable(err) from err
        return True

    def apply(self, change: Change) -> Job:
        """Write one lifecycle change: SET only what it changes, ``ADD version 1``, conditional on its guard.

        Returns the job as written (``ALL_NEW``). ``Conflict`` (with the job as it is now as
        details, when it exists) if the job is no longer as the change expects.
        """
        request = self._update_request(change)
        try:
            out = self._ddb.update_item(**request, ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except AWS_ERRORS as err:
            if _is(err, "ConditionalCheckFailedException"):
                current = _old_item(err)
                raise Conflict(
                    f"job {change.job.job_id} changed while it was being updated ({change.operation})",
                    details=from_item(current) if current else None,
                ) from err
            raise _unavailable(err) from err
        written = from_item(out["Attributes"])
        # What was read back from S3 before stays known: the change did not touch it.
        carried: dict[str, Any] = {}
        if written.data_ref and written.data_ref == change.job.data_ref:
            carried["data"] = change.job.data
        if "result" in change.sets:
            carried["result"] = change.sets["result"]
        elif written.result_ref and written.result_ref == change.job.result_ref:
            carried["result"] = change.job.result
        return written.model_copy(update=carried) if carried else written

    def apply_together(self, change: Change, actions: list[dict[str, Any]]) -> Job:
        """``apply`` and other items' writes (a flow's follow-up jobs, shared/adapters/flows.py) in one
        TransactWriteItems: all or nothing. ``Conflict`` when the job's condition (or another's) failed."""
        request = self._update_request(change)
        try:
            self._ddb.transact_write_items(TransactItems=[{"Update": request}, *actions])
        except AWS_ERRORS as err:
            if _is(err, "TransactionCanceledException"):
                reasons = cancellation_reasons(err)
                if "ConditionalCheckFailed" in reasons:
                    raise Conflict(
                        f"job {change.job.job_id} changed while it was being updated ({change.operation})",
                        details=self.get(change.job.user_id, change.job.job_id),
                    ) from err
            raise _unavailable(err) from err
        return change.after()

    def _update_request(self, change: Change) -> dict[str, Any]:
        updated = change.after()  # validates the change before anything is written
        names: dict[str, str] = {"#status": _stored("status"), "#version": _stored("version")}
        values: dict[str, Any] = {":expected_status": {"S": change.job.status.value}, ":one": {"N": "1"}}
        sets: list[str] = []
        removes: list[str] = []
        fields = dict(change.sets)
        if change.status_changes:
            fields["status"] = change.target
        attributes = {Job.model_fields[f].alias or f: f for f in fields}
        item = to_item(
            updated, self.shards, only=attributes,
            store_apart=lambda name, raw: self._apart(updated, name, raw, INLINE_RESULT_BYTES) if name == "result" and "result" in change.sets else None,
        )  # fmt: skip
        if "result" in fields or "result" in change.removes:
            attributes["resultRef"] = ""  # set with an offloaded result, removed otherwise
        if change.status_changes and (change.target in INDEXED_STATES or change.job.status in INDEXED_STATES):
            attributes["stateKey"] = ""  # byQueueState: put, moved or removed; the other indexes never change
        for i, alias in enumerate(sorted(attributes)):
            stored = _stored(alias)
            names[f"#a{i}"] = stored
            if stored in item:
                values[f":v{i}"] = item[stored]
                sets.append(f"#a{i} = :v{i}")
            else:
                removes.append(f"#a{i}")
        for j, field in enumerate(change.removes):
            names[f"#r{j}"] = _stored(Job.model_fields[field].alias or field)
            removes.append(f"#r{j}")
        if change.expires_at is not None:
            names["#ttl"] = "expiresAt"
            values[":ttl"] = {"N": str(change.expires_at)}
            sets.append("#ttl = :ttl")
        elif change.clear_expiry:
            names["#ttl"] = "expiresAt"
            removes.append("#ttl")
        expression = " ".join(
            part for part in ("SET " + ", ".join(sets) if sets else "", "REMOVE " + ", ".join(removes) if removes else "", "ADD #version :one") if part
        )
        condition = "#status = :expected_status"
        if change.guard is Guard.LEASE:
            condition += " AND #token = :token"
            names["#token"] = _stored("leaseToken")
            values[":token"] = {"S": change.token or ""}
        elif change.guard is Guard.VERSION:
            condition += " AND #version = :expected_version"
            values[":expected_version"] = {"N": str(change.job.version)}
        elif change.guard is Guard.ATTEMPT:
            condition += " AND #attempts = :attempt"
            names["#attempts"] = _stored("attempts")
            values[":attempt"] = {"N": str(change.job.attempts)}
        if change.unless_cancel_requested:
            names["#cancel"] = "cancelRequested"
            values[":false"] = {"BOOL": False}
            condition += " AND (attribute_not_exists(#cancel) OR #cancel = :false)"
        return {
            "TableName": self.table_name,
            "Key": _job_key(change.job.user_id, change.job.job_id),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def claim(self, user_id: str, job_id: str, *, now: int, lease_ms: int, token: str, max_history: int) -> Job:
        """Take a claimable job for one attempt in one conditional UpdateItem, without reading it first.

        The write is conditional on what makes a claim plain: the job is waiting, stalled or a
        delayed job that is due, has attempts left, no cancel requested and room in its history.
        Returns the job as written (``ALL_NEW``). ``Conflict`` otherwise, with the job as it is
        (``ReturnValuesOnConditionCheckFailure``, no extra read) as details, or None if there is
        no such job: the caller decides from that job what else to do (shared/worker.py).
        The new attempt record is appended without its number (an update expression cannot
        compute it); ``from_item`` numbers it from ``attempts``.
        """
        names = {
            "#status": "status", "#version": "version", "#attempts": "attempts", "#max": "maxAttempts", "#runAt": "runAt",
            "#cancel": "cancelRequested", "#history": "history", "#leaseUntil": "leaseUntil", "#leaseToken": "leaseToken",
            "#startedAt": "startedAt", "#updatedAt": "updatedAt",
        }  # fmt: skip
        names = {placeholder: _stored(alias) for placeholder, alias in names.items()}
        at = _stamp(iso(now))
        values: dict[str, Any] = {
            ":waiting": {"S": JobStatus.WAITING.value}, ":stalled": {"S": JobStatus.STALLED.value}, ":delayed": {"S": JobStatus.DELAYED.value},
            ":active": {"S": JobStatus.ACTIVE.value}, ":due": {"S": iso(now + 1000)}, ":false": {"BOOL": False},
            ":max_history": {"N": str(max_history)}, ":one": {"N": "1"}, ":lease_until": {"N": str(now + lease_ms)},
            ":token": {"S": token}, ":now": at, ":empty": {"L": []}, ":record": {"L": [{"M": {_RECORD_NAMES["startedAt"]: at}}]},
        }  # fmt: skip
        condition = (
            "#status IN (:waiting, :stalled, :delayed) AND (#status <> :delayed OR #runAt <= :due) AND #attempts < #max"
            " AND (attribute_not_exists(#cancel) OR #cancel = :false)"
            " AND (attribute_not_exists(#history) OR size(#history) < :max_history)"
        )
        expression = (
            "SET #status = :active, #leaseUntil = :lease_until, #leaseToken = :token, #startedAt = :now, #updatedAt = :now,"
            " #history = list_append(if_not_exists(#history, :empty), :record) REMOVE #state ADD #attempts :one, #version :one"
        )
        names["#state"] = "stateKey"  # a delayed or stalled job leaves byQueueState; a waiting one was never in it
        try:
            out = self._ddb.update_item(
                TableName=self.table_name,
                Key=_job_key(user_id, job_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except AWS_ERRORS as err:
            if _is(err, "ConditionalCheckFailedException"):
                current = _old_item(err)
                raise Conflict(f"job {job_id} is not plainly claimable", details=from_item(current) if current else None) from err
            raise _unavailable(err) from err
        return from_item(out["Attributes"])

    def create_many(self, jobs: list[Job]) -> tuple[list[Job], list[Job], JobqError | None]:
        """Store new jobs with generated ids, 25 to a BatchWriteItem (no condition: ids are fresh UUIDs).

        Returns ``(stored, not_stored, why)``: each job is in exactly one of the two lists, so a
        caller can say of every job whether it exists (a failed chunk does not undo the earlier ones).
        """
        stored: list[Job] = []
        not_stored: list[Job] = []
        why: JobqError | None = None
        for start in range(0, len(jobs), 25):
            chunk = jobs[start : start + 25]
            if why is not None:  # DynamoDB failed on an earlier chunk: do not hammer it
                not_stored.extend(chunk)
                continue
            items = [self.stored_item(job) for job in chunk]
            pending: dict[str, Any] = {self.table_name: [{"PutRequest": {"Item": item}} for item in items]}
            try:
                for attempt in range(6):
                    out = self._ddb.batch_write_item(RequestItems=pending)
                    pending = out.get("UnprocessedItems") or {}
                    if not pending:
                        break
                    time.sleep(0.05 * 2**attempt)
            except AWS_ERRORS as err:
                why = _unavailable(err)
                pending = {self.table_name: [{"PutRequest": {"Item": item}} for item in items]}
            left = {item["PutRequest"]["Item"]["pk"]["S"] for item in (pending.get(self.table_name) or [])}
            for job in chunk:
                (not_stored if _job_key(job.user_id, job.job_id)["pk"]["S"] in left else stored).append(job)
            if left and why is None:
                why = Throttled("DynamoDB is throttling; some jobs of the batch were not stored")
        return stored, not_stored, why

    # ---- markers: idempotency keys and deduplication keys ------------------------------
    def claim_marker(self, key: str, attributes: dict[str, str], *, expires_at: int, now_s: int) -> dict[str, str] | None:
        """Write marker ``key`` unless a live one exists; return the live one's attributes, or None if ours was written."""
        item = {"pk": {"S": key}, "sk": {"S": "MARKER"}, "expiresAt": {"N": str(expires_at)}}
        item.update({name: {"S": value} for name, value in attributes.items()})
        try:
            self._ddb.put_item(
                TableName=self.table_name,
                Item=item,
                # TTL deletes lazily (up to days late): an expired marker counts as absent.
                ConditionExpression="attribute_not_exists(pk) OR expiresAt < :now",
                ExpressionAttributeValues={":now": {"N": str(now_s)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except AWS_ERRORS as err:
            if _is(err, "ConditionalCheckFailedException"):
                old = _old_item(err) or {}
                return {k: v["S"] for k, v in old.items() if "S" in v and k not in ("pk", "sk")}
            raise _unavailable(err) from err
        return None

    def delete_marker(self, key: str) -> None:
        try:
            self._ddb.delete_item(TableName=self.table_name, Key={"pk": {"S": key}, "sk": {"S": "MARKER"}})
        except AWS_ERRORS as err:
            raise _unavailable(err) from err

    def get_many(self, refs: Iterable[JobRef]) -> dict[JobRef, Job]:
        """Jobs by reference with BatchGetItem (100 keys a call); absent ones are left out."""
        wanted = list(dict.fromkeys(refs))
        found: dict[JobRef, Job] = {}
        for start in range(0, len(wanted), 100):
            keys = [_job_key(ref.user_id, ref.job_id) for ref in wanted[start : start + 100]]
            request: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
            for attempt in range(8):
                try:
                    out = self._ddb.batch_get_item(RequestItems=request)
                except AWS_ERRORS as err:
                    raise _unavailable(err) from err
                for item in out.get("Responses", {}).get(self.table_name, []):
                    job = from_item(item)
                    found[JobRef.of(job)] = job
                request = out.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))  # throttled: back off, as DynamoDB asks
            if request:
                # Never report a job that exists as absent: the caller retries the whole read.
                raise Unavailable("DynamoDB is throttling; retry the request")
        return found

    # ---- job logs: items beside the job (same pk, sk LOG#...), so the job item stays small --
    def append_log(self, user_id: str, job_id: str, message: str, *, at_ms: int, attempt: int | None, expires_at: int) -> None:
        item = {
            "pk": {"S": _job_pk(user_id, job_id)},
            # The process-wide sequence keeps lines written in the same millisecond in order;
            # the random tail keeps two consumers' lines apart.
            "sk": {"S": f"LOG#{at_ms:015d}#{next(_LOG_SEQUENCE):012d}{uuid.uuid4().hex[:6]}"},
            "message": {"S": message},
            "expiresAt": {"N": str(expires_at)},
        }
        if attempt is not None:
            item["attempt"] = {"N": str(attempt)}
        try:
            self._ddb.put_item(TableName=self.table_name, Item=item)
        except AWS_ERRORS as err:
            raise _unavailable(err) from err

    def page_logs(self, user_id: str, job_id: str, *, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :log)",
            "ExpressionAttributeValues": {":pk": {"S": _job_pk(user_id, job_id)}, ":log": {"S": "LOG#"}},
            "Limit": limit,
        }
        items, next_cursor = self._query_page(params, cursor)
        lines = [
            {
                "at_ms": int(item["sk"]["S"].split("#")[1]),
                "message": item["message"]["S"],
                "attempt": int(item["attempt"]["N"]) if "attempt" in item else None,
            }
            for item in items
        ]
        return lines, next_cursor

    # ---- listings: the indexes, their shards and their keys are this module's business ----------
    def _partitions(self, index: str, prefix: str) -> list[str]:
        return [f"{prefix}#{shard}" for shard in range(self.shards)]

    def _merged_keys(
        self,
        index: str,
        prefix: str,
        *,
        limit: int,
        positions: dict[str, Any],
        newest_first: bool,
        created_before: str | None,
        filters: dict[str, str] | None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Up to ``limit`` index entries, every shard merged in order, and each shard's position after them.

        A shard's position is DynamoDB's key to go on from, or ``"done"``. An entry is taken only
        if no shard can still hold one before it (it is not past any shard's frontier), so the
        order holds across pages whatever filters skipped.
        """
        key_name = _INDEX_KEYS[index]
        fetched: dict[int, tuple[list[dict[str, Any]], dict[str, Any] | None]] = {}
        for shard, partition in enumerate(self._partitions(index, prefix)):
            position = positions.get(str(shard))
            if position == "done":
                continue
            names = {"#k": key_name, "#c": "createdKey"}
            values: dict[str, Any] = {":k": {"S": partition}}
            condition = "#k = :k"
            if created_before is not None:
                values[":c"] = {"S": created_before}
                condition += " AND #c < :c"
            else:
                names.pop("#c")
            params: dict[str, Any] = {
                "TableName": self.table_name,
                "IndexName": index,
                "KeyConditionExpression": condition,
                "ScanIndexForward": not newest_first,
                "Limit": limit,
            }
            if filters:
                clauses = []
                for i, (attribute, value) in enumerate(sorted(filters.items())):
                    names[f"#f{i}"] = attribute
                    values[f":f{i}"] = {"S": value}
                    clauses.append(f"#f{i} = :f{i}")
                params["FilterExpression"] = " AND ".join(clauses)
            params["ExpressionAttributeNames"] = names
            params["ExpressionAttributeValues"] = values
            if isinstance(position, dict):
                # The partition is the server's: a cursor only says where in it to go on.
                params["ExclusiveStartKey"] = {**position, key_name: {"S": partition}}
            out = self._query(params, cursor_given=position is not None)
            fetched[shard] = (out.get("Items", []), out.get("LastEvaluatedKey"))

        def order(item: dict[str, Any]) -> tuple[str, str]:
            return (item.get("createdKey", {}).get("S", ""), item.get("pk", {}).get("S", ""))

        frontiers = [order(last) for _, last in fetched.values() if last]
        entries = sorted(((order(item), shard, item) for shard, (items, _) in fetched.items() for item in items), reverse=newest_first)
        taken: list[tuple[int, dict[str, Any]]] = []
        for key, shard, item in entries:
            if len(taken) >= limit:
                break
            if frontiers and (key < max(frontiers) if newest_first else key > min(frontiers)):
                break  # a shard may hold an entry before this one that it has not returned yet
            taken.append((shard, item))
        after = dict(positions)
        for shard, (items, last) in fetched.items():
            mine = [item for s_, item in taken if s_ == shard]
            if len(mine) == len(items):
                after[str(shard)] = {k: v for k, v in last.items() if k != key_name} if last else "done"
            elif mine:
                after[str(shard)] = {k: mine[-1][k] for k in ("pk", "sk", "createdKey")}
        return [item for _, item in taken], after

    def _listing(
        self,
        index: str,
        prefix: str,
        *,
        limit: int,
        cursor: str | None,
        newest_first: bool = True,
        created_before: str | None = None,
        filters: dict[str, str] | None = None,
        keep: Callable[[Job], bool] | None = None,
        scan_entries: int | None = None,
    ) -> tuple[list[Job], str | None]:
        """One page of jobs: merged index entries, then their items (BatchGetItem, eventually consistent).

        ``keep`` filters on the items (what no index keys): the page then reads at most
        ``scan_entries`` (``SCAN_FACTOR`` x ``limit``) entries and may come back short with a cursor.
        """
        positions = _decode_positions(cursor, self.shards)
        budget = scan_entries if scan_entries is not None else (SCAN_FACTOR * limit if keep else limit)
        jobs: list[Job] = []
        read = 0
        while len(jobs) < limit and read < budget:
            want = min(limit - len(jobs), budget - read)
            entries, positions = self._merged_keys(
                index, prefix, limit=want, positions=positions, newest_first=newest_first, created_before=created_before, filters=filters
            )
            read += max(len(entries), 1)
            found = self._items([{"pk": e["pk"], "sk": e["sk"]} for e in entries])
            jobs.extend(job for job in found if keep is None or keep(job))
            if all(positions.get(str(shard)) == "done" for shard in range(self.shards)):
                return jobs, None
        return jobs, _encode_positions(positions)

    def _items(self, keys: list[dict[str, Any]]) -> list[Job]:
        """The items of ``keys`` in that order (BatchGetItem, eventually consistent); vanished ones left out."""
        if not keys:
            return []
        by_pk: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 100):  # BatchGetItem takes 100 keys a call
            request: dict[str, Any] = {self.table_name: {"Keys": keys[start : start + 100]}}
            for attempt in range(8):
                try:
                    out = self._ddb.batch_get_item(RequestItems=request)
                except AWS_ERRORS as err:
                    raise _unavailable(err) from err
                for item in out.get("Responses", {}).get(self.table_name, []):
                    by_pk[item["pk"]["S"]] = item
                request = out.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt))
            if request:
                raise Unavailable("DynamoDB is throttling; retry the request")
        return _readable_jobs([by_pk[k["pk"]["S"]] for k in keys if k["pk"]["S"] in by_pk])

    def page_by_queue(
        self,
        queue: str,
        status: JobStatus | None = None,
        *,
        limit: int,
        cursor: str | None = None,
        newest_first: bool = True,
        created_before: str | None = None,
        scan_entries: int | None = None,
    ) -> tuple[list[Job], str | None]:
        """A queue's jobs (of one status), newest first unless asked otherwise.

        Waiting and active jobs (no index keys them) come from a bounded scan of the queue's
        newest entries (``scan_entries``, default ``SCAN_FACTOR`` x ``limit``).
        """
        if status in INDEXED_STATES:
            return self._listing(
                "byQueueState", f"Q#{queue}#{status.value}", limit=limit, cursor=cursor, newest_first=newest_first,
                created_before=created_before, keep=lambda job: job.status is status,
                scan_entries=limit if scan_entries is None else scan_entries,
            )  # fmt: skip
        keep = None if status is None else (lambda job: job.status is status)
        return self._listing(
            "byQueue", f"Q#{queue}", limit=limit, cursor=cursor, newest_first=newest_first if status is None else True,
            created_before=created_before, keep=keep, scan_entries=scan_entries,
        )  # fmt: skip

    def page_by_user(
        self, user_id: str, status: JobStatus | None = None, *, limit: int, cursor: str | None = None, queue: str | None = None
    ) -> tuple[list[Job], str | None]:
        """A user's jobs (of one status, of one queue), newest first; a status is a bounded scan."""
        filters = {"queue": queue} if queue else None
        keep = None if status is None else (lambda job: job.status is status)
        return self._listing("byOwner", f"O#{_owner(user_id)}", limit=limit, cursor=cursor, filters=filters, keep=keep)

    def count_by_queue(self, queue: str, status: JobStatus) -> int:
        """How many jobs of ``status`` a queue holds (a recount, never a request path).

        Indexed states: COUNT Queries per shard. Waiting and active: every entry of the queue's
        byQueue shards read and its item checked, which costs the queue's size in read units.
        """
        if status in INDEXED_STATES:
            return sum(self._count("byQueueState", partition) for partition in self._partitions("byQueueState", f"Q#{queue}#{status.value}"))
        total = 0
        cursor: str | None = None
        while True:
            jobs, cursor = self._listing("byQueue", f"Q#{queue}", limit=100, cursor=cursor, keep=lambda job: job.status is status, scan_entries=100)
            total += len(jobs)
            if cursor is None:
                return total

    def _count(self, index: str, partition: str) -> int:
        """How many items a GSI partition holds: Queries with Select=COUNT, paged (a recount, not a request path)."""
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": _INDEX_KEYS[index]},
            "ExpressionAttributeValues": {":k": {"S": partition}},
            "Select": "COUNT",
        }
        total = 0
        try:
            while True:
                out = self._ddb.query(**params)
                total += int(out.get("Count", 0))
                if not out.get("LastEvaluatedKey"):
                    return total
                params["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        except AWS_ERRORS as err:
            raise _unavailable(err) from err

    def _query(self, params: dict[str, Any], *, cursor_given: bool) -> dict[str, Any]:
        try:
            out: dict[str, Any] = self._ddb.query(**params)
        except AWS_ERRORS as err:
            mapped = _unavailable(err)
            if isinstance(mapped, Invalid) and cursor_given:  # a key no Query of this listing made
                raise Invalid("cursor is not valid for this listing") from err
            raise mapped from err
        return out

    def _query_page(self, params: dict[str, Any], cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One Query from ``cursor`` on: its items and the cursor of the page after, if any."""
        if cursor:
            params = {**params, "ExclusiveStartKey": decode_cursor(cursor)}
        try:
            out = self._ddb.query(**params)
        except AWS_ERRORS as err:
            mapped = _unavailable(err)
            if isinstance(mapped, Invalid) and cursor:  # a key no Query of this listing made
                raise Invalid("cursor is not valid for this listing") from err
            raise mapped from err
        last = out.get("LastEvaluatedKey")
        return out.get("Items", []), encode_cursor(last) if last else None

    # ---- processor targets -------------------------------------------------------
    def put_target(self, queue: str, job_type: str, target: AnyTarget, *, now: str) -> None:
        item = {
            "pk": {"S": f"QUEUE#{queue}"},
            "sk": {"S": f"TARGET#{job_type}"},
            "target": {"S": target.model_dump_json(by_alias=True)},
            "updatedAt": {"S": now},
        }
        try:
            self._ddb.put_item(TableName=self.table_name, Item=item)
        except AWS_ERRORS as err:
            raise _unavailable(err) from err

    def get_target(self, queue: str, job_type: str) -> AnyTarget | None:
        try:
            out = self._ddb.get_item(
                TableName=self.table_name, Key={"pk": {"S": f"QUEUE#{queue}"}, "sk": {"S": f"TARGET#{job_type}"}}
            )
        except AWS_ERRORS as err:
            raise _unavailable(err) from err
        item = out.get("Item")
        return parse_target(item["target"]["S"]) if item else None

    def list_targets(self, queue: str) -> dict[str, AnyTarget]:
        try:
            out = self._ddb.query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={":pk": {"S": f"QUEUE#{queue}"}, ":prefix": {"S": "TARGET#"}},
            )
        except AWS_ERRORS as err:
            raise _unavailable(err) from err
        return {
            item["sk"]["S"].removeprefix("TARGET#"): parse_target(item["target"]["S"]) for item in out["Items"]
        }

    def ping(self) -> None:
        try:
            self._ddb.describe_table(TableName=self.table_name)
        except AWS_ERRORS as err:
            raise _unavailable(err) from err


def _readable_jobs(items: list[dict[str, Any]]) -> list[Job]:
    """A listing shows every item it can read; one that cannot be read is logged, not a 500."""
    jobs = []
    for item in items:
        try:
            jobs.append(from_item(item))
        except (ValueError, TypeError):
            logger.error("unreadable job item left out of a listing", extra={"pk": str(item.get("pk", {}).get("S", ""))[:200]})
    return jobs


def _unavailable(err: Any) -> JobqError:
    """jobq's error for a DynamoDB error, by the one table (aws_errors.py)."""
    return domain_error(err, "DynamoDB (jobs)")
