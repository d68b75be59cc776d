#!/usr/bin/env python3
"""The two commands of jobq's README, on a machine with only Python and git.

    python3 dev.py local   # the local stack on 127.0.0.1: moto, the API, the consumers
    python3 dev.py test    # the whole test suite (what CI runs)
    python3 dev.py token --user alice [--admin]   # a token the local stack accepts

Both create ./.venv and install requirements-dev.txt and the project itself (editable, so
`.venv/bin/jobq` exists) into it first (again only when the requirements files or
pyproject.toml change), then run inside it. `test` also keeps checkov in ./.venv/checkov
(requirements-checkov.txt), and installs Debian's chromium and chromium-driver for the
dashboard's browser test when they are missing (apt-get, as root). Extra arguments are
passed on (`python3 dev.py test -k consumer`, `python3 dev.py local --port 9000`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".requirements.sha256"
REQUIREMENTS = [ROOT / "requirements.txt", ROOT / "requirements-dev.txt", ROOT / "pyproject.toml"]
# checkov conflicts with .venv's boto3 and packaging (requirements-checkov.txt says how): its own venv.
CHECKOV_VENV = VENV / "checkov"
CHECKOV_REQUIREMENTS = ROOT / "requirements-checkov.txt"
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _digest() -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in REQUIREMENTS)).hexdigest()


def ensure_venv() -> None:
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not STAMP.exists() or STAMP.read_text().strip() != _digest():
        print("installing requirements-dev.txt into .venv (first run or changed requirements)", flush=True)
        subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "-r", str(ROOT / "requirements-dev.txt")], check=True)
        # The project itself, editable: the `jobq` console script (pyproject.toml) in .venv/bin.
        subprocess.run(
            [str(PYTHON), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", str(ROOT)], check=True
        )
        STAMP.write_text(_digest())


def ensure_checkov_venv() -> None:
    python = CHECKOV_VENV / "bin" / "python"
    stamp = CHECKOV_VENV / ".requirements.sha256"
    digest = hashlib.sha256(CHECKOV_REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return
    if not python.exists():
        print(f"creating {CHECKOV_VENV} (checkov, for the static checks)", flush=True)
        venv.EnvBuilder(with_pip=True).create(CHECKOV_VENV)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(CHECKOV_REQUIREMENTS)], check=True)
    stamp.write_text(digest)


def ensure_chromium() -> None:
    """Debian's chromium and its driver for the dashboard's browser test (tests/browser), when missing."""
    if CHROMEDRIVER.exists() and (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        print("chromium/chromium-driver missing and apt-get unavailable (or not root): the browser test fails (JOBQ_SKIP_BROWSER=1 skips it)", flush=True)
        return
    print("installing chromium and chromium-driver (apt-get) for the dashboard's browser test", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )


# The whole suite runs on pytest-xdist workers, one test file per worker at a time (--dist loadfile:
# a module's fixtures are built once). Most of the time is spent waiting on the local stack, moto
# and subprocesses, not on the CPU, so more workers than cores pay; each worker starts its own local
# stack (ports and temp dirs of its own). JOBQ_TEST_WORKERS=N overrides the count, 0 runs in one process.
DEFAULT_WORKERS = 4


def _workers(rest: list[str]) -> list[str]:
    """xdist's options for a run of the whole suite: none when paths are named (one file runs alone), or -n, --dist or -p no:xdist."""
    names_paths = any(not a.startswith("-") and Path(a.split("::")[0]).exists() for a in rest)
    chooses = any(a.startswith(("-n", "--numprocesses", "--dist")) or a in ("no:xdist", "-pno:xdist") for a in rest)
    workers = int(os.environ.get("JOBQ_TEST_WORKERS", DEFAULT_WORKERS))
    if names_paths or chooses or workers <= 0:
        return []
    # --no-loadscope-reorder: files in collection order (tests/conftest.py puts the longest first),
    # not xdist's default of the files with the most tests first (the one-test soak would start last).
    return ["-n", str(workers), "--dist", "loadfile", "--no-loadscope-reorder"]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("local", "test", "token"):
        print(__doc__)
        return 2
    ensure_venv()
    command, rest = argv[0], argv[1:]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SAM_CLI_TELEMETRY": "0"}
    if command == "local":
        args = [str(PYTHON), "-m", "infra.local", *rest]
    elif command == "token":
        args = [str(PYTHON), "-m", "infra.local.token", *rest]
    else:
        ensure_checkov_venv()
        ensure_chromium()
        args = [str(PYTHON), "-m", "pytest", *_workers(rest), *rest]
    os.chdir(ROOT)
    os.execve(str(PYTHON), args, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
