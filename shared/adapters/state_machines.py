"""Step Functions state machines as job processors: start an execution, stop it, read how it ended.

An execution's name is the job's lease token of the attempt that started it (32 hex
characters, unique per attempt), so:

* the execution's ARN follows from the state machine and the job (no item maps one to the
  other): the API stops a cancelled job's execution, and the end event's handler knows the
  execution is the job's current attempt when the name is the job's lease token;
* a StartExecution retried after a lost answer starts nothing new (Step Functions treats the
  same name and input as the same execution).

Locally the Step Functions API is the local stack's (infra/local/state_machines.py), reached
through ``AWS_ENDPOINT_URL_SFN`` as on AWS through Step Functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors

# What Step Functions accepts as an execution's input (and returns as its output).
MAX_INPUT_BYTES = 256 * 1024


@dataclass(frozen=True)
class ExecutionEnd:
    """How an execution ended, as DescribeExecution (or its status-change event) tells."""

    status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED (RUNNING while it runs)
    input: Any = None
    output: Any = None
    error: str | None = None
    cause: str | None = None


def execution_arn(state_machine_arn: str, name: str) -> str:
    """arn:aws:states:<region>:<account>:stateMachine:<machine> -> ...:execution:<machine>:<name>."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def start(state_machine_arn: str, name: str, payload: dict[str, Any]) -> str:
    """Start an execution named ``name`` with ``payload`` as input; its ARN."""
    with aws_errors(f"cannot start an execution of {state_machine_arn}"):
        out = clients.client("stepfunctions").start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
    return str(out["executionArn"])


def stop(arn: str, *, cause: str) -> None:
    with aws_errors(f"cannot stop execution {arn}"):
        clients.client("stepfunctions").stop_execution(executionArn=arn, cause=cause[:256])


def describe(arn: str) -> ExecutionEnd:
    """The execution's status, input and output (read when its event left them out: past 256 KB)."""
    with aws_errors(f"cannot read execution {arn}"):
        out = clients.client("stepfunctions").describe_execution(executionArn=arn)
    return ExecutionEnd(
        status=str(out.get("status", "")),
        input=json_of(out.get("input")),
        output=json_of(out.get("output")),
        error=out.get("error"),
        cause=out.get("cause"),
    )


def json_of(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


__all__ = ["MAX_INPUT_BYTES", "ExecutionEnd", "describe", "execution_arn", "json_of", "start", "stop"]
