"""The `jobq` CLI (typer's runner, in process) against the local stack, over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from jobq_client.cli import app
from tests.integration.conftest import LocalStackProcess
from tests.target_server import TargetServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EMAIL = ["-d", "to=bob@example.com", "-d", "subject=Hi", "-d", "body=Hello"]
try:
    runner = CliRunner(mix_stderr=False)  # click 8.1: keep stdout (the JSON) apart from stderr (progress, errors)
except TypeError:
    runner = CliRunner()  # click 8.2+: always apart


def jobq(stack: LocalStackProcess, *args: str, user: str = "cli-dave", admin: bool = False, input: str | None = None,
         env: dict[str, str] | None = None) -> Result:
    environment = {"JOBQ_URL": stack.api_url, "JOBQ_TOKEN": stack.token(user, admin=admin), "COLUMNS": "200", **(env or {})}
    return runner.invoke(app, list(args), env=environment, input=input)


def data(result: Result) -> Any:
    assert result.stdout.strip(), result.output
    return json.loads(result.stdout)


def register(stack: LocalStackProcess, job_type: str, url: str) -> None:
    with stack.client("root", admin=True) as admin:
        response = admin.put(f"/queues/email-sending/processors/{job_type}", json={"kind": "http", "url": url, "timeoutSeconds": 5})
        assert response.status_code == 200, response.text


def test_the_installed_jobq_lists_its_commands() -> None:
    script = Path(sys.executable).parent / "jobq"
    assert script.exists(), "dev.py installs the project (pip install -e .): .venv/bin/jobq"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True, cwd="/")
    for command in ("add", "get", "watch", "ls", "logs", "retry", "cancel", "rm", "queues", "queue", "dlq", "schedules", "flows", "login"):
        assert f" {command} " in out.stdout, command


def test_add_wait_shows_progress_and_prints_the_result_pushed_over_the_websocket(local_stack: LocalStackProcess) -> None:
    result = jobq(local_stack, "add", "video-processing", "transcode-video", "-d", "videoUrl=s3://in/v.mp4", "-d", 'formats=["480p","720p"]', "--wait")

    assert result.exit_code == 0, result.output
    assert "following by push" in result.stdout
    assert "completed" in result.stdout and "100%" in result.stdout
    assert "s3://in/v.mp4.720p.mp4" in result.stdout


def test_add_wait_polls_when_the_websocket_is_unavailable_and_still_ends_with_the_result(local_stack: LocalStackProcess) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        nowhere = f"ws://127.0.0.1:{closed.getsockname()[1]}/live"
    result = jobq(local_stack, "add", "video-processing", "transcode-video", "-d", "videoUrl=s3://in/p.mp4", "-d", 'formats=["480p"]', "--wait",
                  env={"JOBQ_WEBSOCKET_URL": nowhere})

    assert result.exit_code == 0, result.output
    assert "following by polling (cannot open ws://127.0.0.1:" in result.stdout
    assert "completed" in result.stdout and "s3://in/p.mp4.480p.mp4" in result.stdout


def test_add_wait_exits_1_when_the_job_fails(local_stack: LocalStackProcess) -> None:
    result = jobq(local_stack, "add", "email-sending", "send-email", "-d", "to=bob@example.com", "--attempts", "1", "--wait", "--json")

    assert result.exit_code == 1, result.output
    job = data(result)
    assert job["status"] == "failed" and "missing" in job["error"]


def test_add_reads_its_data_from_stdin_or_a_file(local_stack: LocalStackProcess, tmp_path: Path) -> None:
    body = {"to": "bob@example.com", "subject": "from a file", "body": "Hello"}
    file = tmp_path / "job.json"
    file.write_text(json.dumps(body))

    from_stdin = data(jobq(local_stack, "add", "email-sending", "send-email", "--data", "-", "--json", input=json.dumps(body)))
    from_file = data(jobq(local_stack, "add", "email-sending", "send-email", "--file", str(file), "-d", "subject=overridden", "--json"))

    assert from_stdin["data"] == body
    assert from_file["data"] == {**body, "subject": "overridden"}


def test_get_ls_and_watch_show_my_jobs(local_stack: LocalStackProcess) -> None:
    user = f"cli-{uuid.uuid4().hex[:8]}"
    created = data(jobq(local_stack, "add", "email-sending", "send-email", *EMAIL, "--json", user=user))
    watched = jobq(local_stack, "watch", created["jobId"], "--json", user=user)
    shown = jobq(local_stack, "get", created["jobId"], user=user)
    listed = data(jobq(local_stack, "ls", "--json", user=user))
    filtered = data(jobq(local_stack, "ls", "--status", "failed", "--json", user=user))

    assert watched.exit_code == 0 and data(watched)["status"] == "completed"
    assert shown.exit_code == 0 and created["jobId"] in shown.stdout and "completed" in shown.stdout
    assert [j["jobId"] for j in listed["jobs"]] == [created["jobId"]]
    assert filtered["jobs"] == []


def test_ls_pages_with_a_cursor(local_stack: LocalStackProcess) -> None:
    user = f"cli-{uuid.uuid4().hex[:8]}"
    ids = [data(jobq(local_stack, "add", "email-sending", "send-email", *EMAIL, "--json", user=user))["jobId"] for _ in range(3)]
    first = data(jobq(local_stack, "ls", "-n", "2", "--json", user=user))
    second = data(jobq(local_stack, "ls", "-n", "2", "--cursor", first["nextCursor"], "--json", user=user))
    everything = data(jobq(local_stack, "ls", "--all", "--json", user=user))

    assert [j["jobId"] for j in first["jobs"] + second["jobs"]] == list(reversed(ids))
    assert second["nextCursor"] is None
    assert len(everything["jobs"]) == 3


def test_errors_have_a_clear_message_and_an_exit_code_per_kind(local_stack: LocalStackProcess) -> None:
    missing = jobq(local_stack, "get", "no-such-job")
    invalid = jobq(local_stack, "add", "no-such-queue", "send-email", *EMAIL)
    forbidden = jobq(local_stack, "queues", "--once")
    unauthorized = jobq(local_stack, "get", "x", env={"JOBQ_TOKEN": "garbage"})
    no_flow = jobq(local_stack, "flows", "show", "x")  # the API has flows now (issue 14): a job that does not exist

    assert (missing.exit_code, invalid.exit_code, forbidden.exit_code, unauthorized.exit_code, no_flow.exit_code) == (4, 2, 3, 3, 4)
    assert "not found" in missing.output
    assert "no-such-queue" in invalid.output
    assert "admin" in forbidden.output.lower()
    assert "jobq login" in unauthorized.output
    assert "not found" in no_flow.output


def test_retry_and_cancel_and_logs(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "cli-once", f"{target.url}/fail-times/1")
    failed = jobq(local_stack, "add", "email-sending", "cli-once", "-d", "n=1", "--attempts", "1", "--wait", "--json")
    job_id = data(failed)["jobId"]
    retried = data(jobq(local_stack, "retry", job_id, "--json"))
    done = jobq(local_stack, "watch", job_id, "--json")
    logs = jobq(local_stack, "logs", job_id, "--follow", "--json")
    delayed = data(jobq(local_stack, "add", "email-sending", "send-email", *EMAIL, "--delay", "60000", "--json"))
    cancelled = data(jobq(local_stack, "cancel", delayed["jobId"], "--json"))
    again = jobq(local_stack, "cancel", delayed["jobId"])

    assert failed.exit_code == 1
    assert retried["status"] == "waiting" and data(done)["status"] == "completed"
    assert logs.exit_code == 0
    assert cancelled["status"] == "cancelled"
    assert again.exit_code == 5 and "error" in again.output


def test_queues_table_and_queue_commands_as_an_admin(local_stack: LocalStackProcess) -> None:
    table = jobq(local_stack, "queues", "--once", user="root", admin=True)
    listed = data(jobq(local_stack, "queues", "--json", user="root", admin=True))
    paused = data(jobq(local_stack, "queue", "pause", "report-generation", "--json", user="root", admin=True))
    resumed = data(jobq(local_stack, "queue", "resume", "report-generation", "--json", user="root", admin=True))
    cleaned = data(jobq(local_stack, "queue", "clean", "report-generation", "--status", "failed", "--older-than", "3600", "--yes", "--json",
                        user="root", admin=True))

    assert table.exit_code == 0 and "email-sending" in table.stdout and "video-processing" in table.stdout
    assert {q["name"] for q in listed} >= {"email-sending", "report-generation", "video-processing"}
    assert paused["paused"] is True and resumed["paused"] is False
    assert cleaned["removed"] >= 0


def test_dlq_commands(local_stack: LocalStackProcess, target: TargetServer) -> None:
    register(local_stack, "cli-dead", f"{target.url}/always/400")
    job = data(jobq(local_stack, "add", "email-sending", "cli-dead", "-d", "n=1", "--attempts", "1", "--wait", "--json"))
    listed = data(jobq(local_stack, "dlq", "ls", "email-sending", "--json", user="root", admin=True))
    redriven = data(jobq(local_stack, "dlq", "redrive", "email-sending", job["jobId"], "--json", user="root", admin=True))
    jobq(local_stack, "watch", job["jobId"], "--json")
    purged = data(jobq(local_stack, "dlq", "purge", "email-sending", "--yes", "--json", user="root", admin=True))

    assert job["jobId"] in {d["jobId"] for d in listed["deadLetters"]}
    assert redriven["redriven"] == [job["jobId"]]
    assert purged["remaining"] == 0


def test_schedule_commands(local_stack: LocalStackProcess) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    admin: dict[str, Any] = {"user": "root", "admin": True}
    created = data(jobq(local_stack, "schedules", "add", name, "email-sending", "send-email", "--cron", "30 4 * * *", "--tz", "Asia/Tokyo",
                        "--limit", "3", *EMAIL, "--json", **admin))
    listed = jobq(local_stack, "schedules", "ls", **admin)
    edited = data(jobq(local_stack, "schedules", "edit", name, "--cron", "0 5 * * 1", "--tz", "Europe/Berlin", "--no-limit", "--json", **admin))
    paused = data(jobq(local_stack, "schedules", "pause", name, "--json", **admin))
    resumed = data(jobq(local_stack, "schedules", "resume", name, "--json", **admin))
    triggered = data(jobq(local_stack, "schedules", "trigger", name, "--json", **admin))
    removed = jobq(local_stack, "schedules", "rm", name, **admin)
    gone = jobq(local_stack, "schedules", "pause", name, **admin)

    assert created["timezone"] == "Asia/Tokyo" and created["limit"] == 3 and created["nextRunAt"]
    assert name in listed.stdout
    assert (edited["cron"], edited["timezone"], edited["limit"]) == ("0 5 * * 1", "Europe/Berlin", None)
    assert (paused["state"], resumed["state"]) == ("paused", "active")
    assert triggered["jobId"].startswith(f"repeat:{name}:manual:")
    assert removed.exit_code == 0 and gone.exit_code == 4


def test_login_saves_the_url_and_token_for_later_commands(local_stack: LocalStackProcess, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    token = local_stack.token("cli-erin")
    saved = runner.invoke(app, ["login", "--url", local_stack.api_url, "--token", token], env={"JOBQ_CONFIG": str(config), "JOBQ_URL": None, "JOBQ_TOKEN": None})
    later = runner.invoke(app, ["ls", "--json"], env={"JOBQ_CONFIG": str(config), "JOBQ_URL": None, "JOBQ_TOKEN": None})
    refused = runner.invoke(app, ["login", "--url", local_stack.api_url, "--token", "garbage"],
                            env={"JOBQ_CONFIG": str(tmp_path / "other.json"), "JOBQ_URL": None, "JOBQ_TOKEN": None})

    assert saved.exit_code == 0, saved.output
    assert json.loads(config.read_text()) == {"url": local_stack.api_url, "token": token}
    assert config.stat().st_mode & 0o077 == 0
    assert later.exit_code == 0 and json.loads(later.stdout)["jobs"] == []
    assert refused.exit_code == 3 and not (tmp_path / "other.json").exists()


def test_flows_show_watch_prints_each_jobs_change_until_the_flow_ends(local_stack: LocalStackProcess) -> None:
    child = {"queue": "video-processing", "type": "transcode-video", "data": {"videoUrl": "s3://in/c.mp4", "formats": ["480p"]}}
    tree = {**child, "options": {"jobId": f"cli-flow-{uuid.uuid4().hex[:8]}"}, "children": [child, child]}
    with local_stack.client("cli-dave") as api:
        response = api.post("/flows", json=tree)
        assert response.status_code == 201, response.text
    root = response.json()["data"]["flowId"]

    result = jobq(local_stack, "flows", "show", root, "--watch", "--json")

    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["type"] == "flow:completed" and last["flowId"] == root and last["status"] == "completed" and last["via"] == "push"
    shown = jobq(local_stack, "flows", "show", root, "--watch")  # ended: the tree, its end at once, the tree again
    assert shown.exit_code == 0, shown.output
    assert f"flow {root} completed" in shown.stdout and f"{root}:1" in shown.stdout
