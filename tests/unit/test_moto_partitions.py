"""The local stack's moto reads one partition per Query (infra/local/moto_fixes.py, fix 7).

The partition map must never miss an item: every query here is compared with what a full scan
says the partition holds, after random puts, updates that move an item between index
partitions or out of the index, deletes, transactions that commit and transactions that fail.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local import moto_fixes

moto_fixes.apply()

TABLE = "partitions"
GROUPS = [f"G#{i}" for i in range(4)]


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "g", "gs")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "byGroup",
                    "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}, {"AttributeName": "gs", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _query_all(ddb: Any, forward: bool, **kwargs: Any) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    start: dict[str, Any] | None = None
    while True:
        page = ddb.query(
            TableName=TABLE, Limit=7, ScanIndexForward=forward, **kwargs, **({"ExclusiveStartKey": start} if start else {})
        )
        keys += [(i["pk"]["S"], i["sk"]["S"]) for i in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            return keys


def _scan(ddb: Any) -> list[dict[str, Any]]:
    return ddb.scan(TableName=TABLE)["Items"]  # type: ignore[no-any-return]


def _assert_every_partition_matches_a_scan(ddb: Any) -> None:
    items = _scan(ddb)
    for group in GROUPS:
        expected = sorted(
            (i["gs"]["S"], i["pk"]["S"], i["sk"]["S"]) for i in items if i.get("g", {}).get("S") == group and "gs" in i
        )
        for forward in (True, False):
            got = _query_all(
                ddb, forward, IndexName="byGroup", KeyConditionExpression="g = :g", ExpressionAttributeValues={":g": {"S": group}}
            )
            want = [(pk, sk) for _, pk, sk in (expected if forward else expected[::-1])]
            assert got == want, f"index partition {group} ({'forward' if forward else 'backward'})"
    for pk in sorted({i["pk"]["S"] for i in items})[:5]:
        want = sorted((i["pk"]["S"], i["sk"]["S"]) for i in items if i["pk"]["S"] == pk)
        got = _query_all(ddb, True, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": pk}})
        assert got == want, f"table partition {pk}"


def _random_write(ddb: Any, rng: random.Random, n: int) -> None:
    pk, sk = f"P{rng.randrange(30)}", f"S{rng.randrange(3)}"
    key = {"pk": {"S": pk}, "sk": {"S": sk}}
    choice = rng.random()
    if choice < 0.35:
        item = {**key, "n": {"N": str(n)}}
        if rng.random() < 0.8:
            item |= {"g": {"S": rng.choice(GROUPS)}, "gs": {"S": f"{n:06d}"}}
        ddb.put_item(TableName=TABLE, Item=item)
    elif choice < 0.6:  # move to another index partition
        ddb.update_item(
            TableName=TABLE,
            Key=key,
            UpdateExpression="SET g = :g, gs = :s",
            ExpressionAttributeValues={":g": {"S": rng.choice(GROUPS)}, ":s": {"S": f"{n:06d}"}},
        )
    elif choice < 0.7:  # out of the index
        ddb.update_item(TableName=TABLE, Key=key, UpdateExpression="REMOVE g")
    elif choice < 0.8:
        ddb.delete_item(TableName=TABLE, Key=key)
    else:  # a transaction of two writes; a third of them fail on their condition and must change nothing
        other = {"pk": {"S": f"P{rng.randrange(30)}"}, "sk": {"S": "T"}}
        fail = rng.random() < 0.33
        try:
            ddb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": TABLE, "Item": {**other, "g": {"S": rng.choice(GROUPS)}, "gs": {"S": f"{n:06d}"}}}},
                    {
                        "Update": {
                            "TableName": TABLE,
                            "Key": key,
                            "UpdateExpression": "SET g = :g, gs = :s",
                            "ExpressionAttributeValues": {":g": {"S": rng.choice(GROUPS)}, ":s": {"S": f"{n:06d}"}},
                            **({"ConditionExpression": "attribute_exists(nothing_has_this)"} if fail else {}),
                        }
                    },
                ]
            )
        except ddb.exceptions.TransactionCanceledException:
            assert fail


def test_every_query_reads_exactly_its_partition_under_random_writes(ddb: Any) -> None:
    rng = random.Random(7)
    _assert_every_partition_matches_a_scan(ddb)  # builds the map on an empty table
    for n in range(600):
        _random_write(ddb, rng, n)
        if n % 25 == 0:
            _assert_every_partition_matches_a_scan(ddb)
    _assert_every_partition_matches_a_scan(ddb)
    assert any(i.get("g") for i in _scan(ddb)), "the writes left items in the index"


def test_queries_beside_concurrent_writers_end_consistent(ddb: Any) -> None:
    # Writers on threads, a reader querying all the while (refiling while items are written).
    stop = threading.Event()
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for n in range(150):
                _random_write(ddb, rng, seed * 1000 + n)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def read() -> None:
        try:
            while not stop.is_set():
                for group in GROUPS:
                    _query_all(
                        ddb,
                        False,
                        IndexName="byGroup",
                        KeyConditionExpression="g = :g",
                        ExpressionAttributeValues={":g": {"S": group}},
                    )
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(seed,)) for seed in range(1, 4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert errors == []
    _assert_every_partition_matches_a_scan(ddb)
