"""The fault soak (bench/soak.py) at 500 jobs: every invariant of issue 17 holds under injected faults.

It runs in a process of its own (the soak starts the local stack in-process and hooks the shared
clients), and prints its summary table, so a failure in CI shows which jobs broke which invariant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOBS = int(os.environ.get("JOBQ_SOAK_JOBS", "500"))


@pytest.mark.timeout(1200)
def test_every_invariant_holds_for_500_jobs_under_injected_faults(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBQ_"))}
    done = subprocess.run(
        # Every fault on, stream batches redelivered with other contents included (counters are exactly once per record).
        [sys.executable, "bench/soak.py", "--jobs", str(JOBS), "--users", "50", "--drain-seconds", "600", "--json", str(report_path)],
        cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=1150,
    )
    print(done.stdout[-20000:])
    assert report_path.exists(), f"the soak did not finish (rc {done.returncode}):\n{done.stderr[-5000:]}"
    report = json.loads(report_path.read_text())
    assert report["jobs"]["told about"] >= JOBS * 0.9, "most creates must succeed despite the faults (clients retry)"
    assert sum(report["faults"].values()) > 0 and len(report["faults"]) >= 8, f"faults injected: {report['faults']}"
    assert report["figures"]["drained"], "jobs left unfinished after the drain"
    assert report["violations"] == {}, "\n".join(f"{name}: {items[:20]}" for name, items in report["violations"].items())
