"""S3 for the export built-in (processors/builtins.py): read an uploaded file, write the export, sign its URL.

Keys in the reports bucket: ``uploads/<userId>/...`` (files a user's jobs may read) and
``exports/<userId>/<jobId>.<csv|json>`` (what export writes). The presigned GET URL is signed
with the consumer's role credentials, so it is valid for the time asked or until those
credentials expire, whichever comes first (Lambda's role sessions last hours, not days).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from shared.adapters import clients
from shared.adapters.aws_errors import aws_code, aws_errors
from shared.errors import JobqError, NotFound


def read_object(bucket: str, key: str, *, max_bytes: int) -> bytes:
    """The object's first ``max_bytes + 1`` bytes (``NotFound`` when there is no such key)."""
    try:
        with aws_errors(f"cannot read s3://{bucket}/{key}"):
            out = clients.client("s3").get_object(Bucket=bucket, Key=key)
            body: Any = out["Body"]
            raw = bytes(body.read(max_bytes + 1))
    except JobqError as err:
        if aws_code(err) in ("NoSuchKey", "404"):
            raise NotFound(f"s3://{bucket}/{key} does not exist") from err
        raise
    return raw


def write_export(bucket: str, key: str, body: bytes, *, content_type: str) -> None:
    with aws_errors(f"cannot write s3://{bucket}/{key}"):
        clients.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


@cache
def _signer() -> Any:
    # SigV4 (X-Amz-Expires, at most 7 days): the signature S3 requires in every region since 2020.
    return boto3.session.Session().client("s3", config=Config(signature_version="s3v4"))


def reset() -> None:
    _signer.cache_clear()


def download_url(bucket: str, key: str, *, expires_in: int) -> str:
    """A presigned GET (signed locally: no request to AWS)."""
    with aws_errors(f"cannot sign a URL for s3://{bucket}/{key}"):
        return str(_signer().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in))


__all__ = ["download_url", "read_object", "reset", "write_export"]
