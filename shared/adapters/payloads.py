"""The claim check: job data and results too large to keep in the job item, as S3 objects.

    s3://<the stack's bucket>/payloads/<owner>/<jobId>/data.json | result.json

DynamoDB bills every write of a job by the whole item, three writes or more a job, so a
payload past a few KB costs more inline than one S3 PUT and a GET per attempt
(docs/data-model.md has the arithmetic). The job item keeps the object's key (``dataRef``,
``resultRef``); the jobs repository (job_repository.py) decides what goes here and reads it
back, so the API, processors and HTTP targets see the payload as if it were inline. Objects
expire with the bucket's ``payloads/`` lifecycle rule (template.yaml, PayloadRetentionDays).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from shared.adapters import clients
from shared.adapters.aws_errors import aws_errors

PREFIX = "payloads/"


def bucket_name() -> str:
    """``JOBQ_PAYLOAD_BUCKET`` (template.yaml's ReportsBucket): empty keeps every payload inline."""
    return os.environ.get("JOBQ_PAYLOAD_BUCKET", "")


class PayloadStore:
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    @property
    def _s3(self) -> Any:
        return clients.client("s3")

    @staticmethod
    def key_for(user_id: str, job_id: str, name: str) -> str:
        # quote: a user id or job id can hold '/' or '..'; the key stays one path segment each.
        return f"{PREFIX}{quote(user_id, safe='')}/{quote(job_id, safe='')}/{name}.json"

    def put(self, user_id: str, job_id: str, name: str, body: bytes) -> str:
        key = self.key_for(user_id, job_id, name)
        with aws_errors(f"cannot store the {name} of job {job_id}"):
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        return key

    def get(self, key: str) -> bytes:
        if not key.startswith(PREFIX):
            raise ValueError("not a payload key")
        with aws_errors("cannot read a job's stored payload"):
            out = self._s3.get_object(Bucket=self.bucket, Key=key)
            body: bytes = out["Body"].read()
        return body

    def delete(self, key: str) -> None:
        if not key.startswith(PREFIX):
            return
        with aws_errors("cannot delete a job's stored payload"):
            self._s3.delete_object(Bucket=self.bucket, Key=key)
