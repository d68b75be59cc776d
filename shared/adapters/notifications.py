"""SNS for the publish built-in (processors/builtins.py): one Publish per job."""

from __future__ import annotations

from typing import Any

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors


def publish(topic_arn: str, message: str, *, subject: str | None = None, attributes: dict[str, str] | None = None,
            group_id: str | None = None, deduplication_id: str | None = None) -> str:
    """Publish ``message`` to ``topic_arn``; returns SNS's MessageId."""
    params: dict[str, Any] = {"TopicArn": topic_arn, "Message": message}
    if subject:
        params["Subject"] = subject
    if attributes:
        params["MessageAttributes"] = {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()}
    if topic_arn.endswith(".fifo"):  # FIFO topics need a group; the job's key deduplicates its retries
        params["MessageGroupId"] = group_id or "jobq"
        params["MessageDeduplicationId"] = deduplication_id or ""
    with aws_errors(f"cannot publish to {topic_arn}"):
        return str(clients.client("sns").publish(**params)["MessageId"])


__all__ = ["publish"]
