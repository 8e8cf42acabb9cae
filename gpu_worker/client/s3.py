"""``s3://bucket/prefix`` locations and the boto3 client that reads and writes them.

The client is boto3's, with its usual credentials (``AWS_ACCESS_KEY_ID``, profiles, ...); an
S3-compatible service (MinIO, R2, moto, ...) is reached with ``--s3-endpoint-url`` or boto3's own
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


class ClientError(Exception):
    """A problem with the client's arguments or inputs, found before (or instead of) running."""


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix``: ``prefix`` has no leading slash and, unless empty, ends with '/'."""

    bucket: str
    prefix: str

    def key(self, relative: str) -> str:
        return self.prefix + relative

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def is_s3(text: str) -> bool:
    return text.startswith("s3://")


def parse_s3(text: str) -> S3Location:
    """``s3://bucket[/prefix]`` -> S3Location; ClientError names what is wrong."""
    if not is_s3(text):
        raise ClientError(f"{text!r} is not an s3:// location")
    bucket, _, prefix = text[len("s3://"):].partition("/")
    if not bucket:
        raise ClientError(f"{text!r} has no bucket name (s3://BUCKET/prefix)")
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return S3Location(bucket, prefix)


def make_client(endpoint_url: Optional[str] = None) -> Any:
    """A boto3 S3 client; ``endpoint_url`` None leaves boto3 to its own settings."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url or None,
                        config=Config(retries={"max_attempts": 5, "mode": "standard"}))
