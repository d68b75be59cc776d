"""What a running job's writes cost, billed as DynamoDB does (infra/local/meter.py's arithmetic on
template.yaml's jobs table): progress reports and log lines touch no index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.local.cfn import load_template
from infra.local.meter import TableSpec
from shared import lifecycle
from shared.adapters import clients, queues
from shared.adapters.job_repository import _job_key, _job_pk
from shared.catalog import ProcessorCatalog
from shared.clock import now_ms
from shared.jobs import Identity, JobService
from shared.models import JobCreate, QueuePolicy
from tests.unit.conftest import Stack

REPO = Path(__file__).resolve().parents[2]


def jobs_table() -> TableSpec:
    props = load_template(REPO / "template.yaml")["Resources"]["JobsTable"]["Properties"]
    return TableSpec.from_definition("JobsTable", props)


def raw_job(stack: Stack, user_id: str, job_id: str) -> dict[str, Any]:
    item: dict[str, Any] = clients.client("dynamodb").get_item(TableName=stack.table_name, Key=_job_key(user_id, job_id), ConsistentRead=True)["Item"]
    return item


def data_of(size: int) -> dict[str, str]:
    return {"blob": "x" * (size - len(json.dumps({"blob": ""}, separators=(",", ":"))))}


@pytest.mark.parametrize(("data_bytes", "table_units"), [(256, 1), (1024, 2)])
def test_a_progress_report_and_a_log_line_touch_no_index(stack: Stack, data_bytes: int, table_units: int) -> None:
    service = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    job, _ = service.create(JobCreate(queue="email-sending", type="send-email", data=data_of(data_bytes)), Identity("ann"))
    claimed = stack.store.claim("ann", job.job_id, now=now_ms(), lease_ms=30_000, token="lease-1", max_history=25)
    table = jobs_table()

    before = raw_job(stack, "ann", job.job_id)
    stack.store.apply(lifecycle.progress(claimed, token="lease-1", value={"step": 3, "of": 10}, message="halfway", now=now_ms()))
    after = raw_job(stack, "ann", job.job_id)

    # The job item only, billed by its whole size (its data included: a progress item of its own is not built)
    assert table.write_cost(before, after) == {"table": table_units}

    stack.store.append_log("ann", job.job_id, "fetched 3 of 10 pages", at_ms=now_ms(), attempt=1, expires_at=now_ms() // 1000 + 3600)
    (line,) = clients.client("dynamodb").query(
        TableName=stack.table_name,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :log)",
        ExpressionAttributeValues={":pk": {"S": _job_pk("ann", job.job_id)}, ":log": {"S": "LOG#"}},
    )["Items"]
    assert table.write_cost(None, line) == {"table": 1}  # an item of its own, whatever the job's size


def test_a_job_with_370_bytes_of_data_costs_one_unit_for_each_of_its_writes(stack: Stack) -> None:
    """Create, claim and completion each bill the whole job item: with default options it stays within
    1 KB (998 B when completed here; the default backoff, left out, would make it 1,032 B)."""
    service = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    job, _ = service.create(JobCreate(queue="email-sending", type="send-email", data=data_of(370)), Identity("ann"))
    table = jobs_table()
    created = raw_job(stack, "ann", job.job_id)
    claimed = stack.store.claim("ann", job.job_id, now=now_ms(), lease_ms=30_000, token="0123456789abcdef0123456789abcdef", max_history=25)
    active = raw_job(stack, "ann", job.job_id)
    done = stack.store.apply(
        lifecycle.complete(claimed, token=claimed.lease_token, result={"ok": True}, processing_ms=120, now=now_ms(), policy=QueuePolicy())
    )
    completed = raw_job(stack, "ann", job.job_id)

    assert done.backoff == job.backoff  # left out of the item at its default, read back the same
    assert table.write_cost(None, created) == {"table": 1, "byOwner": 1, "byQueue": 1}
    assert table.write_cost(created, active) == {"table": 1}
    assert table.write_cost(active, completed) == {"table": 1, "byQueueState": 1}
