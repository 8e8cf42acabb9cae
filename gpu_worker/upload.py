"""Results to an S3-compatible bucket, through ``runpod.serverless.utils.rp_upload``.

A result too large for the response body (RunPod caps ``/run`` at 10 MB and ``/runsync`` at 20 MB)
goes to a bucket, and the job returns a presigned URL instead of a data URI.

The bucket is configured with RunPod's own variables, read by ``rp_upload.get_boto_client``:
``BUCKET_ENDPOINT_URL``, ``BUCKET_ACCESS_KEY_ID`` and ``BUCKET_SECRET_ACCESS_KEY``; the bucket's
name is our setting ``BUCKET_NAME``, always passed explicitly.

What we take from ``rp_upload`` and what we do not:

- ``get_boto_client()`` builds the client: it reads the three variables, signs with SigV4, retries
  3 times ("standard" mode) and takes the region from AWS / DigitalOcean style endpoint URLs.
- ``upload_in_memory_object()`` is *not* used: it cannot set ``Content-Type`` (the object would be
  served as ``binary/octet-stream``), it silently writes to a local folder when the variables are
  missing, it defaults the bucket name to the month and year ("11-26"), and for anything over
  25 KiB it runs a threaded multipart upload with a progress bar on the log. One ``put_object``
  with the right ``ContentType`` and a presigned ``get_object`` URL (7 days, as rp_upload's) is
  what a worker result needs.

Every failure is a :class:`~gpu_worker.errors.JobError` whose message says what to fix; botocore's
exceptions never escape. Neither the image bytes nor the secret key ever reach a log or a message.
"""

from __future__ import annotations

import logging
import os
import re
import uuid

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from runpod.serverless.utils import rp_upload

from gpu_worker.errors import JobError
from gpu_worker.formats import OUTPUT_FORMATS

#: The variables rp_upload reads to build its client; all three must be set.
CREDENTIAL_VARS = ("BUCKET_ENDPOINT_URL", "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY")
#: Our setting for the bucket's name (rp_upload's default, the month and year, is never used).
BUCKET_NAME_VAR = "BUCKET_NAME"
#: Output extension (or any spelling of the format's name) -> Content-Type of the stored object.
CONTENT_TYPES = {spelling.lower(): f.mime for f in OUTPUT_FORMATS.values()
                 for spelling in (f.extension, f.name, *f.aliases)}
#: Lifetime of the returned presigned URL, in seconds: 7 days, SigV4's maximum and rp_upload's value.
URL_EXPIRES_S = 7 * 24 * 3600

_ERROR_CODES_NO_BUCKET = {"NoSuchBucket"}
_ERROR_CODES_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
                            "ExpiredToken", "Forbidden", "403"}
_SAFE_KEY_PART = re.compile(r"[^A-Za-z0-9._-]+")

# At DEBUG, botocore.endpoint logs every request's parameters, body included (botocore 1.44 wraps a
# PutObject body in a file object first, but other operations and versions log raw bytes), and
# botocore.parsers logs response bodies. Pin those two loggers at INFO, so that a root logger set to
# DEBUG elsewhere never puts an image (or an S3 response) in the log.
for _name in ("botocore.endpoint", "botocore.parsers"):
    _logger = logging.getLogger(_name)
    if _logger.level < logging.INFO:  # NOTSET (0) included: it would follow the root logger
        _logger.setLevel(logging.INFO)


def missing_variables() -> list[str]:
    """The names of the bucket variables that are unset or empty."""
    return [name for name in CREDENTIAL_VARS if not os.environ.get(name)]


def bucket_configured() -> bool:
    """True when BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY are all set."""
    return not missing_variables()


def not_configured_message(missing: list[str] | None = None) -> str:
    """What to set to enable uploads (names the variables still missing)."""
    missing = missing_variables() if missing is None else missing
    return (
        "bucket upload is not configured: set the environment variables "
        f"{', '.join(CREDENTIAL_VARS)} (missing: {', '.join(missing)}) "
        f"and the bucket name setting {BUCKET_NAME_VAR}"
    )


def upload_image(data: bytes, *, key_prefix: str, extension: str, bucket_name: str) -> str:
    """Store one encoded image in the bucket and return a presigned GET URL for it.

    Args:
        data: the encoded image (a file of an output format), stored as is.
        key_prefix: the job id; the object key is ``<key_prefix>/<random hex>.<extension>``.
        extension: an output format's extension (``"jpg"``) or any spelling of its name
            (`CONTENT_TYPES`, from the formats table); sets the Content-Type.
        bucket_name: an existing bucket (the ``BUCKET_NAME`` setting); never defaulted.

    Returns:
        A presigned URL, valid for :data:`URL_EXPIRES_S` seconds.

    Raises:
        JobError: the bucket is not configured, the arguments are wrong, or the upload failed
            (endpoint unreachable, no such bucket, credentials refused); the message says which.

    Example:
        >>> url = upload_image(jpeg_bytes, key_prefix=job["id"], extension="jpg",
        ...                    bucket_name=settings.bucket_name)  # doctest: +SKIP
    """
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise JobError("upload_image: data must be non-empty encoded image bytes")
    ext = str(extension).lower().lstrip(".")
    content_type = CONTENT_TYPES.get(ext)
    if content_type is None:
        raise JobError(f"upload_image: extension {extension!r} is not one of {', '.join(CONTENT_TYPES)}")
    if not bucket_name or not str(bucket_name).strip():
        raise JobError(f"bucket upload needs a bucket name: set {BUCKET_NAME_VAR} to an existing bucket")
    bucket = str(bucket_name).strip()
    missing = missing_variables()
    if missing:
        raise JobError(not_configured_message(missing))

    prefix = _SAFE_KEY_PART.sub("_", str(key_prefix)).strip("._") or "job"
    key = f"{prefix}/{uuid.uuid4().hex}.{ext}"
    endpoint = os.environ["BUCKET_ENDPOINT_URL"]

    try:
        client, _transfer_config = rp_upload.get_boto_client()
    except ValueError as exc:  # botocore: "Invalid endpoint: ..."
        raise JobError(f"BUCKET_ENDPOINT_URL={endpoint!r} is not a valid endpoint URL ({exc})") from None
    if client is None:  # boto3 missing, or a variable emptied in between
        raise JobError(not_configured_message(missing_variables() or list(CREDENTIAL_VARS)))

    try:
        client.put_object(Bucket=bucket, Key=key, Body=bytes(data), ContentType=content_type)
        return client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=URL_EXPIRES_S
        )
    except ClientError as exc:
        raise JobError(_client_error_message(exc, bucket, endpoint)) from None
    except EndpointConnectionError:
        raise JobError(
            f"could not connect to the bucket endpoint BUCKET_ENDPOINT_URL={endpoint!r}: check the URL "
            "and that the storage service is reachable from the worker"
        ) from None
    except BotoCoreError as exc:
        raise JobError(
            f"upload to bucket {bucket!r} at BUCKET_ENDPOINT_URL={endpoint!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _client_error_message(exc: ClientError, bucket: str, endpoint: str) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    detail = str(error.get("Message", "")) or code or "no details"
    if code in _ERROR_CODES_NO_BUCKET:
        return (
            f"bucket {bucket!r} does not exist at BUCKET_ENDPOINT_URL={endpoint!r}: create it, or set "
            f"{BUCKET_NAME_VAR} to an existing bucket"
        )
    if code in _ERROR_CODES_CREDENTIALS:
        return (
            f"the bucket endpoint {endpoint!r} refused the credentials for bucket {bucket!r} ({code}): "
            "check BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY and the key's permissions"
        )
    return f"upload to bucket {bucket!r} at BUCKET_ENDPOINT_URL={endpoint!r} failed: {code}: {detail}"
