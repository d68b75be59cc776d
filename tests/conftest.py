"""Suite-wide: on parallel workers (``python3 dev.py test`` runs pytest-xdist), the longest files start first.

xdist's ``--dist loadfile`` hands out whole files in collection order, so a long file collected
last (the soak, the hostile sweep, sam build) would run alone at the end while the other workers
sit idle. Here those files are moved to the front; the order within a file is kept, and a run in
one process (a single file, ``JOBQ_TEST_WORKERS=0``) keeps pytest's own order.
"""

from __future__ import annotations

import gc
import os

import pytest

# An xdist worker starts with COLUMNS=80 and LINES=24 in its environment, which a serial run
# (and a CI log) does not have; the jobq CLI reads COLUMNS once at import, so its tables would
# be cut at 80 columns on a worker only. Drop them: every process sees the same environment.
if os.environ.get("PYTEST_XDIST_WORKER") and (os.environ.get("COLUMNS"), os.environ.get("LINES")) == ("80", "24"):
    del os.environ["COLUMNS"], os.environ["LINES"]

# The garbage collector, on a test process's terms. A unit test provisions template.yaml in moto and
# drops it: millions of short-lived objects, so CPython's default thresholds (700, 10, 10) run a full
# collection over every module, model and botocore service definition loaded every few tests; that was
# a third of a unit file's CPU time (tests/unit/test_queues.py: 17.5 s -> 11.6 s). Collections run less
# often, and what is loaded by the end of collection (imports, the test modules) is frozen out of them.
# Nothing is kept that would otherwise be freed: cycles are still collected, later. No test depends on when.
gc.set_threshold(50_000, 20, 100)


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()


# The files that take longest (pytest --durations on the whole suite), longest first, in two runs: those
# before ``INTEGRATION_REST`` and the other files of tests/integration, then the long unit files. The
# integration files stay together because a worker's local stack lives only while it runs them
# (tests/integration/conftest.py, package scope): run back to back, each worker starts one stack and
# stops it for the unit files, instead of keeping it idle or restarting it between unit files.
LONGEST_FIRST = [
    "tests/integration/test_soak.py",
    "tests/integration/test_isolation.py",
    "tests/unit/test_packaging.py",
    "tests/static/test_static_checks.py",
    "tests/integration/test_dashboard_browser.py",
    "tests/integration/test_api_fuzz.py",
    INTEGRATION_REST := "tests/integration/",
    "tests/unit/test_flow_control.py",
    "tests/unit/test_isolation.py",
    "tests/unit/test_hostile_inputs.py",
    "tests/unit/test_seed_000.py",
    "tests/unit/test_realtime.py",
    "tests/unit/test_monitoring.py",
    "tests/unit/test_authorization_matrix.py",
]


def _rank(path: str, rank: dict[str, int]) -> int:
    if path in rank:
        return rank[path]
    return rank[INTEGRATION_REST] if path.startswith(INTEGRATION_REST) else len(rank)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: pytest's order
        return
    rank = {path: n for n, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: _rank(item.nodeid.split("::")[0], rank))  # stable: the rest keep their order
