"""The two Lambda API calls jobq makes, served on 127.0.0.1 for the emulated mappings.

The API pauses a queue with ``lambda.update_event_source_mapping(UUID=..., Enabled=False)``
and reads the state with ``get_event_source_mapping``. The local stack points boto3 at this
server with ``AWS_ENDPOINT_URL_LAMBDA`` (boto3's per-service endpoint variable, which wins
over ``AWS_ENDPOINT_URL``), so the very same call flips the emulated mapping's switch:

    GET /2015-03-31/event-source-mappings/{UUID}   -> the mapping's configuration
    PUT /2015-03-31/event-source-mappings/{UUID}   {"Enabled": false, ...} -> the same, updated

It also serves ``GetFunction`` (``GET /2015-03-31/functions/{FunctionName}``: a stand-in is
``Active``; the HealthFunction's check of Lambda targets) and ``Invoke`` (``POST /2015-03-31/functions/{FunctionName}/invocations``) for the
local stack's stand-in functions (infra/local/functions.py): the handler runs in the request's
thread; a raised exception answers as Lambda does, 200 with ``X-Amz-Function-Error: Unhandled``
and ``{errorMessage, errorType, stackTrace}``. Only ``RequestResponse`` is served.

Everything else answers as Lambda does for what it does not know: 404
``ResourceNotFoundException`` (or 400 ``InvalidParameterValueException`` for a body it cannot
read). ``Enabled`` and ``ScalingConfig.MaximumConcurrency`` are honoured; the other fields are fixed by the template.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import traceback
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from infra.local.esm import EventSourceMapping, MappingRegistry
from infra.local.functions import LocalFunctions

log = logging.getLogger("jobq.local.lambda")

__all__ = ["LambdaApi", "mapping_configuration"]

_PATH = re.compile(r"^/2015-03-31/event-source-mappings/([0-9a-fA-F-]{36})/?$")
_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
_FUNCTION = re.compile(r"^/2015-03-31/functions/([^/]+)/?$")


def mapping_configuration(mapping: EventSourceMapping, *, last_modified: float) -> dict[str, Any]:
    """EventSourceMappingConfiguration as Lambda returns it (the fields that apply to SQS)."""
    spec = mapping.spec
    config: dict[str, Any] = {
        "UUID": spec.uuid,
        "BatchSize": spec.batch_size,
        "MaximumBatchingWindowInSeconds": spec.maximum_batching_window_seconds,
        "EventSourceArn": spec.queue_arn,
        "FunctionArn": spec.function.arn,
        "LastModified": last_modified,
        "State": "Enabled" if mapping.enabled else "Disabled",
        "StateTransitionReason": "USER_INITIATED",
        "FunctionResponseTypes": ["ReportBatchItemFailures"] if spec.report_batch_item_failures else [],
    }
    if spec.maximum_concurrency or mapping.max_concurrency:
        config["ScalingConfig"] = {"MaximumConcurrency": mapping.max_concurrency}
    return config


class LambdaApi:
    """A ThreadingHTTPServer on 127.0.0.1 (port 0: any free one) over a MappingRegistry."""

    def __init__(self, mappings: MappingRegistry, *, port: int = 0, functions: LocalFunctions | None = None) -> None:
        self.mappings = mappings
        self.functions = functions or LocalFunctions()
        self.invocations = 0
        self._started = datetime.now(tz=UTC).timestamp()
        self._modified: dict[str, float] = {}
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                api._handle(self, update=None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                api._invoke(self, self.rfile.read(length))

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("not an object")
                except ValueError:
                    api._error(self, 400, "InvalidParameterValueException", "the request body is not a JSON object")
                    return
                api._handle(self, update=body)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LambdaApi:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="lambda-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(2.0)
            self._thread = None
        self._server.server_close()

    # -- requests --

    def _handle(self, request: BaseHTTPRequestHandler, *, update: dict[str, Any] | None) -> None:
        function = _FUNCTION.match(request.path.split("?", 1)[0])
        if function and update is None:
            self._get_function(request, unquote(function.group(1)))
            return
        match = _PATH.match(request.path.split("?", 1)[0])
        if not match:
            self._error(request, 404, "ResourceNotFoundException", f"not served by the local stack: {request.command} {request.path}")
            return
        mapping_uuid = match.group(1)
        try:
            mapping = self.mappings.by_uuid(mapping_uuid)
        except KeyError:
            self._error(request, 404, "ResourceNotFoundException", f"The resource you requested does not exist. (UUID {mapping_uuid})")
            return
        with self._lock:
            if update is not None and "Enabled" in update:
                if not isinstance(update["Enabled"], bool):
                    self._error(request, 400, "InvalidParameterValueException", "Enabled must be a boolean")
                    return
                if mapping.enabled != update["Enabled"]:
                    mapping.enabled = update["Enabled"]
                    self._modified[mapping_uuid] = datetime.now(tz=UTC).timestamp()
            scaling = (update or {}).get("ScalingConfig")
            if scaling is not None:
                maximum = scaling.get("MaximumConcurrency") if isinstance(scaling, dict) else None
                if isinstance(maximum, bool) or not isinstance(maximum, int) or not 2 <= maximum <= 1000:
                    self._error(request, 400, "InvalidParameterValueException", "ScalingConfig.MaximumConcurrency must be from 2 to 1000")
                    return
                mapping.set_max_concurrency(maximum)
                self._modified[mapping_uuid] = datetime.now(tz=UTC).timestamp()
            config = mapping_configuration(mapping, last_modified=self._modified.get(mapping_uuid, self._started))
        self._send(request, 202 if update is not None else 200, config)

    def _get_function(self, request: BaseHTTPRequestHandler, name: str) -> None:
        if self.functions.resolve(name) is None:
            self._error(request, 404, "ResourceNotFoundException", f"Function not found: {name}")
            return
        self._send(request, 200, {"Configuration": {"FunctionName": name.split(":")[6] if name.startswith("arn:") else name, "State": "Active"}})

    def _invoke(self, request: BaseHTTPRequestHandler, raw: bytes) -> None:
        match = _INVOKE.match(request.path.split("?", 1)[0])
        if not match:
            self._error(request, 404, "ResourceNotFoundException", f"not served by the local stack: {request.command} {request.path}")
            return
        name = unquote(match.group(1))
        handler = self.functions.resolve(name)
        if handler is None:
            self._error(request, 404, "ResourceNotFoundException", f"Function not found: {name}")
            return
        if request.headers.get("X-Amz-Invocation-Type", "RequestResponse") != "RequestResponse":
            self._error(request, 400, "InvalidParameterValueException", "the local stack serves RequestResponse invocations only")
            return
        try:
            event = json.loads(raw or b"{}")
        except ValueError:
            self._error(request, 400, "InvalidRequestContentException", "Could not parse request body into json")
            return
        with self._lock:
            self.invocations += 1
        try:
            result = handler(event, None)
        except Exception as err:  # the function raised: Lambda reports it in the answer, not as an API error
            body = {"errorMessage": str(err), "errorType": type(err).__name__, "stackTrace": traceback.format_tb(err.__traceback__)[-5:]}
            self._send_raw(request, 200, json.dumps(body).encode(), {"X-Amz-Function-Error": "Unhandled", "X-Amz-Executed-Version": "$LATEST"})
            return
        self._send_raw(request, 200, json.dumps(result).encode(), {"X-Amz-Executed-Version": "$LATEST"})

    @staticmethod
    def _send_raw(request: BaseHTTPRequestHandler, status: int, raw: bytes, headers: dict[str, str]) -> None:
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(raw)

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(raw)

    def _error(self, request: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        self._send(request, status, {"Type": "User", "Message": message}, {"x-amzn-ErrorType": code})
