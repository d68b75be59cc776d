"""Generic tasks (seed 003's service registry): a job that runs a registered service method.

    POST /jobs {"service": "ExportService", "method": "exportResults",
                "args": [[{"name": "a"}], "csv", {"includeHeaders": true}]}

(or the same under ``data`` with ``"type": "generic-task"``). Only what ``shared.catalog.SERVICES``
lists can run: registering a service is one line there, naming its class here (imported when a
task of it runs, never by the API) and the methods a job may call. An unknown service or method
is a 400 at creation that lists what is registered.

The method gets ``args`` (and ``kwargs``) as JSON values; a method that declares a keyword
``job`` also gets the job's context (to report progress, log, or see a cancel). Its return
value is the job's result.
"""

from __future__ import annotations

import csv
import inspect
import io
import time
from functools import cache
from typing import Any

from processors.registry import import_path
from shared.adapters import clients
from shared.catalog import SERVICES, GenericTask
from shared.errors import PermanentJobError
from shared.worker import JobContext


@cache
def _instance(service: str) -> Any:
    return import_path(SERVICES[service][0])()


def run_generic_task(job: JobContext) -> Any:
    """The code processor of ``generic-task``: call the registered method with the job's arguments."""
    try:
        task = GenericTask.model_validate(job.data)  # checked at creation; the registry may have changed since
    except ValueError as err:
        raise PermanentJobError(f"generic task: {err}") from err
    method = getattr(_instance(task.service), task.method)
    kwargs = dict(task.kwargs)
    if "job" in inspect.signature(method).parameters:
        kwargs["job"] = job
    try:
        inspect.signature(method).bind(*task.args, **kwargs)
    except TypeError as err:  # arguments that do not fit the method: retrying cannot fix them
        raise PermanentJobError(f"{task.service}.{task.method}: {err}") from err
    return method(*task.args, **kwargs)


# ---- the example services ---------------------------------------------------------------------------
class ExportService:
    """Seed 003's ``ExportService.exportResults(results, format, options)``: rows to CSV, stored in S3."""

    def exportResults(  # the seed's method names, as clients send them
        self, results: list[dict[str, Any]], format: str = "csv", options: dict[str, Any] | None = None, *, job: JobContext
    ) -> dict[str, Any]:
        if format != "csv":
            raise PermanentJobError(f"format '{format}' is not supported; use csv")
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise PermanentJobError("results must be a list of objects")
        bucket = job.settings.reports_bucket
        if not bucket:
            raise PermanentJobError("no reports bucket is configured (JOBQ_REPORTS_BUCKET)")
        columns = sorted({key for row in results for key in row})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        if (options or {}).get("includeHeaders", True):
            writer.writeheader()
        writer.writerows(results)
        key = f"exports/{job.user_id}/{job.job_id}.csv"
        clients.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue().encode(), ContentType="text/csv")
        return {"bucket": bucket, "key": key, "rows": len(results), "format": format}


class TaskUtils:
    """Seed 003's built-in utility functions."""

    def calculateSum(self, numbers: list[float]) -> float:
        if not isinstance(numbers, list) or not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
            raise PermanentJobError("calculateSum takes a list of numbers")
        return sum(numbers)

    def delay(self, ms: int, *, job: JobContext) -> dict[str, int]:
        """Wait ``ms`` (up to a minute), in steps that notice a cancel."""
        if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms <= 60_000:
            raise PermanentJobError("delay takes milliseconds from 0 to 60000")
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) * 1000 < ms:
            time.sleep(min(ms / 1000 - elapsed, 1.0))
            job.progress(min(100, round((time.monotonic() - started) * 100_000 / ms)))
        return {"waited": ms}

    def processData(
        self, data: list[Any], operation: str = "count", context: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if not isinstance(data, list):
            raise PermanentJobError("processData takes a list")
        if operation == "count":
            return {"count": len(data)}
        if operation == "reverse":
            return {"data": list(reversed(data))}
        raise PermanentJobError(f"operation '{operation}' is not supported; use count or reverse")
