"""The local stack's meter (infra/local/meter.py) bills as DynamoDB does, so bench/cost_per_job.py can be trusted."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.local.cfn import load_template
from infra.local.meter import IndexSpec, TableSpec, item_size, read_units, value_size, write_units
from infra.local.stack import LocalStack

REPO = Path(__file__).resolve().parents[2]


def jobs_table() -> TableSpec:
    """The jobs table exactly as template.yaml defines it: the meter must follow the template."""
    props = load_template(REPO / "template.yaml")["Resources"]["JobsTable"]["Properties"]
    return TableSpec.from_definition("JobsTable", props)


def job_item(table: TableSpec, status: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """An item in every index of ``table``, whose status-derived index keys carry ``status``."""
    item: dict[str, Any] = {table.hash_key: {"S": "JOB#a"}, "status": {"S": status}}
    if table.range_key:
        item[table.range_key] = {"S": "JOB"}
    for index in table.indexes:
        for key in (index.hash_key, index.range_key):
            if key and key not in item:
                item[key] = {"S": f"{key}#{status}" if "status" in key.lower() else f"{key}#fixed"}
    return {**item, **(extra or {})}


# ---- sizes and units ------------------------------------------------------------------------------


def test_item_size_counts_names_and_values_as_dynamodb_documents() -> None:
    assert item_size({"pk": {"S": "JOB#1"}}) == 2 + 5
    assert item_size({"n": {"N": "12345"}}) == 1 + 4  # 5 significant digits: 3 bytes + 1
    assert item_size({"n": {"N": "-0.00120"}}) == 1 + 2  # leading and trailing zeros do not count: "12"
    assert item_size({"ok": {"BOOL": True}, "x": {"NULL": True}}) == 3 + 2
    assert value_size({"M": {"a": {"S": "xy"}}}) == 3 + 1 + 1 + 2  # map overhead, element overhead, name, value
    assert value_size({"L": [{"S": "a"}, {"N": "1"}]}) == 3 + (1 + 1) + (1 + 2)
    assert value_size({"B": "AAEC"}) == 3  # the raw bytes, not the base64 text
    assert item_size({"é": {"S": "é"}}) == 4  # UTF-8 bytes
    assert item_size(None) == 0


def test_write_units_round_each_write_up_to_whole_kilobytes() -> None:
    assert [write_units(n) for n in (0, 1, 1024, 1025, 2048, 100_000)] == [1, 1, 1, 2, 2, 98]


def test_read_units_round_up_to_4_kb_and_halve_when_eventually_consistent() -> None:
    assert read_units(100, consistent=True) == 1
    assert read_units(4097, consistent=True) == 2
    assert read_units(4097, consistent=False) == 1
    assert read_units(0, consistent=False) == 0.5


# ---- what a write costs in the table and its indexes ----------------------------------------------


def test_creating_a_job_writes_the_table_and_every_index_once() -> None:
    table = jobs_table()
    cost = table.write_cost(None, job_item(table, "waiting"))
    assert cost == {"table": 1, **{index.name: 1 for index in table.indexes}}


def test_a_status_change_is_a_delete_and_a_put_in_indexes_keyed_by_status() -> None:
    table = jobs_table()
    cost = table.write_cost(job_item(table, "waiting"), job_item(table, "active"))
    for index in table.indexes:
        keyed_by_status = any(k and "status" in k.lower() for k in (index.hash_key, index.range_key))
        holds_status = index.projection == "ALL" or "status" in index.non_key_attributes
        # an index that projects the status holds the change too: one update there
        assert cost.get(index.name, 0) == (2 if keyed_by_status else 1 if holds_status else 0), index.name
    assert cost["table"] == 1


def test_an_item_over_a_kilobyte_costs_its_size_in_every_index_it_changes() -> None:
    by_status = IndexSpec("byStatus", "statusKey", "created", "ALL")
    by_owner = IndexSpec("byOwner", "owner", "created", "ALL")
    table = TableSpec("T", "pk", None, (by_status, by_owner))
    base = {"pk": {"S": "a"}, "owner": {"S": "u"}, "created": {"S": "1"}, "data": {"S": "x" * 2000}}
    before = {**base, "statusKey": {"S": "active"}}  # 2,036 bytes: 2 units
    after = {**base, "statusKey": {"S": "completed"}, "result": {"S": "y" * 1000}}  # 3,045 bytes: 3 units
    assert (item_size(before), item_size(after)) == (2036, 3045)
    assert table.write_cost(before, after) == {
        "table": 3, "byOwner": 3,  # the larger of before and after
        "byStatus": 2 + 3,  # the old entry deleted, the new one put
    }


def test_transactional_writes_cost_twice_on_the_table() -> None:
    table = TableSpec("T", "pk", "sk")
    assert table.write_cost(None, {"pk": {"S": "a"}, "sk": {"S": "b"}}, transactional=True) == {"table": 2}


def test_projections_decide_which_changes_an_index_pays_for() -> None:
    keys_only = IndexSpec.from_definition(
        {"IndexName": "k", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}], "Projection": {"ProjectionType": "KEYS_ONLY"}}
    )
    include = IndexSpec.from_definition(
        {
            "IndexName": "i",
            "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}, {"AttributeName": "r", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["shown"]},
        }
    )
    table = TableSpec("T", "pk", None, (keys_only, include))
    base = {"pk": {"S": "1"}, "g": {"S": "G"}, "r": {"S": "R"}, "shown": {"S": "a"}, "hidden": {"S": "a"}}

    # an attribute no index projects: the table only
    assert table.write_cost(base, {**base, "hidden": {"S": "b"}}) == {"table": 1}
    # an attribute INCLUDE projects: that index once
    assert table.write_cost(base, {**base, "shown": {"S": "b"}}) == {"table": 1, "i": 1}
    # a key both share: a delete and a put in each
    assert table.write_cost(base, {**base, "g": {"S": "H"}}) == {"table": 1, "k": 2, "i": 2}
    # the range key leaves: the item leaves the INCLUDE index (one delete) and stays in KEYS_ONLY
    gone = {k: v for k, v in base.items() if k != "r"}
    assert table.write_cost(base, gone) == {"table": 1, "i": 1}
    # a delete: the item leaves both indexes
    assert table.write_cost(base, None) == {"table": 1, "k": 1, "i": 1}


# ---- the hooks in moto ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def metered_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    state = tmp_path_factory.mktemp("meter")
    stack = LocalStack(api_port=None, consumers=False, stack_name=f"jobq-meter-{uuid.uuid4().hex[:6]}", state_dir=state, meter=state / "meter.json")
    with stack:
        yield stack
    assert json.loads((state / "meter.json").read_text())["requests"], "the totals are written at stop"


def test_the_meter_counts_the_writes_moto_applies_by_the_templates_indexes(metered_stack: LocalStack) -> None:
    assert metered_stack.meter is not None and metered_stack.provisioned is not None
    name = metered_stack.provisioned.resources["JobsTable"].ref
    ddb = boto3.client("dynamodb")
    table = jobs_table()
    metered_stack.meter.reset()

    waiting, active = job_item(table, "waiting"), job_item(table, "active")
    ddb.put_item(TableName=name, Item=waiting)
    ddb.put_item(TableName=name, Item=active)  # overwrites it: the status keys move
    ddb.get_item(TableName=name, Key={k: active[k] for k in table.keys}, ConsistentRead=True)

    snapshot = metered_stack.meter.snapshot()
    requests = {(r["origin"], r["operation"]): r["count"] for r in snapshot["requests"] if r["service"] == "dynamodb"}
    assert requests == {("jobq", "PutItem"): 2, ("jobq", "GetItem"): 1}
    units: Counter[str] = Counter()
    for w in snapshot["writeUnits"]:
        units[w["target"]] += w["units"]
    assert units == Counter(table.write_cost(None, waiting)) + Counter(table.write_cost(waiting, active))
    assert [r["units"] for r in snapshot["readUnits"]] == [1.0]
