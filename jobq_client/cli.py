"""``jobq``: the command line over jobq_client.Client.

Every command takes ``--json`` (the API's data as JSON on stdout, for scripts) and exits
with a code per class of error (jobq_client.errors): 0 ok, 1 a job that ended failed or
cancelled (``add --wait``, ``watch``), 2 bad request, 3 not signed in or not allowed,
4 not found, 5 conflict, 6 rate limited, 7 server or network error, 8 wait timed out,
9 not available on this API.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.tree import Tree

from jobq_client import config
from jobq_client.client import Client
from jobq_client.errors import JobqClientError, Unauthorized
from shared.client_models import JobPublic
from shared.queue_models import QueueSummary
from shared.status import JobStatus

app = typer.Typer(
    name="jobq",
    help="jobq from the command line: jobs, queues, dead letters, schedules. "
    "Configure with --url/--token, JOBQ_URL/JOBQ_TOKEN or `jobq login`; by default the local stack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
queue_app = typer.Typer(help="Pause, resume or clean one queue (admin).", no_args_is_help=True)
dlq_app = typer.Typer(help="A queue's dead letters: list, redrive, purge (admin).", no_args_is_help=True)
schedules_app = typer.Typer(help="Recurring schedules (admin).", no_args_is_help=True)
flows_app = typer.Typer(help="Flows: a job's parent and children.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")
app.add_typer(dlq_app, name="dlq")
app.add_typer(schedules_app, name="schedules")
app.add_typer(flows_app, name="flows")

# Off a terminal (a pipe, a file) rich would wrap tables at 80 columns; use COLUMNS or 200 instead.
_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 200)
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)

READ_STDIN = "-"
Json = Annotated[bool, typer.Option("--json", help="Print the API's data as JSON.")]
User = Annotated[str | None, typer.Option("--user", "-u", help="The job's owner (admins addressing another user's job).")]
LiveFlag = Annotated[bool, typer.Option("--live/--poll", help="Follow by push over the API's WebSocket (falls back to polling), or poll only.")]

STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
    "active": "cyan",
    "waiting": "yellow",
    "delayed": "blue",
    "stalled": "bright_red",
}
HEALTH_STYLE = {"healthy": "green", "warning": "yellow", "error": "red"}


class State:
    url: str | None = None
    token: str | None = None
    client: Client | None = None


state = State()


@app.callback()
def main(
    url: Annotated[str | None, typer.Option("--url", envvar="JOBQ_URL", help="The API's base URL.", show_envvar=True)] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="JOBQ_TOKEN", help="A JWT the API accepts.", show_envvar=True)] = None,
) -> None:
    state.url, state.token, state.client = url, token, None


def client() -> Client:
    if state.client is None:
        settings = config.resolve(state.url, state.token)
        # The live events' WebSocket: the one the API names, unless JOBQ_WEBSOCKET_URL says otherwise ("" : never push).
        state.client = Client(settings.url, settings.token, websocket_url=os.environ.get("JOBQ_WEBSOCKET_URL"))
    return state.client


def fail(error: JobqClientError) -> NoReturn:
    err.print(f"[bold red]error:[/] {error.message}")
    if isinstance(error, Unauthorized):
        err.print("sign in with `jobq login`, or pass --token / JOBQ_TOKEN")
    raise typer.Exit(error.exit_code)


def run(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except JobqClientError as error:
        fail(error)


def dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, mode="json")
    if isinstance(value, list):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(dump(value), indent=2, default=str) + "\n")
    sys.stdout.flush()


def status_text(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def ago(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        seconds = (datetime.now(UTC) - datetime.fromisoformat(iso.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return iso
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{max(0, int(seconds))}s ago"


def progress_percent(job: JobPublic) -> float:
    value = job.progress
    if isinstance(value, dict):
        value = value.get("percent", value.get("progress", 0))
    try:
        return max(0.0, min(100.0, float(value)))
    except (TypeError, ValueError):
        return 0.0


# ---- data for `add` ---------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_data(data: str | None, file: Path | None, fields: list[str]) -> dict[str, Any]:
    """``--data '{json}'``, ``--data -`` (stdin), ``--file x.json`` and ``-d key=value`` (values parsed as JSON when they are)."""
    merged: dict[str, Any] = {}
    sources = []
    if file is not None:
        sources.append(file.read_text(encoding="utf-8") if str(file) != "-" else sys.stdin.read())
    if data is not None:
        sources.append(sys.stdin.read() if data == "-" else data)
    for text in sources:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise typer.BadParameter(f"job data is not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise typer.BadParameter("job data must be a JSON object")
        merged.update(value)
    for field in fields:
        key, sep, value = field.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"-d {field!r}: expected key=value")
        merged[key] = parse_value(value)
    return merged


# ---- jobs -------------------------------------------------------------------------------------
@app.command()
def add(
    queue: Annotated[str, typer.Argument(help="The queue, e.g. email-sending.")],
    type: Annotated[str, typer.Argument(help="The job type, e.g. send-email.")],
    data: Annotated[str | None, typer.Option("--data", help="The job's data as a JSON object; '-' reads stdin.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read the data from a JSON file ('-': stdin).")] = None,
    field: Annotated[list[str] | None, typer.Option("-d", help="A data field key=value (repeatable; JSON values parsed).")] = None,
    attempts: Annotated[int | None, typer.Option(help="Attempts before the job fails.")] = None,
    delay: Annotated[int | None, typer.Option(help="Milliseconds before the first attempt.")] = None,
    priority: Annotated[str | None, typer.Option(help="A number, higher first (-1000 to 1000), or critical|high|normal|low|bulk.")] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="Your own id: adding it twice returns the first job.")] = None,
    backoff: Annotated[str | None, typer.Option(help="fixed:MS or exponential:MS.")] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Show progress until the job ends; exit 1 if it failed.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 300,
    live: LiveFlag = True,
    as_json: Json = False,
) -> None:
    """Add a job; with --wait follow it to the end and print its result."""
    payload = read_data(data, file, field or [])
    options: dict[str, Any] = {}
    for key, value in (("attempts", attempts), ("delay", delay), ("priority", priority), ("job_id", job_id)):
        if value is not None:
            options[key] = value
    if backoff:
        kind, _, ms = backoff.partition(":")
        options["backoff"] = {"type": kind, "delay": int(ms or 1000)}
    job = run(lambda: client().add(queue, type, payload, options=options))
    if not wait:
        if as_json:
            print_json(job)
        else:
            out.print(f"added [bold]{job.job_id}[/] on {job.queue} ({status_text(job.status)})")
        return
    if not as_json:
        out.print(f"added [bold]{job.job_id}[/] on {job.queue}")
    follow(job, timeout=timeout, as_json=as_json, live=live)


def follow(job: JobPublic, *, timeout: float, as_json: bool, live: bool = True) -> NoReturn:
    """A progress bar until the job ends (on stderr when --json, so stdout stays the job), then its outcome.

    The job's events are pushed over the API's WebSocket where it has one; else (or when it fails) it polls.
    The line under the bar says which.
    """
    console = err if as_json else out
    final = job
    with Progress(
        TextColumn("[bold]{task.fields[status]}[/]"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(job.job_id, total=100, status=job.status.value, message="")
        via: tuple[str, str | None] | None = None

        def updates() -> None:
            nonlocal final, via
            for update in client().follow(job.job_id, timeout, user_id=job.user_id, live=live):
                if (update.via, update.note) != via:
                    via = (update.via, update.note)
                    bar.console.print(
                        "[dim]following by push (live events)[/]" if update.via == "push" else f"[dim]following by polling ({update.note})[/]"
                    )
                current = final = update.job
                done = 100 if current.status is JobStatus.COMPLETED else progress_percent(current)
                attempt = f"attempt {current.attempts}/{current.max_attempts}" if current.attempts else ""
                bar.update(task, completed=done, status=current.status.value, message=current.progress_message or attempt)

        run(updates)
    finish(final, as_json=as_json)


def finish(job: JobPublic, *, as_json: bool) -> NoReturn:
    if as_json:
        print_json(job)
    elif job.status is JobStatus.COMPLETED:
        out.print(f"{status_text('completed')} in {job.processing_time if job.processing_time is not None else '?'} ms")
        out.print_json(json.dumps(job.result, default=str)) if job.result is not None else out.print("(no result)")
    else:
        out.print(f"{status_text(job.status.value)} after {job.attempts} attempt(s): {job.error or '(no error recorded)'}")
    raise typer.Exit(0 if job.status is JobStatus.COMPLETED else 1)


def job_panel(job: JobPublic) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("id", job.job_id),
        ("queue / type", f"{job.queue} / {job.type}"),
        ("user", job.user_id),
        ("status", status_text(job.status.value) + (" (cancel requested)" if job.cancel_requested else "")),
        ("progress", f"{progress_percent(job):g}%" + (f"  {job.progress_message}" if job.progress_message else "")),
        ("attempts", f"{job.attempts}/{job.max_attempts}" + (f", {job.retries} manual retries" if job.retries else "")),
        ("created", f"{job.created_at} ({ago(job.created_at)})"),
        ("processing time", f"{job.processing_time} ms" if job.processing_time is not None else "-"),
        ("data", json.dumps(job.data, default=str)),
    ]
    if job.result is not None:
        rows.append(("result", json.dumps(job.result, default=str)))
    if job.error:
        rows.append(("error", f"[red]{job.error}[/]"))
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)
    if job.history:
        history = Table("attempt", "started", "ended", "outcome", "error", title="history", title_justify="left")
        for h in job.history:
            history.add_row(str(h.attempt), h.started_at, h.ended_at or "-", status_text(h.outcome or "running"), h.error or "")
        out.print(history)


@app.command()
def get(job_id: str, user: User = None, as_json: Json = False) -> None:
    """Show a job: status, progress, data, result, error and its attempts."""
    job = run(lambda: client().get(job_id, user_id=user))
    print_json(job) if as_json else job_panel(job)


@app.command()
def watch(
    job_id: str,
    user: User = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the end.")] = 3600,
    live: LiveFlag = True,
    as_json: Json = False,
) -> None:
    """Follow a job with a progress bar until it ends (pushed live where the API can); exit 1 if it failed or was cancelled."""
    job = run(lambda: client().get(job_id, user_id=user))
    follow(job, timeout=timeout, as_json=as_json, live=live)


@app.command("ls")
def list_jobs(
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue (alone: the whole queue, admin).")] = None,
    status: Annotated[JobStatus | None, typer.Option("--status", "-s", help="Only jobs in this status.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="This user's jobs (yours by default).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Jobs per page.", min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="nextCursor of the previous page.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Every page (newest first).")] = False,
    as_json: Json = False,
) -> None:
    """List jobs newest first: yours, a user's (--user), or a whole queue's (--queue, admin)."""
    if all_pages:
        jobs = run(lambda: list(client().iter_jobs(queue=queue, status=status, user_id=user, page_size=100)))
        next_cursor = None
    else:
        page = run(lambda: client().list_jobs(queue=queue, status=status, user_id=user, limit=limit, cursor=cursor))
        jobs, next_cursor = page.jobs, page.next_cursor
    if as_json:
        print_json({"jobs": jobs, "nextCursor": next_cursor})
        return
    table = Table("id", "queue", "type", "user", "status", "progress", "attempts", "created")
    for job in jobs:
        table.add_row(
            job.job_id, job.queue, job.type, job.user_id, status_text(job.status.value),
            f"{100 if job.status is JobStatus.COMPLETED else progress_percent(job):g}%", f"{job.attempts}/{job.max_attempts}", ago(job.created_at),
        )
    out.print(table)
    if not jobs:
        out.print("no jobs")
    if next_cursor:
        out.print(f"more: jobq ls ... --cursor {next_cursor}")


@app.command()
def logs(
    job_id: str,
    user: User = None,
    follow_: Annotated[bool, typer.Option("--follow", "-F", help="Keep printing new lines until the job ends.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --follow.")] = 1.0,
    as_json: Json = False,
) -> None:
    """A job's log lines, oldest first; --follow until it ends."""
    seen = 0
    while True:
        lines = run(lambda: list(client().iter_logs(job_id, user_id=user)))
        for line in lines[seen:]:
            if as_json:
                sys.stdout.write(json.dumps(dump(line)) + "\n")
            else:
                out.print(f"[dim]{line.at}[/] [cyan]#{line.attempt or '-'}[/] {line.message}")
        sys.stdout.flush()
        seen = max(seen, len(lines))
        if not follow_:
            return
        job = run(lambda: client().get(job_id, user_id=user))
        if job.status.value in ("completed", "failed", "cancelled"):
            final = run(lambda: list(client().iter_logs(job_id, user_id=user)))
            for line in final[seen:]:
                out.print(f"[dim]{line.at}[/] [cyan]#{line.attempt or '-'}[/] {line.message}") if not as_json else sys.stdout.write(json.dumps(dump(line)) + "\n")
            return
        time.sleep(interval)


def _each(job_ids: list[str], action: Callable[[str], JobPublic | None], verb: str, as_json: bool) -> None:
    """Apply to every id; report each; exit with the first failure's code after trying them all."""
    results: list[Any] = []
    code = 0
    for job_id in job_ids:
        try:
            job = action(job_id)
        except JobqClientError as error:
            code = code or error.exit_code
            err.print(f"[bold red]error:[/] {job_id}: {error.message}")
            results.append({"jobId": job_id, "error": error.message})
            continue
        results.append(job if job is not None else {"jobId": job_id, verb: True})
        if not as_json:
            out.print(f"{verb} {job_id}" + (f" ({status_text(job.status.value)})" if job is not None else ""))
    if as_json:
        print_json(results if len(results) != 1 else results[0])
    raise typer.Exit(code)


@app.command()
def retry(job_ids: Annotated[list[str], typer.Argument(help="Failed or cancelled jobs.")], user: User = None, as_json: Json = False) -> None:
    """Put failed or cancelled jobs back in line with a fresh set of attempts."""
    _each(job_ids, lambda j: client().retry(j, user_id=user), "retried", as_json)


@app.command()
def cancel(job_ids: Annotated[list[str], typer.Argument(help="Waiting, delayed or active jobs.")], user: User = None, as_json: Json = False) -> None:
    """Cancel jobs: waiting/delayed at once, active at their next progress report."""
    _each(job_ids, lambda j: client().cancel(j, user_id=user), "cancelled", as_json)


@app.command()
def rm(job_ids: Annotated[list[str], typer.Argument(help="Jobs to remove for good.")], user: User = None, as_json: Json = False) -> None:
    """Remove jobs for good (where the API offers it; else use `queue clean`)."""

    def remove(job_id: str) -> None:
        client().remove(job_id, user_id=user)

    _each(job_ids, remove, "removed", as_json)


# ---- queues -----------------------------------------------------------------------------------
def queues_table(queues: list[QueueSummary]) -> Group:
    """Counts per state, rate, failure rate, times, health, DLQ depth; health reasons under the table."""
    table = Table(title=f"jobq queues · {datetime.now().strftime('%H:%M:%S')}", title_justify="left")
    table.add_column("queue", no_wrap=True)
    for name in ("state", "health"):
        table.add_column(name, no_wrap=True)
    for name in ("wait", "act", "delay", "done", "fail", "canc", "stall", "DLQ", "/min", "fail%", "avg ms", "p95 ms"):
        table.add_column(name, justify="right", no_wrap=True)
    reasons = []
    for q in queues:
        s = q.live_stats
        table.add_row(
            q.name, "[yellow]paused[/]" if q.paused else "running", f"[{HEALTH_STYLE.get(q.health_status, 'white')}]{q.health_status}[/]",
            str(s.waiting), str(s.active), str(s.delayed), str(s.completed), str(s.failed), str(s.cancelled), str(s.stalled),
            str(q.dlq_depth), f"{q.processing_rate:.1f}", f"{q.failure_rate * 100:.1f}",
            f"{q.average_processing_time:.0f}" if q.average_processing_time is not None else "-",
            str(q.p95_processing_time) if q.p95_processing_time is not None else "-",
        )
        reasons += [f"[bold]{q.name}[/]: {reason}" for reason in q.health_reasons]
    return Group(table, *reasons)


@app.command()
def queues(
    once: Annotated[bool, typer.Option("--once", help="Print once instead of refreshing (the default off a terminal).")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
    as_json: Json = False,
) -> None:
    """Every queue: counts per state, rate, failure rate, times, health, DLQ depth; refreshes in place on a terminal (Ctrl-C stops)."""
    found = run(lambda: client().queues())
    if as_json:
        print_json(found)
        return
    if once or not out.is_terminal:
        out.print(queues_table(found))
        return
    with Live(queues_table(found), console=out, refresh_per_second=4, screen=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(queues_table(run(lambda: client().queues())))
        except KeyboardInterrupt:
            pass


@queue_app.command("show")
def queue_show(name: str, as_json: Json = False) -> None:
    """One queue with its configuration and consumer state."""
    q = run(lambda: client().queue(name))
    if as_json:
        print_json(q)
        return
    out.print(queues_table([q]))
    out.print(f"consumer: {q.consumer_state or '-'}; oldest waiting: {q.oldest_waiting_age or '-'} ms; last processed {ago(q.last_processed_at)}")


@queue_app.command("pause")
def queue_pause(name: str, as_json: Json = False) -> None:
    """Accept jobs but start none (disables the consumer's event source mapping)."""
    result = run(lambda: client().pause_queue(name))
    print_json(result) if as_json else out.print(f"{name}: paused (consumer {result.consumer_state or '-'})")


@queue_app.command("resume")
def queue_resume(name: str, as_json: Json = False) -> None:
    """Start jobs again; the waiting ones drain."""
    result = run(lambda: client().resume_queue(name))
    print_json(result) if as_json else out.print(f"{name}: running (consumer {result.consumer_state or '-'})")


@queue_app.command("clean")
def queue_clean(
    name: str,
    status: Annotated[str, typer.Option("--status", "-s", help="completed, failed or cancelled.")] = "completed",
    older_than: Annotated[float, typer.Option("--older-than", help="Seconds since they finished.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: Json = False,
) -> None:
    """Remove finished jobs of one status, oldest first."""
    if not yes and sys.stdin.isatty():
        typer.confirm(f"remove {status} jobs of {name} older than {older_than:g}s?", abort=True)
    result = run(lambda: client().clean_queue(name, status=status, older_than_ms=int(older_than * 1000), limit=limit))
    print_json(result) if as_json else out.print(f"{name}: removed {result.removed} {status} job(s)" + (" (more remain: run again)" if result.has_more else ""))


# ---- dead letters -----------------------------------------------------------------------------
@dlq_app.command("ls")
def dlq_ls(name: str, limit: Annotated[int, typer.Option(min=1, max=100)] = 50, as_json: Json = False) -> None:
    """The dead-letter queue's messages with their jobs and why they failed."""
    found = run(lambda: client().dead_letters(name, limit=limit))
    if as_json:
        print_json(found)
        return
    table = Table("job", "status", "reason", "received", "sent", title=f"{name}: ~{found.approximate_total} dead letter(s)", title_justify="left")
    for d in found.dead_letters:
        table.add_row(d.job_id or "?", status_text(d.job.status.value) if d.job else "[dim]gone[/]", d.reason or "", str(d.receive_count), ago(d.sent_at))
    out.print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    name: str,
    job_ids: Annotated[list[str] | None, typer.Argument(help="Only these jobs (default: all).")] = None,
    as_json: Json = False,
) -> None:
    """Send dead letters back to the queue with a fresh set of attempts."""
    result = run(lambda: client().redrive(name, job_ids or None))
    if as_json:
        print_json(result)
        return
    out.print(f"{name}: redriven {len(result.redriven)}, requeued {len(result.requeued)}, skipped {len(result.skipped)}, remaining {result.remaining}")
    if result.not_found:
        err.print(f"not in the dead-letter queue: {', '.join(result.not_found)}")


@dlq_app.command("purge")
def dlq_purge(name: str, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False, as_json: Json = False) -> None:
    """Delete every message of the dead-letter queue."""
    if not yes and sys.stdin.isatty():
        typer.confirm(f"purge the dead-letter queue of {name}?", abort=True)
    result = run(lambda: client().purge_dead_letters(name))
    print_json(result) if as_json else out.print(f"{name}: purged {result.purged}; marked failed: {len(result.marked_failed)}")


# ---- schedules --------------------------------------------------------------------------------
def schedule_line(s: Any) -> str:
    return f"{s.name}: {s.state}, next {s.next_run_at or '-'}"


def schedule_timing(cron: str | None, every_minutes: int | None, tz: str | None, limit: int | None) -> dict[str, Any]:
    """The schedule fields the flags name (``add`` and ``edit`` take the same ones)."""
    fields: dict[str, Any] = {}
    if cron:
        fields["cron"] = cron
    if every_minutes:
        fields["every"] = every_minutes * 60_000
    if tz:
        fields["timezone"] = tz
    if limit:
        fields["limit"] = limit
    return fields


@schedules_app.command("ls")
def schedules_ls(as_json: Json = False) -> None:
    """Every schedule with its state, runs and next run."""
    found = run(lambda: client().schedules())
    if as_json:
        print_json(found)
        return
    table = Table("name", "queue / type", "when", "tz", "state", "runs", "limit", "last run", "next run")
    for s in found:
        when = s.cron or (f"every {s.every // 60000} min" if s.every else s.expression)
        table.add_row(s.name, f"{s.queue} / {s.type}", when, s.timezone, s.state, str(s.run_count), str(s.limit or "-"), ago(s.last_run_at), s.next_run_at or "-")
    out.print(table)
    if not found:
        out.print("no schedules")


@schedules_app.command("add")
def schedules_add(
    name: str,
    queue: str,
    type: str,
    cron: Annotated[str | None, typer.Option(help="5-field cron, e.g. '0 2 * * *'.")] = None,
    every: Annotated[int | None, typer.Option(help="Interval in minutes.")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="IANA time zone of the cron (default UTC).")] = None,
    limit: Annotated[int | None, typer.Option(help="Stop after this many runs.")] = None,
    data: Annotated[str | None, typer.Option("--data", help="The jobs' data as JSON; '-' reads stdin.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read the data from a JSON file.")] = None,
    field: Annotated[list[str] | None, typer.Option("-d", help="A data field key=value (repeatable).")] = None,
    as_json: Json = False,
) -> None:
    """Create a recurring schedule (--cron with --tz, or --every minutes)."""
    fields = schedule_timing(cron, every, tz, limit)
    payload = read_data(data, file, field or [])
    created = run(lambda: client().add_schedule(name, queue, type, payload, **fields))
    print_json(created) if as_json else out.print(f"created {schedule_line(created)}")


@schedules_app.command("edit")
def schedules_edit(
    name: str,
    cron: Annotated[str | None, typer.Option(help="A new 5-field cron (replaces --every).")] = None,
    every: Annotated[int | None, typer.Option(help="A new interval in minutes (replaces --cron).")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="A new IANA time zone.")] = None,
    limit: Annotated[int | None, typer.Option(help="A new run limit.")] = None,
    no_limit: Annotated[bool, typer.Option("--no-limit", help="Remove the run limit.")] = False,
    as_json: Json = False,
) -> None:
    """Change when a schedule fires (cron, interval, time zone) or its limit; its runs and job template stay."""
    fields = schedule_timing(cron, every, tz, limit)
    if no_limit:
        fields["limit"] = None
    if not fields:
        raise typer.BadParameter("give --cron, --every, --tz, --limit or --no-limit")
    s = run(lambda: client().update_schedule(name, **fields))
    print_json(s) if as_json else out.print(schedule_line(s))


@schedules_app.command("pause")
def schedules_pause(name: str, as_json: Json = False) -> None:
    """Stop firing until resumed."""
    s = run(lambda: client().pause_schedule(name))
    print_json(s) if as_json else out.print(schedule_line(s))


@schedules_app.command("resume")
def schedules_resume(name: str, as_json: Json = False) -> None:
    """Fire again."""
    s = run(lambda: client().resume_schedule(name))
    print_json(s) if as_json else out.print(schedule_line(s))


@schedules_app.command("trigger")
def schedules_trigger(name: str, as_json: Json = False) -> None:
    """Run the schedule once now (not counted toward its limit)."""
    job = run(lambda: client().trigger_schedule(name))
    print_json(job) if as_json else out.print(f"triggered {name}: job {job.job_id} ({status_text(job.status.value)})")


@schedules_app.command("rm")
def schedules_rm(name: str, as_json: Json = False) -> None:
    """Delete a schedule."""
    run(lambda: client().delete_schedule(name))
    print_json({"name": name, "deleted": True}) if as_json else out.print(f"deleted {name}")


# ---- flows ------------------------------------------------------------------------------------
def flow_label(node: dict[str, Any]) -> str:
    status = str(node.get("status") or "gone")
    dependency = f" [dim]({node['dependency']})[/]" if node.get("dependency") else ""
    outcome = f"  [red]{node['error']}[/]" if node.get("error") else ""
    kind = f" {node['queue']} / {node['type']}" if node.get("type") else f" {node.get('queue', '')}"
    return f"[bold]{node.get('jobId')}[/] {status_text(status)}{kind}{dependency}{outcome}"


def flow_tree(node: dict[str, Any], tree: Tree | None = None) -> Tree:
    """The flow as an indented tree: each job with its status, and below the root its dependency state."""
    branch = Tree(flow_label(node)) if tree is None else tree.add(flow_label(node))
    for child in node.get("children") or []:
        flow_tree(child, branch)
    return branch


@flows_app.command("show")
def flows_show(
    job_id: str,
    user: User = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Then print each job's change until the flow ends (exit 1 if it did not complete).")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the end with --watch.")] = 3600,
    live: LiveFlag = True,
    as_json: Json = False,
) -> None:
    """A job's flow: the job, its parent, and the tree of its children with their statuses."""
    flow = run(lambda: client().flow(job_id, user_id=user))
    if as_json:
        print_json(flow)
    else:
        parent = dump(getattr(run(lambda: client().get(job_id, user_id=user)), "parent", None))  # a flow child's parent link
        if isinstance(parent, dict):
            out.print(f"parent: [bold]{parent.get('jobId')}[/] on {parent.get('queue')} (if this job fails: {parent.get('onFailure', '-')})")
        out.print(flow_tree(flow))
    if not watch:
        return
    ended: dict[str, Any] = {}

    def events() -> None:
        nonlocal ended
        for event, via in client().watch_flow(job_id, timeout, user_id=user, live=live):
            if as_json:
                sys.stdout.write(json.dumps({**event, "via": via}, default=str) + "\n")
                sys.stdout.flush()
            elif event.get("type") != "flow:completed":
                progress = f" {event['progress']}%" if event.get("type") == "job:progress" else ""
                out.print(f"[dim]{via}[/] {event.get('jobId')} {status_text(str(event.get('status') or ''))}{progress}")
            ended = event if event.get("type") == "flow:completed" else ended

    run(events)
    if not as_json:
        out.print(f"flow {job_id} {status_text(str(ended.get('status')))}" + (f": {ended['error']}" if ended.get("error") else ""))
        out.print(flow_tree(run(lambda: client().flow(job_id, user_id=user))))
    raise typer.Exit(0 if ended.get("status") == "completed" else 1)


# ---- sign in ----------------------------------------------------------------------------------
@app.command()
def login(
    url: Annotated[str | None, typer.Option("--url", help="The API's base URL (the stack's ApiUrl output).")] = None,
    token: Annotated[str | None, typer.Option("--token", help="A JWT from your identity provider ('-' reads stdin).")] = None,
    show: Annotated[bool, typer.Option("--show", help="Only print where the settings come from now.")] = False,
    as_json: Json = False,
) -> None:
    """Save the API URL and a token for later commands (readable by you only)."""
    if show:
        current = config.resolve(state.url, state.token)
        c = Client(current.url, current.token)
        info = {"url": current.url, "source": current.source, "user": c.user_id, "admin": "admin" in str(c.claims.get("cognito:groups", ""))}
        print_json(info) if as_json else out.print(f"{info['url']} as {info['user'] or '(no token)'} (from {info['source']})")
        return
    url = url or state.url or typer.prompt("API URL", default=config.saved().get("url") or config.LOCAL_URL)
    if token == READ_STDIN:
        token = sys.stdin.read().strip()
    token = token or state.token or typer.prompt("token", hide_input=True)
    probe = Client(url, token)
    run(probe.check)  # proves the URL and the token before saving them
    path = config.save(url, token)
    print_json({"url": url, "user": probe.user_id, "saved": str(path)}) if as_json else out.print(f"signed in to {url} as {probe.user_id}; saved to {path}")


def entry() -> None:
    """The console script."""
    app()


if __name__ == "__main__":
    entry()
