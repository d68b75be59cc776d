"""Step Functions for the local stack: stand-in state machines, their executions, and their end events.

jobq makes three Step Functions calls (shared/adapters/state_machines.py): StartExecution,
StopExecution and DescribeExecution (ListExecutions is served too, for tests). This server answers them on 127.0.0.1 in Step Functions'
JSON protocol (``X-Amz-Target: AWSStepFunctions.<Operation>``); the local stack points boto3
at it with ``AWS_ENDPOINT_URL_SFN``, so the adapter's calls are the ones made on AWS.

A stand-in state machine is a Python callable ``run(input, stopped) -> output`` bound to a
name (as infra/local/functions.py binds stand-in functions): an execution runs it in a thread;
what it returns is the execution's output (SUCCEEDED), what it raises fails it (FAILED, the
error is the exception's class name, or its ``error`` attribute, and the cause its message).
StopExecution ends it ABORTED at once (``stopped`` is set, so a waiting stand-in returns).
Each end is sent as EventBridge's "Step Functions Execution Status Change" event to
``on_end`` (the local stack invokes the functions whose EventBridgeRule matches it).

Bind more: ``JOBQ_LOCAL_STATE_MACHINES="name=module:attr,..."`` or ``LocalStateMachines.bind``.
Their ARNs are ``arn:aws:states:<region>:123456789012:stateMachine:<name>``; the local stack
lists them all in ``StateMachineTargetArns``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infra.local.functions import LOCAL_ACCOUNT

log = logging.getLogger("jobq.local.states")

StandIn = Callable[[dict[str, Any], threading.Event], Any]
EVENT_DETAIL_TYPE = "Step Functions Execution Status Change"


class ExecutionFailed(Exception):
    """A stand-in's way to fail with an error name of its choosing (a Fail state's Error and Cause)."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(cause or error)
        self.error = error


_attempts: dict[str, int] = {}
_lock = threading.Lock()


def echo(execution_input: dict[str, Any], stopped: threading.Event) -> dict[str, Any]:
    """Succeeds with the job's data and attempt."""
    return {"echo": execution_input.get("data"), "attempt": execution_input.get("attempt")}


def fail_first(execution_input: dict[str, Any], stopped: threading.Event) -> dict[str, Any]:
    """Fails (States.TaskFailed) the first ``data.failTimes`` (default 1) executions of a job, then succeeds."""
    times = int((execution_input.get("data") or {}).get("failTimes", 1))
    key = f"{execution_input.get('userId')}/{execution_input.get('jobId')}"
    with _lock:
        _attempts[key] = _attempts.get(key, 0) + 1
        seen = _attempts[key]
    if seen <= times:
        raise ExecutionFailed("States.TaskFailed", f"failing on purpose ({seen} of {times})")
    return {"succeededOnExecution": seen}


def reject(execution_input: dict[str, Any], stopped: threading.Event) -> None:
    """Always fails with the error InvalidInput (a target may list it as permanent)."""
    raise ExecutionFailed("InvalidInput", f"cannot process {execution_input.get('type')}")


def wait(execution_input: dict[str, Any], stopped: threading.Event) -> dict[str, Any]:
    """Runs ``data.seconds`` (default 30) unless stopped first."""
    seconds = float((execution_input.get("data") or {}).get("seconds", 30))
    return {"waited": seconds, "stopped": stopped.wait(seconds)}


DEFAULTS: dict[str, str] = {
    "jobq-local-sfn-echo": "infra.local.state_machines:echo",
    "jobq-local-sfn-fail-first": "infra.local.state_machines:fail_first",
    "jobq-local-sfn-reject": "infra.local.state_machines:reject",
    "jobq-local-sfn-wait": "infra.local.state_machines:wait",
}


def state_machine_arn(name: str, region: str) -> str:
    return f"arn:aws:states:{region}:{LOCAL_ACCOUNT}:stateMachine:{name}"


def _load(path: str) -> StandIn:
    module, _, name = path.partition(":")
    run: StandIn = getattr(importlib.import_module(module), name)
    return run


def _from_environ() -> dict[str, str]:
    bound: dict[str, str] = {}
    for part in os.environ.get("JOBQ_LOCAL_STATE_MACHINES", "").split(","):
        name, sep, path = part.strip().partition("=")
        if sep and name and path:
            bound[name.strip()] = path.strip()
    return bound


@dataclass
class _Execution:
    arn: str
    machine_arn: str
    name: str
    input: str
    started: datetime
    status: str = "RUNNING"
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    stopped_at: datetime | None = None
    stop: threading.Event = field(default_factory=threading.Event)


class _ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class LocalStateMachines:
    """A ThreadingHTTPServer on 127.0.0.1 serving the stand-ins' executions."""

    def __init__(self, *, region: str, on_end: Callable[[dict[str, Any]], None] | None = None, port: int = 0) -> None:
        self.region = region
        self.on_end = on_end
        self._paths: dict[str, str] = {**DEFAULTS, **_from_environ()}
        self._executions: dict[str, _Execution] = {}
        self._lock = threading.Lock()
        self.started = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                api._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ---- the stand-ins -----------------------------------------------------------------
    def bind(self, name: str, path: str) -> None:
        _load(path)
        self._paths[name] = path

    def arns(self) -> list[str]:
        return [state_machine_arn(name, self.region) for name in sorted(self._paths)]

    # ---- the server --------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LocalStateMachines:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-states", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            running = [e for e in self._executions.values() if e.status == "RUNNING"]
        for execution in running:
            execution.stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        length = int(request.headers.get("Content-Length") or 0)
        try:
            body = json.loads(request.rfile.read(length) or b"{}")
            call = {
                "StartExecution": self._start,
                "StopExecution": self._stop,
                "DescribeExecution": self._describe,
                "ListExecutions": self._list,
            }.get(operation)
            if call is None:
                raise _ApiError("UnknownOperationException", f"{operation} is not served by the local stack")
            status, answer = 200, call(body)
        except _ApiError as err:
            status, answer = 400, {"__type": err.code, "message": str(err)}
        except ValueError:
            status, answer = 400, {"__type": "InvalidParameterValueException", "message": "the body is not JSON"}
        data = json.dumps(answer, default=str).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/x-amz-json-1.0")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _start(self, body: dict[str, Any]) -> dict[str, Any]:
        machine_arn = str(body.get("stateMachineArn", ""))
        name = str(body.get("name") or uuid.uuid4().hex)
        path = self._paths.get(machine_arn.rpartition(":")[2]) if machine_arn == state_machine_arn(machine_arn.rpartition(":")[2], self.region) else None
        if path is None:
            raise _ApiError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{machine_arn}'")
        arn = machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"
        text = str(body.get("input") or "{}")
        with self._lock:
            known = self._executions.get(arn)
            if known is not None:
                if known.input != text:
                    raise _ApiError("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'")
                return {"executionArn": arn, "startDate": known.started.timestamp()}  # the same name and input: the same execution
            execution = self._executions[arn] = _Execution(arn, machine_arn, name, text, datetime.now(tz=UTC))
            self.started += 1
        threading.Thread(target=self._run, args=(execution, _load(path)), name=f"execution-{name[:12]}", daemon=True).start()
        return {"executionArn": arn, "startDate": execution.started.timestamp()}

    def _run(self, execution: _Execution, run: StandIn) -> None:
        try:
            output = run(json.loads(execution.input), execution.stop)
            ended = ("SUCCEEDED", json.dumps(output), None, None)
        except Exception as err:  # the stand-in failed: the execution did
            ended = ("FAILED", None, getattr(err, "error", type(err).__name__), str(err)[:2000])
        self._end(execution, *ended)

    def _stop(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            execution = self._executions.get(str(body.get("executionArn", "")))
        if execution is None:
            raise _ApiError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{body.get('executionArn')}'")
        execution.stop.set()
        self._end(execution, "ABORTED", None, body.get("error"), body.get("cause"))
        return {"stopDate": datetime.now(tz=UTC).timestamp()}

    def _list(self, body: dict[str, Any]) -> dict[str, Any]:
        machine_arn = str(body.get("stateMachineArn", ""))
        with self._lock:
            found = [e for e in self._executions.values() if e.machine_arn == machine_arn]
        return {
            "executions": [
                {"executionArn": e.arn, "stateMachineArn": e.machine_arn, "name": e.name, "status": e.status, "startDate": e.started.timestamp()}
                for e in found
            ]
        }

    def _describe(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            execution = self._executions.get(str(body.get("executionArn", "")))
        if execution is None:
            raise _ApiError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{body.get('executionArn')}'")
        answer: dict[str, Any] = {
            "executionArn": execution.arn,
            "stateMachineArn": execution.machine_arn,
            "name": execution.name,
            "status": execution.status,
            "startDate": execution.started.timestamp(),
            "input": execution.input,
        }
        for key, value in (("output", execution.output), ("error", execution.error), ("cause", execution.cause)):
            if value is not None:
                answer[key] = value
        if execution.stopped_at is not None:
            answer["stopDate"] = execution.stopped_at.timestamp()
        return answer

    def _end(self, execution: _Execution, status: str, output: str | None, error: str | None, cause: str | None) -> None:
        with self._lock:
            if execution.status != "RUNNING":
                return  # stopped before its stand-in returned: it stays ABORTED
            execution.status, execution.output, execution.error, execution.cause = status, output, error, cause
            execution.stopped_at = datetime.now(tz=UTC)
        if self.on_end is not None:
            self.on_end(self.event_of(execution))

    def event_of(self, execution: _Execution) -> dict[str, Any]:
        """EventBridge's status-change event for the execution, as Step Functions sends it."""
        stopped = execution.stopped_at or datetime.now(tz=UTC)
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": EVENT_DETAIL_TYPE,
            "source": "aws.states",
            "account": LOCAL_ACCOUNT,
            "time": stopped.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [execution.arn],
            "detail": {
                "executionArn": execution.arn,
                "stateMachineArn": execution.machine_arn,
                "name": execution.name,
                "status": execution.status,
                "startDate": int(execution.started.timestamp() * 1000),
                "stopDate": int(stopped.timestamp() * 1000),
                "input": execution.input,
                "output": execution.output,
                "inputDetails": {"included": True},
                "outputDetails": {"included": True},
                "error": execution.error,
                "cause": execution.cause,
            },
        }


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge's matching for the patterns jobq writes: lists of exact values, nested objects."""
    for key, wanted in pattern.items():
        value = event.get(key)
        if isinstance(wanted, dict):
            if not isinstance(value, dict) or not matches(wanted, value):
                return False
        elif isinstance(wanted, list):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


__all__ = ["DEFAULTS", "EVENT_DETAIL_TYPE", "ExecutionFailed", "LocalStateMachines", "matches", "state_machine_arn"]
