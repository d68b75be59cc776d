"""``python -m infra.local``: run the local stack on 127.0.0.1 until Ctrl-C.

Prints the API URL, the moto endpoint, the queues and how to get a token, then a last
line ``jobq local stack ready: http://127.0.0.1:<port>`` that scripts and tests wait for.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from infra.local.issuer import DEFAULT_API_PORT, DEFAULT_STATE_DIR
from infra.local.stack import DEFAULT_STACK_NAME, DEFAULT_TEMPLATE, LocalStack

DEFAULT_AWS_PORT = 5000
DASHBOARD_USER = "local-admin"
DEFAULT_WS_PORT = 8001
_EXAMPLE_JOB = '{"queue":"email-sending","type":"send-email","data":{"to":"bob@example.com","subject":"Hi","body":"Hello"}}'


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.local", description="Run jobq locally (moto, no AWS account).")
    parser.add_argument("--port", type=int, default=DEFAULT_API_PORT, help="API port (default 8000; 0 = any free port)")
    parser.add_argument(
        "--aws-port", type=int, default=None, help="moto port (default 5000 if free, else any free port; 0 = any)"
    )
    parser.add_argument(
        "--ws-port", type=int, default=None, help="WebSocket API port (default 8001 if free, else any free port; 0 = any)"
    )
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME, help="prefix of every resource (default jobq-local)")
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="issuer key and stack state (default .jobq-local)")
    parser.add_argument("--template", default=str(DEFAULT_TEMPLATE), help="the SAM template (default template.yaml)")
    parser.add_argument(
        "--parameter", action="append", default=[], metavar="KEY=VALUE", help="a template parameter override (repeatable)"
    )
    parser.add_argument("--no-consumers", action="store_true", help="serve the API only; leave messages in the queues")
    parser.add_argument("--print-env", action="store_true", help="print `export` lines for other shells (aws CLI, scripts)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--no-access-log", action="store_true", help="do not log each HTTP request")
    parser.add_argument(
        "--rule-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run every EventBridge rule (CleanupFunction, HealthFunction) every SECONDS instead of its rate (tests)",
    )
    parser.add_argument(
        "--meter",
        default=None,
        metavar="FILE",
        help="meter AWS requests, DynamoDB units and Lambda invocations (GET /_local/meter); totals to FILE at exit "
        "(bench/cost_per_job.py; also JOBQ_LOCAL_METER=FILE)",
    )
    args = parser.parse_args(argv)
    for item in args.parameter:
        if "=" not in item:
            parser.error(f"--parameter {item!r}: expected KEY=VALUE")
    return args


def _aws_port(requested: int | None) -> int:
    if requested is not None:
        return requested
    from infra.local.stack import _port_is_free

    return DEFAULT_AWS_PORT if _port_is_free(DEFAULT_AWS_PORT) else 0


def _ws_port(requested: int | None) -> int:
    if requested is not None:
        return requested
    from infra.local.stack import _port_is_free

    return DEFAULT_WS_PORT if _port_is_free(DEFAULT_WS_PORT) else 0


def _banner(stack: LocalStack, print_env: bool) -> str:
    py = shlex.quote(sys.executable) if not sys.executable.endswith("/.venv/bin/python") else ".venv/bin/python"
    lines = [
        "",
        "jobq local stack (moto, no AWS account)",
        f"  API           {stack.api_url}    docs: {stack.api_url}/docs",
        f"  WebSocket     {stack.websocket_url}?token=$TOKEN    then send {{\"action\":\"subscribe\",\"jobId\":\"<jobId>\"}}",
        f"  AWS (moto)    {stack.aws_endpoint}    e.g. AWS_ENDPOINT_URL={stack.aws_endpoint} aws sqs list-queues",
        f"  stack         {stack.stack_name}    table: {os.environ.get('JOBQ_TABLE_NAME', '?')}",
        "  queues:",
    ]
    for name, queue in sorted(stack.queues.items()):
        c = queue.config
        lines.append(
            f"    {name:<20} batch {c.get('batchSize')}, max concurrency {c.get('maxConcurrency')}, "
            f"visibility {c.get('visibilityTimeout')}s, DLQ after {c.get('maxReceiveCount')} receives"
        )
    # The dashboard signs in with a token in the URL fragment (never sent to the server; the page
    # moves it to session storage and clears the address bar). Minted now, valid 12 hours.
    dashboard = f"{stack.api_url}/dashboard#token={stack.mint_token(DASHBOARD_USER, admin=True)}"
    lines += [
        f"  dashboard     {dashboard}",
        f"                (signs in as {DASHBOARD_USER}, an admin; add &readonly=1 for the read-only view)",
        "  tokens:",
        f"    TOKEN=$({py} -m infra.local.token --user alice)          # a user",
        f"    ADMIN=$({py} -m infra.local.token --user root --admin)   # an admin",
        "  try:",
        f"    curl -s {stack.api_url}/health",
        '    curl -s -H "Authorization: Bearer $TOKEN" -H "content-type: application/json" \\\n'
        "         -d '" + _EXAMPLE_JOB + f"' {stack.api_url}/jobs",
    ]
    if print_env:
        lines += ["  environment (for another shell):"]
        lines += [f"    export {k}={shlex.quote(v)}" for k, v in sorted(stack.env.items())]
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("botocore", "boto3", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # credential and endpoint chatter
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            os._exit(130)  # a second Ctrl-C: do not wait for anything
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    stack = LocalStack(
        api_port=args.port,
        aws_port=_aws_port(args.aws_port),
        stack_name=args.stack_name,
        state_dir=args.state_dir,
        template=args.template,
        parameters=dict(item.split("=", 1) for item in args.parameter),
        consumers=not args.no_consumers,
        access_log=not args.no_access_log,
        rule_interval=args.rule_interval,
        meter=args.meter,
        websocket_port=_ws_port(args.ws_port),
    )
    try:
        stack.start()
    except Exception as exc:
        logging.getLogger("jobq.local").error("start failed: %s", exc, exc_info=args.log_level == "DEBUG")
        return 1
    print(_banner(stack, args.print_env), flush=True)
    print(f"jobq local stack ready: {stack.api_url}  websocket: {stack.websocket_url}  (started in {stack.timings['total']:.1f}s; Ctrl-C stops)", flush=True)
    try:
        while not stopping.wait(0.2):
            pass
    finally:
        began = time.monotonic()
        stack.stop()
        print(f"jobq local stack stopped ({time.monotonic() - began:.1f}s)", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    # Everything the stack started is stopped by now; skip the interpreter's teardown of
    # moto's in-memory state (1-3 s) so Ctrl-C returns the prompt at once.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
