"""Flow-control counters in DynamoDB (the rules are shared/flow_control.py's). Small items, O(1) writes per job.

    queue rate window   pk=LIMIT#<q>#Q             sk=W#<window start ms>   n (starts), expiresAt
    key rate window     pk=LIMIT#<q>#G#<key>       sk=W#<window start ms>   n, expiresAt
    key slots + counts  pk=LIMIT#<q>#KEYS#<shard>  sk=G#<key>               h {token: lease until ms}, n (started),
                                                                            last (ms), expiresAt (idle TTL)
    keepLastIfActive    pk=LIMIT#<q>#KEYS#<shard>  sk=X#<dedup digest>      t (lease token), u (lease until ms), expiresAt,
                                                                            w (the waiting job's message body, to wake it)

A window counter is one ``ADD n 1`` that returns the new value: the caller decides from it,
so a start never needs a read. A key's item holds the lease of each of its active jobs (at
most ``maxActive`` entries, a few dozen bytes each); taking a slot is one conditional write
(``size(h) < max``), giving it back one more; a lease that ran out (its consumer died) is
removed by the next claim that finds the key full. The key items of a queue sit in
``KEY_SHARDS`` partitions, so ``GET /queues/{name}/groups`` is that many Queries, never a Scan.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors
from shared.errors import Conflict, JobqError
from shared.flow_control import EXCLUSIVE_SLOT_PREFIX, SLOTS_IDLE_TTL_SECONDS
from shared.observability import logger

KEY_SHARDS = 8


@dataclass(frozen=True)
class KeyCounts:
    key: str
    active: int
    started: int
    last_started_ms: int | None


def _queue_pk(queue: str, key: str | None) -> str:
    return f"LIMIT#{queue}#Q" if key is None else f"LIMIT#{queue}#G#{key}"


def _keys_pk(queue: str, shard: int) -> str:
    return f"LIMIT#{queue}#KEYS#{shard}"


def _shard(key: str) -> int:
    return zlib.crc32(key.encode()) % KEY_SHARDS


class DynamoLimits:
    """``shared.flow_control.Limits`` on the jobs table."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @staticmethod
    def _ddb() -> Any:
        return clients.client("dynamodb")

    # ---- rate windows ------------------------------------------------------------------------------------
    def take_window(self, queue: str, key: str | None, window_start: int, ttl: int) -> int:
        with aws_errors(f"cannot count a start on queue {queue}'s rate limit"):
            out = self._ddb().update_item(
                TableName=self.table_name,
                Key={"pk": {"S": _queue_pk(queue, key)}, "sk": {"S": f"W#{window_start}"}},
                UpdateExpression="ADD n :one SET expiresAt = :ttl",
                ExpressionAttributeValues={":one": {"N": "1"}, ":ttl": {"N": str(ttl)}},
                ReturnValues="UPDATED_NEW",
            )
        return int(out["Attributes"]["n"]["N"])

    def window_count(self, queue: str, key: str | None, window_start: int) -> int:
        with aws_errors(f"cannot read queue {queue}'s rate window"):
            out = self._ddb().get_item(
                TableName=self.table_name, Key={"pk": {"S": _queue_pk(queue, key)}, "sk": {"S": f"W#{window_start}"}}, ConsistentRead=True
            )
        return int(out.get("Item", {}).get("n", {}).get("N", 0))

    # ---- a key's slots --------------------------------------------------------------------------------------
    def _slots_key(self, queue: str, key: str) -> dict[str, Any]:
        # keepLastIfActive's exclusive slots ("#<digest>") sort under X#, out of the groups listing (begins_with G#).
        sk = f"X{key}" if key.startswith(EXCLUSIVE_SLOT_PREFIX) else f"G#{key}"
        return {"pk": {"S": _keys_pk(queue, _shard(key))}, "sk": {"S": sk}}

    def take_slot(self, queue: str, key: str, token: str, until_ms: int, max_active: int | None, now_ms: int) -> bool:
        """Hold one of the key's slots for ``token`` until ``until_ms``; False when ``max_active`` are held."""
        ttl = max(until_ms // 1000, now_ms // 1000) + SLOTS_IDLE_TTL_SECONDS
        if key.startswith(EXCLUSIVE_SLOT_PREFIX):
            return self._take_exclusive(queue, key, token, until_ms, now_ms, ttl)
        condition = "attribute_exists(h)" if max_active is None else "attribute_exists(h) AND size(h) < :max"
        values: dict[str, Any] = {":until": {"N": str(until_ms)}, ":now": {"N": str(now_ms)}, ":one": {"N": "1"}, ":ttl": {"N": str(ttl)}}
        if max_active is not None:
            values[":max"] = {"N": str(max_active)}
        what = f"cannot take a slot of group {key} on queue {queue}"
        for _ in range(4):
            try:
                with aws_errors(what):
                    self._ddb().update_item(
                        TableName=self.table_name,
                        Key=self._slots_key(queue, key),
                        UpdateExpression="SET h.#t = :until, #last = :now, expiresAt = :ttl ADD n :one",
                        ConditionExpression=condition,
                        ExpressionAttributeNames={"#t": token, "#last": "last"},
                        ExpressionAttributeValues=values,
                    )
                return True
            except Conflict:
                pass  # full, or no item yet
            if not self._make_room(queue, key, now_ms, what):
                return False
        return False

    def _take_exclusive(self, queue: str, key: str, token: str, until_ms: int, now_ms: int, ttl: int) -> bool:
        """keepLastIfActive's one slot: a single lease on the item, so taking it (a new key, or one whose
        lease ran out included) is always one conditional write and never a read."""
        try:
            with aws_errors(f"cannot take the deduplication key's slot on queue {queue}"):
                self._ddb().update_item(
                    TableName=self.table_name,
                    Key=self._slots_key(queue, key),
                    UpdateExpression="SET t = :token, u = :until, expiresAt = :ttl REMOVE w",  # w: the waiter, now this job
                    ConditionExpression="attribute_not_exists(t) OR u <= :now",
                    ExpressionAttributeValues={":token": {"S": token}, ":until": {"N": str(until_ms)}, ":now": {"N": str(now_ms)}, ":ttl": {"N": str(ttl)}},
                )
        except Conflict:
            return False  # another job of the key is active
        return True

    def _make_room(self, queue: str, key: str, now_ms: int, what: str) -> bool:
        """The key item is missing, or full: create it, or drop the leases that ran out. True if worth another try."""
        with aws_errors(what):
            item = self._ddb().get_item(TableName=self.table_name, Key=self._slots_key(queue, key), ConsistentRead=True).get("Item")
        if item is None or "h" not in item:
            try:
                with aws_errors(what):
                    self._ddb().put_item(
                        TableName=self.table_name,
                        Item={**self._slots_key(queue, key), "h": {"M": {}}, "n": {"N": "0"}, "expiresAt": {"N": str(now_ms // 1000 + SLOTS_IDLE_TTL_SECONDS)}},
                        ConditionExpression="attribute_not_exists(pk)",
                    )
            except Conflict:
                pass  # another consumer created it first
            return True
        expired = [(t, v["N"]) for t, v in item["h"]["M"].items() if int(v["N"]) <= now_ms][:50]
        if not expired:
            return False
        names = {f"#e{i}": t for i, (t, _) in enumerate(expired)}
        values = {f":e{i}": {"N": v} for i, (_, v) in enumerate(expired)}
        try:
            with aws_errors(what):
                self._ddb().update_item(
                    TableName=self.table_name,
                    Key=self._slots_key(queue, key),
                    UpdateExpression="REMOVE " + ", ".join(f"h.#e{i}" for i in range(len(expired))),
                    ConditionExpression=" AND ".join(f"h.#e{i} = :e{i}" for i in range(len(expired))),
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
        except Conflict:
            pass  # another claim took them back first
        logger.warning("expired slots taken back", extra={"queue": queue, "group": key, "slots": len(expired)})
        return True

    def wait_on_slot(self, queue: str, key: str, message: str) -> None:
        try:
            with aws_errors(f"cannot note a job waiting on queue {queue}"):
                self._ddb().update_item(
                    TableName=self.table_name,
                    Key=self._slots_key(queue, key),
                    UpdateExpression="SET w = :w",
                    ConditionExpression="attribute_exists(t)",  # held still: else the job's next look takes the slot
                    ExpressionAttributeValues={":w": {"S": message}},
                )
        except JobqError:
            pass  # not woken then: the job looks again after its wait

    def release_slot(self, queue: str, key: str, token: str) -> str | None:
        exclusive = key.startswith(EXCLUSIVE_SLOT_PREFIX)
        try:
            with aws_errors(f"cannot give back a slot of group {key} on queue {queue}"):
                if exclusive:  # only its own lease: one that ran out may be another job's by now
                    out = self._ddb().update_item(
                        TableName=self.table_name,
                        Key=self._slots_key(queue, key),
                        UpdateExpression="REMOVE t, u, w",
                        ConditionExpression="t = :token",
                        ExpressionAttributeValues={":token": {"S": token}},
                        ReturnValues="ALL_OLD",
                    )
                    waiter = out.get("Attributes", {}).get("w", {}).get("S")
                    return waiter if isinstance(waiter, str) else None
                self._ddb().update_item(
                    TableName=self.table_name,
                    Key=self._slots_key(queue, key),
                    UpdateExpression="REMOVE h.#t",
                    ConditionExpression="attribute_exists(h)",
                    ExpressionAttributeNames={"#t": token},
                )
        except Conflict:
            if not exclusive:
                logger.warning("a group slot was not given back; it expires with its lease", extra={"queue": queue, "group": key})
        except JobqError as err:
            # The slot stays held until its lease runs out; the next claim that finds the key full takes it back.
            logger.warning("a group slot was not given back; it expires with its lease", extra={"queue": queue, "group": key, "error": err.message})
        return None

    # ---- GET /queues/{name}/groups -------------------------------------------------------------------------
    def keys(self, queue: str, now_ms: int, *, per_shard: int = 200) -> list[KeyCounts]:
        """The queue's keys seen lately (the slots items), from every shard; active counts only leases still running."""
        found: list[KeyCounts] = []
        for shard in range(KEY_SHARDS):
            with aws_errors(f"cannot read the groups of queue {queue}"):
                out = self._ddb().query(
                    TableName=self.table_name,
                    KeyConditionExpression="pk = :pk AND begins_with(sk, :g)",
                    ExpressionAttributeValues={":pk": {"S": _keys_pk(queue, shard)}, ":g": {"S": "G#"}},
                    Limit=per_shard,
                )
            for item in out.get("Items", []):
                leases = item.get("h", {}).get("M", {})
                found.append(
                    KeyCounts(
                        key=item["sk"]["S"][2:],
                        active=sum(1 for v in leases.values() if int(v["N"]) > now_ms),
                        started=int(item.get("n", {}).get("N", 0)),
                        last_started_ms=int(item["last"]["N"]) if "last" in item else None,
                    )
                )
        return found


__all__ = ["KEY_SHARDS", "DynamoLimits", "KeyCounts"]
