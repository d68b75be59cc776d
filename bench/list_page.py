"""How one page of GET /jobs/user/{id} scales with the table: 1,000 vs 20,000 jobs over 50 users.

Runs the real API handler (Mangum + FastAPI + JobStore) on moto in process, provisioned
from template.yaml. Prints, for each table size: the time of one page (median of 20),
the DynamoDB calls it made, and the items DynamoDB evaluated (ScannedCount) for it.

    .venv/bin/python bench/list_page.py [--users 50] [--sizes 1000,20000] [--limit 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.update(
    AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_LOG_LEVEL="ERROR", JOBQ_QUEUES_PARAMETER_PATH="/jobq/bench/queues/",
)
os.environ.pop("AWS_ENDPOINT_URL", None)

from moto import mock_aws  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--sizes", default="1000,20000")
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with mock_aws():
        from infra.local.provision import Provisioner

        stack = Provisioner(endpoint_url=None).provision(  # type: ignore[arg-type]
            ROOT / "template.yaml", "bench", {"JwtIssuer": "https://issuer.example.com", "JwtAudience": "jobq"}
        )
        os.environ["JOBQ_TABLE_NAME"] = stack.resources["JobsTable"].ref
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"

        from api.main import handler
        from shared.adapters import clients
        from shared.adapters.job_repository import JobStore
        from shared.clock import iso, now_ms
        from shared.models import Job
        from shared.status import JobStatus
        from tests.unit.api_events import http_event, user
        from tests.unit.conftest import FakeLambdaContext

        store = JobStore(os.environ["JOBQ_TABLE_NAME"])
        ddb = clients.client("dynamodb")
        calls: list[str] = []
        scanned: list[int] = []
        in_ddb: list[float] = []

        def before(model, **_):  # type: ignore[no-untyped-def]
            calls.append(model.name)
            in_ddb.append(-time.perf_counter())

        def after(parsed, **_):  # type: ignore[no-untyped-def]
            in_ddb[-1] += time.perf_counter()
            scanned.append(int(parsed.get("ScannedCount", 0)))

        ddb.meta.events.register("before-call.dynamodb.*", before)
        ddb.meta.events.register("after-call.dynamodb.*", after)

        filled = 0
        base = now_ms() - 10_000_000
        print(f"users={args.users} page limit={args.limit}")
        print(f"{'jobs':>7} {'page ms':>9} {'jobq ms':>9} {'moto ms':>9} {'DynamoDB calls':>15} {'items evaluated':>16}")
        results = {}
        for size in sizes:
            batch: list[Job] = []
            for n in range(filled, size):
                at = iso(base + n * 100)
                batch.append(
                    Job(job_id=str(uuid.uuid4()), queue="email-sending", type="send-email", user_id=f"user-{n % args.users}",
                        status=JobStatus.COMPLETED if n % 3 else JobStatus.WAITING, data={"n": n}, created_at=at, updated_at=at)
                )
            store.create_many(batch)
            filled = size
            timings, outside = [], []
            for _ in range(20):
                calls.clear()
                scanned.clear()
                in_ddb.clear()
                started = time.perf_counter()
                response = handler(http_event("GET", "/jobs/user/user-7", claims=user("user-7"), query=f"limit={args.limit}"), FakeLambdaContext())
                timings.append((time.perf_counter() - started) * 1000)
                outside.append(timings[-1] - sum(in_ddb) * 1000)
                assert response["statusCode"] == 200, response["body"]
                assert len(json.loads(response["body"])["data"]["jobs"]) == args.limit
            total, own = statistics.median(timings), statistics.median(outside)
            results[size] = (total, own)
            print(f"{size:>7} {total:>9.1f} {own:>9.1f} {total - own:>9.1f} {len(calls):>15} {sum(scanned):>16}   ({', '.join(calls)})")
        if len(sizes) >= 2:
            (t0, o0), (t1, o1) = results[sizes[0]], results[sizes[-1]]
            print(f"ratio {sizes[-1]} / {sizes[0]} jobs: DynamoDB calls and items evaluated 1.00; jobq's own time {o1 / o0:.2f}; "
                  f"end to end {t1 / t0:.2f} (moto answers a Query by walking the whole table; DynamoDB reads only the page)")


if __name__ == "__main__":
    main()
