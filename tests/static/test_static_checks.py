"""Static checks CI runs with the suite: cfn-lint on the nested template, checkov, bandit, pip-audit.

``sam validate --lint`` (tests/unit/test_packaging.py) lints template.yaml only; the nested
infra/queue.yaml is linted here. Each check reads its tool's JSON report and fails with
what it found, so a failure names the resource or line to fix.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHECKOV = ROOT / ".venv" / "checkov" / "bin" / "checkov"  # its own venv: requirements-checkov.txt says why
TEMPLATES = ["template.yaml", "infra/queue.yaml"]

# Bandit over the code that ships and the local stack. Skipped tests, with why:
BANDIT_RUNS = {
    # B101 (assert): the asserts narrow types on invariants established just above; no
    # Lambda runtime or local stack runs python -O, and none is an authorization check.
    ("api", "functions", "processors", "shared"): "B101",
    # B105/B106 (hard-coded password) in infra/ are moto's dummy credentials ("testing") and
    # the local issuer's claim names: the local stack never talks to AWS.
    ("infra",): "B101,B105,B106",
    # The client and the CLI users install (jobq_client/): nothing skipped beyond the asserts.
    ("jobq_client",): "B101",
}


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300, **kwargs)


def test_the_nested_queue_template_passes_cfn_lint() -> None:
    out = _run([str(BIN / "cfn-lint"), "infra/queue.yaml"])

    assert out.returncode == 0, out.stdout + out.stderr


def test_checkov_fails_no_check_and_every_skip_in_the_templates_says_why() -> None:
    assert CHECKOV.exists(), "checkov lives in .venv/checkov: run the suite through `python3 dev.py test`"
    args = [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "--compact", "--quiet", "-o", "json"]
    out = _run([*args, *(a for t in TEMPLATES for a in ("-f", t))])
    reports = json.loads(out.stdout)
    reports = reports if isinstance(reports, list) else [reports]

    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for r in reports for c in r["results"]["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    skipped = [c for r in reports for c in r["results"].get("skipped_checks", [])]
    unexplained = [f"{c['check_id']} {c['resource']}" for c in skipped if len(c["check_result"].get("suppress_comment", "")) < 20]
    assert unexplained == [], "each skip in a resource's Metadata needs a comment giving the reason"
    assert sum(r["summary"]["passed"] for r in reports) > 0 and all(r["summary"]["parsing_errors"] == 0 for r in reports)


@pytest.mark.parametrize("paths,skips", list(BANDIT_RUNS.items()), ids=["+".join(p) for p in BANDIT_RUNS])
def test_bandit_finds_nothing(paths: tuple[str, ...], skips: str) -> None:
    out = _run([str(BIN / "bandit"), "-r", *paths, "--skip", skips, "-f", "json", "-q"])
    report = json.loads(out.stdout)

    found = [f"{r['test_id']} {r['filename']}:{r['line_number']} {r['issue_text']}" for r in report["results"]]
    assert found == [] and report["errors"] == [], "\n".join(found) or report["errors"]


def _runtime_pins() -> list[str]:
    """requirements.txt and everything it pulls in, at the versions installed here (what the layer ships)."""
    pins: dict[str, str] = {}
    pending = [Requirement(line.split("#")[0]) for line in (ROOT / "requirements.txt").read_text().splitlines() if line.split("#")[0].strip()]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in pins:
            continue
        dist = importlib.metadata.distribution(requirement.name)
        pins[name] = dist.version
        for spec in dist.requires or []:
            dependency = Requirement(spec)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in extras):
                pending.append(dependency)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


# What pip-audit says when it cannot reach its database: a connection failure, or (as here,
# where only the package index is reachable) PyPI's per-release JSON answering 404 for every one.
_UNREACHABLE = re.compile(r"ConnectionError|Max retries exceeded|NameResolutionError|Temporary failure in name resolution|timed out")


def test_pip_audit_finds_no_known_vulnerability_in_what_the_lambdas_ship(tmp_path: Path) -> None:
    pins = tmp_path / "runtime.txt"
    pins.write_text("\n".join(_runtime_pins()) + "\n")
    report_path = tmp_path / "audit.json"
    out = _run(
        [str(BIN / "pip-audit"), "-r", str(pins), "--no-deps", "--disable-pip", "--progress-spinner", "off", "-f", "json", "-o", str(report_path)]
    )

    if not report_path.exists() or not report_path.read_text().strip():
        if _UNREACHABLE.search(out.stderr):
            pytest.skip(f"pip-audit skipped: its vulnerability database is unreachable ({_UNREACHABLE.search(out.stderr).group(0)})")  # type: ignore[union-attr]
        pytest.fail(f"pip-audit wrote no report (exit {out.returncode}): {out.stderr[-2000:]}")
    dependencies = json.loads(report_path.read_text())["dependencies"]
    vulnerable = [f"{d['name']} {d['version']}: {', '.join(v['id'] for v in d['vulns'])}" for d in dependencies if d.get("vulns")]
    assert vulnerable == [], "\n".join(vulnerable)
    unaudited = [d for d in dependencies if "skip_reason" in d]
    if unaudited and len(unaudited) == len(dependencies):
        pytest.skip(f"pip-audit skipped: its vulnerability database answered for none of the {len(dependencies)} packages ({unaudited[0]['skip_reason']})")
    assert unaudited == [], f"pip-audit could not audit: {[d['skip_reason'] for d in unaudited]}"


def test_ruff_finds_nothing() -> None:
    out = _run([str(BIN / "ruff"), "check", "."])
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_finds_nothing_in_the_code_that_ships() -> None:
    """pyproject.toml [tool.mypy] says what is checked and how strictly; each ``type: ignore`` says why."""
    out = _run([sys.executable, "-m", "mypy"])
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_every_type_ignore_says_why() -> None:
    bare = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("api", "functions", "processors", "shared")  # what mypy checks
        for path in (ROOT / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "type: ignore" in line and not re.search(r"type: ignore\[[^\]]+\]\s*(#|-)\s*\S", line)
    ]
    assert bare == [], "a type: ignore names its code and says why after it:\n" + "\n".join(bare)
