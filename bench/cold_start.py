"""Cold start: what a fresh container imports before its first event, against its floor.

    python3 dev.py ... or: .venv/bin/python bench/cold_start.py [--rounds 15]

Each round starts one fresh interpreter per case, in alternating order, and each
interpreter times its own imports (interpreter start-up is left out: it is the same for
all). The figures are medians over the rounds, all taken in one run so the machine's load
is shared alike. The cases:

* consumer: ``functions.consumer.handler`` imported and its composition root built (the
  worker, and with it the SQS and DynamoDB clients it uses), against ``import boto3`` and
  an SQS and a DynamoDB client. Goal: <= 1.25 x.
  Its first event is timed too, outside the ratio: the domain work of one SQS record without
  AWS (its queue, the job read, claimed and completed, its usage), so the models' validators and
  serializers, built at their first use, show.
* api: ``api.main`` imported (the app, the Mangum handler), against ``import fastapi,
  mangum, boto3, pydantic``. Goal: <= 1.2 x. Its first request (an unauthenticated GET the
  app answers 401 without AWS) is timed with the import too, outside the ratio, so work moved
  from the import to the first request shows.

Tracing is off (``POWERTOOLS_TRACE_DISABLED=true``) for the goals: with X-Ray tracing on,
the X-Ray SDK is imported at the first invocation (shared/observability.py), which the
last line measures on its own.
No network: the clients are created, not called; the endpoint is 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_TIMED = """
import time
t0, c0 = time.perf_counter(), time.process_time()
{body}
print(time.perf_counter() - t0, time.process_time() - c0)
"""

CASES: dict[str, str] = {
    "boto3 + sqs + dynamodb clients": (
        "import boto3\n"
        "s = boto3.session.Session()\n"
        "s.client('sqs'); s.client('dynamodb')"
    ),
    "consumer": (
        "import functions.consumer.handler\n"
        "from functions import composition\n"
        "composition.worker()\n"
        "from shared.adapters import clients\n"
        "clients.client('sqs'); clients.client('dynamodb')"
    ),
    # Not in a ratio: what the consumer's first event adds (no AWS to answer it, so its domain work
    # only): the record peeked and its queue's parameter parsed, the job item read into a Job, claimed
    # (a Change applied) and written back, the queue's policy read, the attempt's usage recorded. Each
    # model's validator and serializer is built at its first use (defer_build), so they show here.
    "consumer + first event (no AWS)": (
        "import functions.consumer.handler, json\n"
        "from functions import composition\n"
        "composition.worker()\n"
        "from shared.adapters import clients\n"
        "clients.client('sqs'); clients.client('dynamodb')\n"
        "from shared import lifecycle\n"
        "from shared.adapters.job_repository import from_item, to_item\n"
        "from shared.models import AttemptUsage, Job, QueueInfo, QueuePolicy\n"
        "records = json.load(open('events/sqs-email-sending.json'))['Records']\n"
        "record = functions.consumer.handler._highest_priority_first(records)[0]\n"
        "ids, arn = json.loads(record['body']), record['eventSourceARN']\n"
        "url = 'https://sqs.us-east-1.amazonaws.com/123456789012/jobq-email-sending'\n"
        "info = QueueInfo.model_validate_json(json.dumps({'name': ids['queue'], 'queueUrl': url, 'queueArn': arn,"
        " 'dlqUrl': url + '-dlq', 'dlqArn': arn + '-dlq'}))\n"
        "stamp = '2026-12-01T21:30:00.000Z'\n"
        "stored = to_item(Job(job_id=ids['jobId'], user_id=ids['userId'], queue=info.name, type='send-email', status='waiting',"
        " data={'to': 'a@example.com', 'subject': 'hi'}, created_at=stamp, updated_at=stamp))\n"
        "job = from_item(stored)\n"
        "policy = QueuePolicy.model_validate_json(QueuePolicy().model_dump_json(by_alias=True))\n"
        "now = 1764624600000\n"
        "claimed = lifecycle.claim(job, now=now, lease_ms=60000, token='t').after()\n"
        "usage = AttemptUsage.model_validate({'durationMs': 5, 'costNanoUsd': 1}).model_dump()\n"
        "to_item(lifecycle.complete(claimed, token='t', result={'sent': True}, processing_ms=5, now=now + 5, policy=policy).after())"
    ),
    "fastapi, mangum, boto3, pydantic": "import fastapi, mangum, boto3, pydantic",
    "api": "import api.main",
    # Not in a ratio: what the API's first request adds to its import (nothing was moved there).
    "api + first request (401, no AWS)": (
        "import api.main, json\n"
        "event = json.load(open('events/api-get-job.json'))\n"
        "event['requestContext'].pop('authorizer', None)\n"
        "class Context:\n"
        "    function_name, memory_limit_in_mb, aws_request_id = 'bench', 256, 'bench-1'\n"
        "    invoked_function_arn = 'arn:aws:lambda:us-east-1:123456789012:function:bench'\n"
        "assert api.main.handler(event, Context())['statusCode'] == 401"
    ),
    "x-ray tracer (tracing on)": (
        "from aws_lambda_powertools import Tracer\n"
        "Tracer(service='bench')"
    ),
}


def _environment() -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE left out: any value (even "0") stops the warm-up from writing the caches.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBQ_", "POWERTOOLS_", "PYTHONDONTWRITEBYTECODE"))}
    env.update(
        PYTHONPATH=str(ROOT),
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_LAMBDA_FUNCTION_NAME="bench",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_NAMESPACE="jobq",
        PYDANTIC_DISABLE_PLUGINS="__all__",  # as template.yaml's Globals and infra/queue.yaml set it
        JOBQ_TABLE_NAME="jobq-bench",
        JOBQ_QUEUES_PARAMETER_PATH="/jobq/bench/queues/",
    )
    return env


def _run(body: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the case's imports in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _TIMED.format(body=body)], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"case failed:\n{body}\n{out.stderr[-2000:]}")
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    env = _environment()
    for body in CASES.values():  # warm the bytecode caches once, so every round compiles nothing
        _run(body, env)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in CASES}
    names = list(CASES)
    for round_ in range(args.rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(_run(CASES[name], env))
    # Wall time is what a cold start costs; CPU time is the same work without other processes'
    # share of the cores (a loaded machine stretches the wall figures, not the CPU ones).
    for i, kind in enumerate(("wall", "cpu")):
        median = {name: statistics.median(t[i] for t in values) for name, values in times.items()}
        print(f"cold start ({kind} time), median of {args.rounds} fresh interpreters per case (python {sys.version.split()[0]})")
        for name in names:
            print(f"  {name:<34} {median[name] * 1000:7.1f} ms")
        consumer = median["consumer"] / median["boto3 + sqs + dynamodb clients"]
        api = median["api"] / median["fastapi, mangum, boto3, pydantic"]
        print(f"  consumer / (boto3 + sqs + dynamodb clients) = {consumer:.2f} x   (goal <= 1.25 x) {'ok' if consumer <= 1.25 else 'OVER'}")
        print(f"  api / (fastapi, mangum, boto3, pydantic)    = {api:.2f} x   (goal <= 1.2 x) {'ok' if api <= 1.2 else 'OVER'}")

if __name__ == "__main__":
    main()
