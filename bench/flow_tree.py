"""What a flow costs: a tree created with POST /flows on the local stack, run to its root's end.

    .venv/bin/python bench/flow_tree.py                       # root -> 9 parents -> 110 leaves each (1,000 jobs)
    .venv/bin/python bench/flow_tree.py --parents 4 --leaves 10

Starts the local stack with its meter (as bench/cost_per_job.py does), registers an HTTP target on
127.0.0.1 that answers 200 at once, and measures two workloads on the same queue: the tree's jobs
as plain jobs (POST /jobs/bulk, no flow), then the tree (POST /flows) until its root completed.
The difference in DynamoDB write units, divided by the children, is what being a flow child costs
(its edge, its count against the parent, the parents' counters and wake-ups). Only 127.0.0.1 is
contacted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cost_per_job import StackProcess, Target, _settled  # noqa: E402

QUEUE = "email-sending"
TYPE = "flow-bench"


def units(snapshot: dict[str, Any]) -> tuple[float, dict[str, float]]:
    by_op: dict[str, float] = defaultdict(float)
    for w in snapshot["writeUnits"]:
        by_op[w["operation"]] += w["units"]
    return sum(by_op.values()), dict(by_op)


def reads(snapshot: dict[str, Any]) -> float:
    return float(sum(r["units"] for r in snapshot["readUnits"]))


def plain_jobs(stack: StackProcess, control: httpx.Client, target: Target, count: int) -> dict[str, Any]:
    with target.lock:
        target.seen.clear()
    assert control.post("/_local/meter/reset").status_code == 200
    with stack.client("bench") as user:
        for start in range(0, count, 100):
            body = {"jobs": [{"queue": QUEUE, "type": TYPE, "data": {"n": i}} for i in range(start, min(count, start + 100))]}
            response = user.post("/jobs/bulk", json=body)
            assert response.status_code == 200 and response.json()["data"]["failed"] == 0, response.text[:300]
    deadline = time.monotonic() + 900
    while len(target.seen) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return _settled(control, timeout=600)


def flow(stack: StackProcess, control: httpx.Client, parents: int, leaves: int) -> tuple[dict[str, Any], float, float, str]:
    tree = {"queue": QUEUE, "type": TYPE, "data": {"n": 0},
            "children": [{"queue": QUEUE, "type": TYPE, "data": {"n": p}, "children": [{"queue": QUEUE, "type": TYPE, "data": {"n": i}} for i in range(leaves)]}
                         for p in range(parents)]}  # fmt: skip
    assert control.post("/_local/meter/reset").status_code == 200
    began = time.monotonic()
    with stack.client("bench") as user:
        response = user.post("/flows", json=tree)
        assert response.status_code == 201, response.text[:300]
        created = time.monotonic() - began
        root = response.json()["data"]["flowId"]
        deadline = time.monotonic() + 1800
        status = ""
        while time.monotonic() < deadline:
            status = user.get(f"/jobs/{root}").json()["data"]["status"]
            if status in ("completed", "failed"):
                break
            time.sleep(0.5)
    finished = time.monotonic() - began
    return _settled(control, timeout=600), created, finished, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parents", type=int, default=9)
    parser.add_argument("--leaves", type=int, default=110, help="leaves per parent")
    args = parser.parse_args()
    nodes = 1 + args.parents + args.parents * args.leaves
    children = nodes - 1
    target = Target()
    with tempfile.TemporaryDirectory(prefix="jobq-flow-") as state:
        stack = StackProcess(Path(state))
        try:
            control = httpx.Client(base_url=stack.api_url, timeout=60)
            with stack.client("root", admin=True) as admin:
                response = admin.put(f"/queues/{QUEUE}/processors/{TYPE}", json={"kind": "http", "url": target.url, "timeoutSeconds": 10})
                assert response.status_code in (200, 201), response.text
                # Both workloads within a minute: past the default rate quota (UserJobsPerMinute), which a flow counts against.
                assert admin.put("/quotas/bench", json={"jobsPerMinute": 100_000}).status_code == 200
                for name in (q["name"] for q in admin.get("/queues").json()["data"] if q["name"] != QUEUE):
                    admin.post(f"/queues/{name}/pause")
            plain = plain_jobs(stack, control, target, nodes)
            tree, created, finished, status = flow(stack, control, args.parents, args.leaves)
        finally:
            stack.stop()
            target.close()
    plain_units, plain_ops = units(plain)
    tree_units, tree_ops = units(tree)
    print(f"== a tree of {nodes} jobs (root -> {args.parents} parents -> {args.leaves} leaves each) on {QUEUE}, HTTP target on 127.0.0.1")
    print(f"   POST /flows answered in {created:.1f} s; the root {status} after {finished:.1f} s")
    print(f"   DynamoDB write units: {nodes} plain jobs {plain_units:,.0f} ({plain_units / nodes:.2f} a job); "
          f"the tree {tree_units:,.0f} ({tree_units / nodes:.2f} a job)")
    print(f"   a flow child costs {(tree_units - plain_units) / children:.2f} write units more than a plain job "
          f"(its edge, its count, the parents' counters and wake-ups)")
    print(f"   read units: plain {reads(plain):,.1f}, the tree {reads(tree):,.1f} ({(reads(tree) - reads(plain)) / children:.2f} more a child)")
    print("   by operation, plain: " + ", ".join(f"{op} {v:,.0f}" for op, v in sorted(plain_ops.items(), key=lambda kv: -kv[1])))
    print("   by operation, tree:  " + ", ".join(f"{op} {v:,.0f}" for op, v in sorted(tree_ops.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
