#!/usr/bin/env python3
"""The two commands of jobq's README, on a machine with only Python and git.

    python3 dev.py local   # the local stack on 127.0.0.1: moto, the API, the consumers
    python3 dev.py test    # the whole test suite (what CI runs)
    python3 dev.py token --user alice [--admin]   # a token the local stack accepts

Both create ./.venv and install requirements-dev.txt into it first (again only when
the requirements files change), then run inside it; `test` also keeps checkov in
./.venv/checkov (requirements-checkov.txt). Extra arguments are passed on
(`python3 dev.py test -k consumer`, `python3 dev.py local --port 9000`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".requirements.sha256"
REQUIREMENTS = [ROOT / "requirements.txt", ROOT / "requirements-dev.txt"]
# checkov conflicts with .venv's boto3 and packaging (requirements-checkov.txt says how): its own venv.
CHECKOV_VENV = VENV / "checkov"
CHECKOV_REQUIREMENTS = ROOT / "requirements-checkov.txt"


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
        args = [str(PYTHON), "-m", "pytest", *rest]
    os.chdir(ROOT)
    os.execve(str(PYTHON), args, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
