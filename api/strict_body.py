"""Every JSON body is strict JSON before any route sees it (shared/strict_json.py).

FastAPI parses bodies with Python's ``json``, which accepts ``NaN``, ``Infinity`` and lone
surrogates; this app-wide dependency reads the same bytes first and answers 400 naming
the field, so nothing of such a request is validated further, stored or enqueued.
"""

from __future__ import annotations

from fastapi import Request

from shared import strict_json
from shared.errors import Invalid


async def strict_json_body(request: Request) -> None:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    body = await request.body()  # cached on the request: the route reads the same bytes
    if not body.strip():
        return
    try:
        value = strict_json.loads(body)
    except RecursionError as err:
        raise Invalid(f"the body nests deeper than {strict_json.MAX_DEPTH} levels") from err
    except ValueError:
        return  # not JSON at all: the route's own parsing answers 400
    reason = strict_json.problem(value, "")
    if reason:
        raise Invalid(f"the body is not strict JSON: {reason}")
