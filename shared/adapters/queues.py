"""Queue discovery and SQS access.

The stack publishes one SSM parameter per queue under ``queues_parameter_path``
(infra/queue.yaml); the API and the functions read them all with one call per
container (cached), so adding a queue is a template change and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from shared.adapters import clients
from shared.adapters.aws_errors import AWS_ERRORS, aws_errors, domain_error
from shared.adapters.configuration import settings as adapter_settings
from shared.errors import Invalid
from shared.models import Job, JobRef, QueueDepth, QueueInfo


class QueueDirectory:
    def __init__(self, parameter_path: str, cache_seconds: int) -> None:
        self.parameter_path = parameter_path if parameter_path.endswith("/") else parameter_path + "/"
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, dict[str, QueueInfo]] | None = None
        self._lock = threading.Lock()

    def all(self, *, refresh: bool = False) -> dict[str, QueueInfo]:
        with self._lock:
            cached = self._cached
        if cached is not None and not refresh and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        found = {info.name: info for info in (QueueInfo.model_validate_json(v) for v in self._read_parameters())}
        with self._lock:
            self._cached = (time.monotonic(), found)
        return found

    def _read_parameters(self) -> list[str]:
        """Every parameter under the path (GetParametersByPath pages by 10)."""
        ssm = clients.client("ssm")
        values: list[str] = []
        token: str | None = None
        with aws_errors(f"cannot read the queue directory under {self.parameter_path}"):
            while True:
                page = ssm.get_parameters_by_path(Path=self.parameter_path, Recursive=False, **({"NextToken": token} if token else {}))
                values.extend(p["Value"] for p in page.get("Parameters", []))
                token = page.get("NextToken")
                if not token:
                    return values

    def get(self, name: str) -> QueueInfo:
        queues = self.all()
        if name not in queues:
            valid = ", ".join(sorted(queues)) or "none configured"
            raise Invalid(f"unknown queue '{name}'; valid queues: {valid}")
        return queues[name]

    def by_arn(self, arn: str) -> QueueInfo:
        for refresh in (False, True):  # a queue added since the last read
            for info in self.all(refresh=refresh).values():
                if info.queue_arn == arn:
                    return info
        raise Invalid(f"no jobq queue publishes the ARN {arn}")


_directory: QueueDirectory | None = None


def directory() -> QueueDirectory:
    global _directory
    if _directory is None:
        settings = adapter_settings()
        _directory = QueueDirectory(settings.queues_parameter_path, settings.queue_cache_seconds)
    return _directory


def reset() -> None:
    global _directory
    _directory = None


@dataclass(frozen=True)
class Route:
    """What a job's message carries besides its reference: what the consumer's flow gate and the
    message group need before the claim, so that gate costs no read (shared/worker.py)."""

    priority: int = 0
    group: str | None = None  # the job's group key (shared/flow_control.py); None: it has none
    exclusive: str | None = None  # keepLastIfActive's key: at most one of its jobs active (Job.exclusive_key)

    @classmethod
    def of(cls, job: Job) -> Route:
        return cls(job.priority, job.group, job.exclusive_key)


class _NotCarried(Enum):
    GROUP = "not carried"


# A message sent knowing only the job's reference (a sweep over a keys-only index, a redrive):
# the consumer reads the job first on a queue with group limits.
GROUP_NOT_CARRIED = _NotCarried.GROUP


def message_body(ref: JobRef, queue: str, route: Route | None = None) -> str:
    """The SQS message is a wake-up call: the job item is the source of truth. It names the
    job by owner and id, as the table does, and carries its ``Route`` when the sender had the job."""
    body: dict[str, Any] = {"jobId": ref.job_id, "userId": ref.user_id, "queue": queue}
    if route is not None:
        body["group"] = route.group
        if route.priority:
            body["priority"] = route.priority
        if route.exclusive:
            body["exclusive"] = route.exclusive
    return json.dumps(body, separators=(",", ":"))


def group_of_body(body: str | None) -> str | None | Literal[_NotCarried.GROUP]:
    """The group key a message carries (None: the job has none), or ``GROUP_NOT_CARRIED``."""
    try:
        payload = json.loads(body or "")
    except ValueError:
        return GROUP_NOT_CARRIED
    if not isinstance(payload, dict) or "group" not in payload:
        return GROUP_NOT_CARRIED
    group = payload["group"]
    return group if group is None or isinstance(group, str) else GROUP_NOT_CARRIED


def exclusive_of_body(body: str | None) -> str | None:
    """The keepLastIfActive key a message carries (None: none carried; a message sent knowing
    only the job's reference carries none, and the job is read first only on queues with groups)."""
    try:
        payload = json.loads(body or "")
    except ValueError:
        return None
    key = payload.get("exclusive") if isinstance(payload, dict) else None
    return key if isinstance(key, str) and key else None


def priority_of_body(body: dict[str, Any]) -> int:
    priority = body.get("priority", 0)
    return priority if isinstance(priority, int) and not isinstance(priority, bool) else 0


def ref_of_body(body: str | None) -> JobRef | None:
    """The job a message names, or None for a body that names none (malformed, or from before owners)."""
    try:
        payload = json.loads(body or "")
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    job_id, user_id = payload.get("jobId"), payload.get("userId")
    if not (isinstance(job_id, str) and job_id and "#" not in job_id and isinstance(user_id, str) and user_id):
        return None
    return JobRef(user_id, job_id)


_GROUP_ID = re.compile(r"^[!-~]{1,128}$")  # what SQS takes as a MessageGroupId


# Jobs at or above these priorities travel in their own message group per owner (shared/flow_control.py).
PRIORITY_BANDS = ((10, "critical"), (5, "high"))


def fair_group(user_id: str, priority: int = 0) -> str:
    """The message's ``MessageGroupId``: its owner, so SQS fair queues keep one tenant's burst from
    delaying the others (a standard queue stays a standard queue; nothing changes for the consumer).

    A high or critical job is in a group of its own beside its owner's (``<owner>#high``): a group
    with few messages in flight is served ahead of one with a backlog, so it does not wait behind
    its own tenant's backlog of lower jobs."""
    owner = user_id if _GROUP_ID.match(user_id) and len(user_id) <= 110 else "u-" + hashlib.sha256(user_id.encode()).hexdigest()[:40]
    band = next((name for floor, name in PRIORITY_BANDS if priority >= floor), None)
    return f"{owner}#{band}" if band else owner


def send_job(queue: QueueInfo, ref: JobRef, *, delay_seconds: int = 0, route: Route | None = None) -> str:
    with aws_errors(f"cannot enqueue on {queue.name}"):
        out = clients.client("sqs").send_message(
            QueueUrl=queue.queue_url,
            MessageBody=message_body(ref, queue.name, route),
            DelaySeconds=max(0, min(delay_seconds, 900)),
            MessageGroupId=fair_group(ref.user_id, route.priority if route else 0),
        )
    return str(out["MessageId"])


def send_jobs(queue: QueueInfo, jobs: list[tuple[JobRef, int]], routes: dict[JobRef, Route] | None = None) -> set[JobRef]:
    """Enqueue many ``(job, delay_seconds)``, 10 to a SendMessageBatch; returns the jobs not sent.

    Entries SQS reports failed on its side (``SenderFault`` false: throttled, internal) are sent
    again, alone, up to ``_BATCH_RESENDS`` times, so a partly failed batch costs its caller no
    retry of the entries already sent (a caller that retries the lot would send those twice)."""
    routes = routes or {}
    failed: set[JobRef] = set()
    sqs = clients.client("sqs")
    for start in range(0, len(jobs), 10):
        chunk = jobs[start : start + 10]
        entries: list[dict[str, Any]] = [
            {
                "Id": str(i),
                "MessageBody": message_body(ref, queue.name, routes.get(ref)),
                "DelaySeconds": max(0, min(delay, 900)),
                "MessageGroupId": fair_group(ref.user_id, routes[ref].priority if ref in routes else 0),
            }
            for i, (ref, delay) in enumerate(chunk)
        ]
        for attempt in range(_BATCH_RESENDS + 1):
            try:
                out = sqs.send_message_batch(QueueUrl=queue.queue_url, Entries=entries)
            except AWS_ERRORS:
                break  # botocore has retried the call itself: the entries left are not sent
            refused = out.get("Failed") or []
            again = {entry["Id"] for entry in refused if not entry.get("SenderFault")}
            failed.update(chunk[int(entry["Id"])][0] for entry in refused if entry.get("SenderFault"))
            entries = [entry for entry in entries if entry["Id"] in again]
            if not entries:
                break
            if attempt < _BATCH_RESENDS:
                time.sleep(0.05 * 2**attempt)
        failed.update(chunk[int(entry["Id"])][0] for entry in entries)
    return failed


_BATCH_RESENDS = 3


def send_to_dead_letters(queue: QueueInfo, body: str, *, reason: str, attributes: dict[str, Any] | None = None) -> None:
    """Put a finished-unsuccessfully job's message in the queue's DLQ, saying why."""
    attrs = {"jobqFailureReason": {"DataType": "String", "StringValue": reason[:1000] or "failed"}}
    attrs.update(attributes or {})
    with aws_errors(f"cannot copy a message to the dead-letter queue of {queue.name}"):
        clients.client("sqs").send_message(QueueUrl=queue.dlq_url, MessageBody=body, MessageAttributes=attrs)


_DEPTH = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed")


def depths(queue: QueueInfo) -> tuple[QueueDepth, int]:
    """The queue's messages and its DLQ's depth, as SQS approximates them (what each count means: ``QueueDepth``)."""
    with aws_errors(f"SQS is unavailable for queue {queue.name}"):
        main = clients.client("sqs").get_queue_attributes(QueueUrl=queue.queue_url, AttributeNames=list(_DEPTH))["Attributes"]
    depth = QueueDepth(visible=int(main.get(_DEPTH[0], 0)), in_flight=int(main.get(_DEPTH[1], 0)), delayed=int(main.get(_DEPTH[2], 0)))
    return depth, dead_letter_depth(queue)


def dead_letter_depth(queue: QueueInfo) -> int:
    """Messages in the queue's DLQ (``dead_letters_in``)."""
    return dead_letters_in(queue.dlq_url, f"the dead-letter queue of {queue.name}")


def dead_letters_in(url: str, what: str) -> int:
    """A dead-letter queue's depth: its visible plus in-flight messages."""
    with aws_errors(f"SQS is unavailable for {what}"):
        dlq = clients.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=list(_DEPTH[:2]))["Attributes"]
    return int(dlq.get(_DEPTH[0], 0)) + int(dlq.get(_DEPTH[1], 0))


def ping(queue: QueueInfo) -> None:
    with aws_errors(f"SQS queue {queue.name} unreachable"):
        clients.client("sqs").get_queue_attributes(QueueUrl=queue.queue_url, AttributeNames=["QueueArn"])


def receive_dead_letters(queue: QueueInfo, count: int, hold_seconds: int) -> list[dict[str, Any]]:
    """Up to ``count`` dead letters, held from other readers for ``hold_seconds``."""
    with aws_errors(f"the dead-letter queue of {queue.name} is unavailable"):
        out = clients.client("sqs").receive_message(
            QueueUrl=queue.dlq_url,
            MaxNumberOfMessages=max(1, min(10, count)),
            VisibilityTimeout=hold_seconds,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
    return list(out.get("Messages") or [])


def settle_dead_letters(queue: QueueInfo, messages: list[dict[str, Any]], action: str) -> None:
    """Delete or release (visibility 0) messages, ten at a time; best effort for release."""
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        try:
            if action == "delete":
                clients.client("sqs").delete_message_batch(
                    QueueUrl=queue.dlq_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
                )
            else:
                clients.client("sqs").change_message_visibility_batch(
                    QueueUrl=queue.dlq_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(chunk)],
                )
        except AWS_ERRORS as err:
            if action == "delete":
                raise domain_error(err, f"the dead-letter queue of {queue.name} is unavailable") from err
            # Not released: they come back by themselves when their short visibility ends.
