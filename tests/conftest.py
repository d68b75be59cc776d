"""Suite-wide: on parallel workers (``python3 dev.py test`` runs pytest-xdist), the longest files start first.

xdist's ``--dist loadfile`` hands out whole files in collection order, so a long file collected
last (the soak, the hostile sweep, sam build) would run alone at the end while the other workers
sit idle. Here those files are moved to the front; the order within a file is kept, and a run in
one process (a single file, ``JOBQ_TEST_WORKERS=0``) keeps pytest's own order.
"""

from __future__ import annotations

import os

import pytest

# An xdist worker starts with COLUMNS=80 and LINES=24 in its environment, which a serial run
# (and a CI log) does not have; the jobq CLI reads COLUMNS once at import, so its tables would
# be cut at 80 columns on a worker only. Drop them: every process sees the same environment.
if os.environ.get("PYTEST_XDIST_WORKER") and (os.environ.get("COLUMNS"), os.environ.get("LINES")) == ("80", "24"):
    del os.environ["COLUMNS"], os.environ["LINES"]

# The files that take longest (pytest --durations on the whole suite), longest first.
LONGEST_FIRST = [
    "tests/integration/test_soak.py",
    "tests/integration/test_isolation.py",
    "tests/unit/test_isolation.py",
    "tests/unit/test_packaging.py",
    "tests/static/test_static_checks.py",
    "tests/integration/test_dashboard_browser.py",
    "tests/unit/test_seed_000.py",
    "tests/integration/test_api_fuzz.py",
    "tests/unit/test_realtime.py",
    "tests/unit/test_monitoring.py",
    "tests/unit/test_authorization_matrix.py",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: pytest's order
        return
    rank = {path: n for n, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order
