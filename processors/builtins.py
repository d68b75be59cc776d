"""Built-in processors: publish (SNS), http-request, export (CSV or JSON in S3 with a download URL), invoke (Lambda).

Each is a code processor (listed per queue in shared/catalog.py) whose job data says what to do,
within what the stack allows: publish only to ``PublishTopicArns``, http-request only to
addresses an HTTP target could have (https, public), export only from the job owner's own
``uploads/<userId>/`` files to ``exports/<userId>/``, invoke only the functions in
``LambdaTargetArns``. Bad data fails the job at once (``PermanentJobError``); AWS trouble is
retried. publish and invoke run as once-only steps (shared/once.py): a retry after the effect
does not repeat it.

AWS requests per job: publish 1 Publish; http-request none; export 1 PutObject (+1 GetObject for a
file source; the URL is signed locally); invoke 1 Invoke. Plus, for publish and invoke, the once
step's PutItem and UpdateItem.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import HTTPRedirectHandler, Request, build_opener

from processors.http import MAX_RESPONSE_BYTES
from processors.lambda_target import allowed_functions
from shared.adapters import exports, lambda_functions, notifications
from shared.clock import iso, now_ms
from shared.errors import JobqError, NotFound, PermanentJobError, RetryableJobError
from shared.models import LAMBDA_ARN_PATTERN, HttpTarget
from shared.worker import JobContext


class _NoRedirect(HTTPRedirectHandler):
    """A redirect could lead past the address rules the URL was checked against: never follow one."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = build_opener(_NoRedirect)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
# Set by the transport or by jobq: a job may not choose them.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "proxy-authorization"})
_RETRYABLE_4XX = frozenset({408, 425, 429})
MAX_EXPORT_ROWS = 1_000_000


def _listed(setting: str) -> set[str]:
    return {part.strip() for part in setting.split(",") if part.strip()}


def _text(value: Any, name: str, *, limit: int) -> str:
    if isinstance(value, str):
        text = value
    elif value is None:
        raise PermanentJobError(f"data.{name} is required")
    else:
        text = json.dumps(value, separators=(",", ":"))
    if len(text.encode()) > limit:
        raise PermanentJobError(f"data.{name} is larger than {limit} bytes")
    return text


# ---- publish (SNS) ----------------------------------------------------------------------------------
def publish(job: JobContext) -> dict[str, Any]:
    """data {topicArn, message (text or object), subject?, attributes?: {name: text}}; returns {messageId, topicArn}."""
    topic = job.data.get("topicArn")
    allowed = _listed(job.settings.publish_topic_arns)
    if not isinstance(topic, str) or topic not in allowed:
        raise PermanentJobError(f"data.topicArn must be one of the stack's PublishTopicArns ({', '.join(sorted(allowed)) or 'none'})")
    message = _text(job.data.get("message"), "message", limit=256 * 1024)
    subject = job.data.get("subject")
    if subject is not None and (not isinstance(subject, str) or not 0 < len(subject) <= 100 or not subject.isprintable()):
        raise PermanentJobError("data.subject must be 1 to 100 printable characters")
    attributes = job.data.get("attributes") or {}
    if not isinstance(attributes, dict) or len(attributes) > 10 or not all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()):
        raise PermanentJobError("data.attributes must be at most 10 text values by name")

    def send() -> str:
        return notifications.publish(
            topic, message, subject=subject, attributes=attributes, group_id=job.user_id, deduplication_id=f"{job.user_id}/{job.job_id}"[:128]
        )

    return {"messageId": job.once("publish", send), "topicArn": topic}


# ---- http-request -----------------------------------------------------------------------------------
def http_request(job: JobContext) -> dict[str, Any]:
    """data {url, method?, headers?, body?, timeoutSeconds?}; returns {status, contentType, body}.

    The URL follows the rules of HTTP targets (https to public addresses; on the local stack http
    to 127.0.0.1 too). 2xx is the result; 4xx fails the job (408, 425, 429 are retried); 5xx,
    timeouts and connection errors are retried. Redirects are not followed.
    """
    settings = job.settings
    try:
        target = HttpTarget.model_validate({"url": job.data.get("url"), "timeoutSeconds": job.data.get("timeoutSeconds", 30)})
        target.check_url(allow_loopback_http=settings.allow_loopback_http_targets)
    except (ValueError, TypeError) as err:  # pydantic's ValidationError is a ValueError
        raise PermanentJobError(f"data.url may not be called: {str(err).splitlines()[-1] if str(err) else err}") from err
    method = str(job.data.get("method") or "GET").upper()
    if method not in _METHODS:
        raise PermanentJobError(f"data.method must be one of {', '.join(sorted(_METHODS))}")
    headers = job.data.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise PermanentJobError("data.headers must map names to text")
    if any(k.lower() in _RESERVED_HEADERS or any(c in k + v for c in "\r\n") for k, v in headers.items()):
        raise PermanentJobError(f"data.headers may not set {', '.join(sorted(_RESERVED_HEADERS))} or hold CR/LF")
    body = job.data.get("body")
    raw = None
    if body is not None:
        raw = (body if isinstance(body, str) else json.dumps(body)).encode()
        if not isinstance(body, str) and not any(k.lower() == "content-type" for k in headers):
            headers = {**headers, "Content-Type": "application/json"}
    request = Request(target.url, data=raw, method=method, headers={"User-Agent": "jobq-http-request/1", **headers})
    try:
        with _opener.open(request, timeout=target.timeout_seconds) as response:
            status, content_type = response.status, response.headers.get("Content-Type", "")
            payload = response.read(MAX_RESPONSE_BYTES + 1)
    except HTTPError as err:
        if 300 <= err.code < 400:
            raise PermanentJobError(f"{target.url} answered {err.code}; redirects are not followed") from err
        if 400 <= err.code < 500 and err.code not in _RETRYABLE_4XX:
            raise PermanentJobError(f"{target.url} answered {err.code}") from err
        raise RetryableJobError(f"{target.url} answered {err.code}") from err
    except (URLError, TimeoutError, ConnectionError, OSError) as err:
        raise RetryableJobError(f"{target.url} unreachable: {getattr(err, 'reason', err)}") from err
    if len(payload) > MAX_RESPONSE_BYTES:
        raise PermanentJobError(f"{target.url} answered with more than {MAX_RESPONSE_BYTES} bytes")
    decoded: Any = payload.decode("utf-8", "replace")
    if "json" in content_type:
        with contextlib.suppress(ValueError):  # a body that says JSON and is not stays text
            decoded = json.loads(payload) if payload.strip() else None
    return {"status": status, "contentType": content_type, "body": decoded}


# ---- export -----------------------------------------------------------------------------------------
def export(job: JobContext) -> dict[str, Any]:
    """data {format: csv|json, rows: [{...}] | file: "uploads/<userId>/...", columns?, expiresIn? (s)}.

    ``rows`` is the result of a query the job's creator ran (or anything row-shaped); ``file`` is
    one of the owner's uploads: a JSON array, JSON lines, or a CSV with a header row (``.csv``).

    Writes ``exports/<userId>/<jobId>.<format>`` to the reports bucket and returns its key, the
    row count and a presigned download URL valid ``expiresIn`` seconds (default
    ``export_url_default_seconds``, at most ``export_url_max_seconds``).
    """
    settings = job.settings
    bucket = settings.reports_bucket
    if not bucket:
        raise PermanentJobError("no reports bucket is configured (JOBQ_REPORTS_BUCKET)")
    fmt = job.data.get("format", "csv")
    if fmt not in ("csv", "json"):
        raise PermanentJobError("data.format must be csv or json")
    expires_in = job.data.get("expiresIn", settings.export_url_default_seconds)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 60 <= expires_in <= settings.export_url_max_seconds:
        raise PermanentJobError(f"data.expiresIn must be 60 to {settings.export_url_max_seconds} seconds")
    rows = _export_rows(job, bucket, settings.export_max_input_bytes)
    columns = job.data.get("columns")
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        columns = list(seen)
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise PermanentJobError("data.columns must be a list of names")
    job.progress(50, f"writing {len(rows)} rows")
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({c: _cell(row.get(c)) for c in columns} for row in rows)
        body, content_type = buffer.getvalue().encode(), "text/csv"
    else:
        body, content_type = json.dumps([{c: row.get(c) for c in columns} for row in rows]).encode(), "application/json"
    key = f"exports/{job.user_id}/{job.job_id}.{fmt}"
    exports.write_export(bucket, key, body, content_type=content_type)
    url = exports.download_url(bucket, key, expires_in=expires_in)
    return {"bucket": bucket, "key": key, "format": fmt, "rows": len(rows), "bytes": len(body), "url": url, "expiresAt": iso(now_ms() + expires_in * 1000)}


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


def _export_rows(job: JobContext, bucket: str, max_bytes: int) -> list[dict[str, Any]]:
    if "rows" in job.data:
        rows = job.data["rows"]
    else:
        key = job.data.get("file")
        prefix = f"uploads/{job.user_id}/"
        if not isinstance(key, str) or not key.startswith(prefix) or ".." in key.split("/"):
            raise PermanentJobError(f"give data.rows, or data.file under {prefix} (your uploads in the reports bucket)")
        try:
            raw = exports.read_object(bucket, key, max_bytes=max_bytes)
        except NotFound as err:
            raise PermanentJobError(f"data.file {key} does not exist") from err
        if len(raw) > max_bytes:
            raise PermanentJobError(f"data.file is larger than {max_bytes} bytes")
        rows = _parse_csv(raw) if key.lower().endswith(".csv") else _parse_rows(raw)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows) or len(rows) > MAX_EXPORT_ROWS:
        raise PermanentJobError(f"the rows must be a list of at most {MAX_EXPORT_ROWS} objects")
    return rows


def _parse_csv(raw: bytes) -> list[dict[str, Any]]:
    """A CSV upload with a header row: one object per line (values as text)."""
    try:
        return [dict(row) for row in csv.DictReader(io.StringIO(raw.decode("utf-8-sig", "replace")))]
    except csv.Error as err:
        raise PermanentJobError(f"data.file is not valid CSV: {err}") from err


def _parse_rows(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace").strip()
    try:
        return json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as err:
        raise PermanentJobError(f"data.file is neither a JSON array nor JSON lines: {err}") from err


# ---- invoke (seed 003's executeServiceMethod, on Lambda) ------------------------------------------
def invoke(job: JobContext) -> Any:
    """data {functionArn, payload?, timeoutSeconds?, permanentErrors?}: the function's answer is the result.

    The function gets ``payload`` (default: the job's own fields, as a Lambda target sends them)
    and must be in the stack's LambdaTargetArns. Its answer is recorded as a once-only step, so
    an attempt that fails after it (writing the result, say) does not invoke it again.
    """
    import re

    function = job.data.get("functionArn")
    if not isinstance(function, str) or not re.fullmatch(LAMBDA_ARN_PATTERN, function):
        raise PermanentJobError("data.functionArn must be a Lambda function ARN")
    if function not in allowed_functions(job.settings):
        raise PermanentJobError(f"function {function} is not in the stack's LambdaTargetArns")
    timeout = job.data.get("timeoutSeconds", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 900:
        raise PermanentJobError("data.timeoutSeconds must be above 0 and at most 900")
    permanent = job.data.get("permanentErrors") or []
    payload = job.data.get("payload")
    if payload is None:
        from processors.lambda_target import function_payload

        payload = function_payload(job)

    def call() -> Any:
        try:
            answer = lambda_functions.invoke(function, payload, timeout_seconds=float(timeout))
        except JobqError as err:
            raise RetryableJobError(f"function {function} could not be invoked: {err.message}") from err
        if answer.function_error:
            message = f"function {function} raised {answer.error_type}: {answer.error_message}"
            if answer.error_type in permanent:
                raise PermanentJobError(message)
            raise RetryableJobError(message)
        return answer.payload

    return job.once("invoke", call)
