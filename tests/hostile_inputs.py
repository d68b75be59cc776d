"""Hostile requests for every route of the app, generated from its OpenAPI document.

Each route is sent, one at a time: every path parameter set to each hostile text, every
query parameter set to each hostile text or number, and (routes with a body) hostile raw
bodies and a valid body with each top-level field set to each hostile JSON value. A new
route or parameter is covered without a change here. Used in process (tests/unit) and
over HTTP against the local stack (tests/integration).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

# Path and query texts (percent-encoded when sent); the %-prefixed ones are sent as they are:
# invalid UTF-8 and an encoded lone surrogate.
HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "..",
    "../../etc/passwd",
    "#",
    "JOB#alice#x",
    "repeat:x:20300101T000000Z",
    "a" * 3000,
    "é😀",
    "\r\nX-Injected: 1",
    "${jndi:ldap://127.0.0.1/x}",
    "'\";--",
    "<script>alert(1)</script>",
    "%FF%FE",
    "%ED%A0%80",
]
HOSTILE_NUMBERS = ["-1", "0", "1e20", "99999999999999999999", "NaN", "Infinity", "1.5", "0x10", "true", "[]"]
# JSON values for a body's fields (raw JSON text)
HOSTILE_VALUES = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e20",
    "1e400",
    "-1e400",
    "99999999999999999999999",
    "-1",
    "0",
    "1.5",
    '"\\ud800"',
    '"x\\udfff"',
    '"\\u0000"',
    "null",
    "true",
    "[]",
    "{}",
    '"' + "x" * 70_000 + '"',
    "[" * 60 + "]" * 60,
    '"9999-12-31T23:59:59-23:59"',
    '"0001-01-01T00:00:00+01:00"',
    '"https://169.254.169.254/latest/meta-data/"',
    '"http://127.0.0.1:9/\\r\\nX: y"',
    '{"S": 123}',
]
HOSTILE_BODIES: list[bytes] = [
    b"NaN",
    b"[]",
    b'"text"',
    b"null",
    b"{",
    b'{"a": NaN}',
    b'{"\\ud800": 1}',
    b"\xff\xfe{}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"jobs": [' + b",".join([b'{"queue": "email-sending", "type": "send-email", "data": {"x": NaN}}'] * 3) + b"]}",
]

# Valid values for path parameters, so the other parts of a request reach the route's code.
PATH_DEFAULTS = {"job_id": "hostile-job", "user_id": "alice", "job_type": "hook"}
NAME_DEFAULTS = {"/queues": "email-sending", "/schedules": "nightly", "/scheduler": "nightly"}
# Valid bodies, whose fields are then replaced one by one.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/jobs"): {"queue": "email-sending", "type": "send-email", "data": {"to": "a@example.com"}, "options": {}},
    ("POST", "/jobs/bulk"): {"jobs": [{"queue": "email-sending", "type": "send-email", "data": {}}]},
    ("PATCH", "/queues/{name}"): {"defaultAttempts": 3},
    ("POST", "/queues/{name}/clean"): {"olderThan": 86_400_000, "status": "completed", "limit": 10},
    ("POST", "/queues/{name}/dead-letters/redrive"): {"jobIds": ["hostile-job"]},
    ("PUT", "/queues/{name}/processors/{job_type}"): {"kind": "http", "url": "https://worker.example.com/", "timeoutSeconds": 5},
    ("POST", "/schedules"): {"name": "hostile", "queue": "email-sending", "type": "send-email", "data": {}, "cron": "0 2 * * *"},
    ("POST", "/scheduler/repeating"): {"name": "hostile2", "queue": "email-sending", "type": "send-email", "data": {}, "every": 60_000},
    ("POST", "/scheduler/delayed"): {"queue": "email-sending", "type": "send-email", "data": {}, "delay": 60_000},
}


@dataclass(frozen=True)
class Case:
    method: str
    route: str  # the template, for reports
    path: str  # percent-encoded
    query: str
    body: bytes | None
    what: str

    def __str__(self) -> str:
        return f"{self.method} {self.route} [{self.what}]"


def _encode(text: str) -> str:
    return text if text.startswith("%") else quote(text, safe="")


def _fill(route: str, params: dict[str, str]) -> str:
    path = route
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    return path


def _defaults(route: str, names: list[str]) -> dict[str, str]:
    prefix = "/" + route.strip("/").split("/")[0]
    return {n: PATH_DEFAULTS.get(n) or NAME_DEFAULTS.get(prefix, "x") for n in names}


def _object_fields(route_body: dict[str, Any]) -> list[str]:
    return sorted(route_body)


def cases(openapi: dict[str, Any]) -> Iterator[Case]:
    for route, operations in sorted(openapi["paths"].items()):
        for method, op in sorted(operations.items()):
            method = method.upper()
            params = op.get("parameters", [])
            path_names = [p["name"] for p in params if p["in"] == "path"]
            query_names = [p["name"] for p in params if p["in"] == "query"]
            base = _defaults(route, path_names)
            valid = VALID_BODIES.get((method, route))
            valid_bytes = json.dumps(valid).encode() if valid is not None else None
            base_path = _fill(route, {k: _encode(v) for k, v in base.items()})
            for name in path_names:
                for text in HOSTILE_TEXT:
                    if text == "":
                        continue  # an empty segment is another route (or none)
                    path = _fill(route, {**{k: _encode(v) for k, v in base.items()}, name: _encode(text)})
                    yield Case(method, route, path, "", valid_bytes, f"path {name}={text[:20]!r}")
            for name in query_names:
                for text in HOSTILE_TEXT + HOSTILE_NUMBERS:
                    yield Case(method, route, base_path, f"{name}={_encode(text)}", valid_bytes, f"query {name}={text[:20]!r}")
            if "requestBody" not in op:
                continue
            for raw in HOSTILE_BODIES:
                yield Case(method, route, base_path, "", raw, f"body {raw[:20]!r}")
            for field in _object_fields(valid or {}):
                for value in HOSTILE_VALUES:
                    text = json.dumps({k: v for k, v in (valid or {}).items() if k != field})[:-1]
                    joiner = ", " if len(text) > 1 else ""
                    body = f'{text}{joiner}"{field}": {value}}}'.encode()
                    yield Case(method, route, base_path, "", body, f"body {field}={value[:20]}")


# Every listing, as the admin reads it, that must still answer 200 after the sweep.
LISTINGS = [
    ("/jobs", "queue=email-sending"),
    ("/jobs/user/alice", ""),
    ("/jobs/user/root", ""),
    ("/queues", ""),
    ("/queues/email-sending/jobs", ""),
    ("/queues/email-sending/dead-letters", ""),
    ("/schedules", ""),
]
