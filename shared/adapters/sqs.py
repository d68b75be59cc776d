"""The queue gateway: a job's SQS messages (wake-ups, kept outcomes), a delivery's visibility, its DLQ copy."""

from __future__ import annotations

import json
from typing import Any

from shared.adapters import clients, queues
from shared.adapters.aws_errors import aws_errors
from shared.models import Job, JobRef, QueueInfo

MAX_VISIBILITY_SECONDS = 43_200  # SQS: 12 hours


class SqsJobMessages:
    def wake(self, queue: QueueInfo, job: Job, *, delay_seconds: int = 0) -> None:
        queues.send_job(queue, JobRef.of(job), delay_seconds=delay_seconds, route=queues.Route.of(job))

    def send_body(self, queue: QueueInfo, body: dict[str, Any], *, delay_seconds: int = 0) -> None:
        with aws_errors(f"cannot enqueue on {queue.name}"):
            owner = body.get("userId")
            clients.client("sqs").send_message(
                QueueUrl=queue.queue_url,
                MessageBody=json.dumps(body, separators=(",", ":")),
                DelaySeconds=max(0, min(delay_seconds, 900)),
                **({"MessageGroupId": queues.fair_group(owner, queues.priority_of_body(body))} if isinstance(owner, str) and owner else {}),
            )

    def change_visibility(self, queue: QueueInfo, receipt_handle: str, seconds: int) -> None:
        with aws_errors(f"cannot change a message's visibility on {queue.name}"):
            clients.client("sqs").change_message_visibility(
                QueueUrl=queue.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=max(0, min(seconds, MAX_VISIBILITY_SECONDS))
            )

    def dead_letter(self, queue: QueueInfo, job: Job, *, reason: str, body: str | None = None) -> None:
        queues.send_to_dead_letters(queue, body or queues.message_body(JobRef.of(job), queue.name, queues.Route.of(job)), reason=reason)
