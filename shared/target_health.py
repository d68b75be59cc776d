"""Whether a queue's targets answer (seed 000's "service connectivity"), probed by the HealthFunction.

* an HTTP target with a ``healthUrl``: one GET, with the url's address rules checked again at
  probe time (a name may resolve elsewhere than when it was registered); a 2xx within
  ``PROBE_TIMEOUT_SECONDS`` is reachable, anything else is not, and why;
* a Lambda target (unless ``healthCheck: false``): the function's ``State`` from GetFunction;
  anything but ``Active`` (or an error reading it) is unreachable.

Every probe of a run shares one time budget, so a queue of slow targets cannot hold the
HealthFunction past its timeout: a target not probed in time is reported as such, not as down.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from shared.errors import JobqError
from shared.models import AnyTarget, HttpTarget, LambdaTarget

PROBE_TIMEOUT_SECONDS = 3.0
BUDGET_SECONDS = 10.0


def probe_http(url: str, timeout: float) -> str | None:
    """None when ``url`` answers a GET with a 2xx within ``timeout``; else why not."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("GET", path, headers={"User-Agent": "jobq-health"})
        status = connection.getresponse().status
    except TimeoutError:
        return f"no answer within {timeout:.1f} s"
    except OSError as err:
        return f"cannot connect ({type(err).__name__})"
    except http.client.HTTPException as err:
        return f"a broken answer ({type(err).__name__})"
    finally:
        connection.close()
    return None if 200 <= status < 300 else f"answered {status}"


def probe_function(function_arn: str) -> str | None:
    from shared.adapters import lambda_functions

    try:
        state, why = lambda_functions.function_state(function_arn)
    except JobqError as err:
        return err.message
    return None if state == "Active" else f"the function is {state}" + (f": {why}" if why else "")


def unreachable_targets(
    targets: dict[str, AnyTarget],
    *,
    allow_loopback_http: bool,
    http: Callable[[str, float], str | None] = probe_http,
    function: Callable[[str], str | None] = probe_function,
    budget_seconds: float = BUDGET_SECONDS,
) -> dict[str, str]:
    """Job type -> why its target is unreachable, for the targets that declare a health check."""
    deadline = time.monotonic() + budget_seconds
    found: dict[str, str] = {}
    for job_type, target in sorted(targets.items()):
        left = deadline - time.monotonic()
        if isinstance(target, HttpTarget) and target.health_url:
            if left <= 0:
                found[job_type] = "not probed: the health check ran out of time"
                continue
            try:
                HttpTarget(url=target.health_url).check_url(allow_loopback_http=allow_loopback_http)
            except ValueError as err:
                found[job_type] = f"healthUrl refused: {err}"
                continue
            reason = http(target.health_url, min(PROBE_TIMEOUT_SECONDS, left))
        elif isinstance(target, LambdaTarget) and target.health_check is not False:
            if left <= 0:
                found[job_type] = "not probed: the health check ran out of time"
                continue
            reason = function(target.function_arn)
        else:
            continue
        if reason is not None:
            found[job_type] = reason
    return found
