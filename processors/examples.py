"""One real example processor per example queue (moto serves SES and S3 locally)."""

from __future__ import annotations

import csv
import fnmatch
import io
import re
import time
from typing import Any

from shared.adapters import clients
from shared.errors import PermanentJobError
from shared.settings import Settings
from shared.worker import JobContext

_ADDRESS = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+")


def _require(data: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if not data.get(n)]
    if missing:
        raise PermanentJobError(f"data is missing {', '.join(missing)}")


def allowed_recipients(settings: Settings) -> list[str]:
    """The patterns a send-email job may send to (EmailAllowedRecipients; else the sender's domain)."""
    listed = [p.strip() for p in settings.email_allowed_recipients.split(",") if p.strip()]
    return listed or [f"*@{settings.email_sender.rpartition('@')[2]}"]


def _check_recipient(to: Any, settings: Settings) -> str:
    # One address, and one this stack lets its example send to: the processor is no open relay.
    if not isinstance(to, str) or not _ADDRESS.fullmatch(to):
        raise PermanentJobError("data.to must be one email address")
    patterns = allowed_recipients(settings)
    if not any(fnmatch.fnmatchcase(to, pattern) for pattern in patterns):
        raise PermanentJobError(f"recipient {to} is not allowed: this stack sends only to {', '.join(patterns)} (EmailAllowedRecipients)")
    return to


def send_email(job: JobContext) -> dict[str, Any]:
    """email-sending/send-email: data {to, subject, body} sent through SES, to an allowed recipient only."""
    _require(job.data, "to", "subject", "body")
    to = _check_recipient(job.data["to"], job.settings)
    out = clients.client("ses").send_email(
        Source=job.settings.email_sender,
        Destination={"ToAddresses": [to]},
        Message={
            "Subject": {"Data": str(job.data["subject"])[:998]},
            "Body": {"Text": {"Data": str(job.data["body"])}},
        },
    )
    return {"messageId": out["MessageId"], "to": job.data["to"]}


def generate_report(job: JobContext) -> dict[str, Any]:
    """report-generation/generate-report: data {reportType, rows: [{...}]} written as CSV to S3."""
    _require(job.data, "reportType")
    rows = job.data.get("rows") or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise PermanentJobError("data.rows must be a list of objects")
    bucket = job.settings.reports_bucket
    if not bucket:
        raise PermanentJobError("no reports bucket is configured (JOBQ_REPORTS_BUCKET)")
    job.progress(10, "rendering")
    columns = sorted({key for row in rows for key in row})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    job.log(f"rendered {len(rows)} rows in {len(columns)} columns")
    job.progress(60, "uploading")
    key = f"reports/{job.user_id}/{job.data['reportType']}/{job.job_id}.csv"
    clients.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue().encode(), ContentType="text/csv")
    return {"bucket": bucket, "key": key, "rows": len(rows)}


def transcode_video(job: JobContext) -> dict[str, Any]:
    """video-processing/transcode-video: data {videoUrl, formats}.

    Simulates the transcoding steps (no media toolchain in the Lambda package): one step
    per format, reporting progress after each, so the progress path is exercised.
    """
    _require(job.data, "videoUrl")
    formats = job.data.get("formats") or ["720p"]
    step = job.settings.video_step_seconds
    outputs = []
    for index, fmt in enumerate(formats, start=1):
        time.sleep(step)
        outputs.append({"format": fmt, "url": f"{job.data['videoUrl']}.{fmt}.mp4"})
        job.log(f"transcoded {fmt}")
        job.progress(round(100 * index / len(formats)), f"transcoded {fmt}")
    return {"outputs": outputs}
