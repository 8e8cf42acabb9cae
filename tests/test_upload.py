"""gpu_worker.upload against a real S3-compatible server on 127.0.0.1 (moto's server mode).

Nothing here reaches AWS or any other network: the bucket endpoint is the local moto server, the
AWS_* variables are dummies, shared config and credential files are pointed at nothing, and the
instance-metadata lookup is disabled.
"""

from __future__ import annotations

import io
import logging
import socket

import boto3
import pytest
import requests
from PIL import Image

from gpu_worker import upload
from gpu_worker.errors import JobError
from gpu_worker.formats import OUTPUT_FORMATS
from photos import photo

BUCKET = "gpu-worker-results"
SECRET = "moto-secret-key-never-logged"
#: Extension -> format, of every output format (gpu_worker.formats).
FORMATS = {f.extension: f.name for f in OUTPUT_FORMATS.values()}


@pytest.fixture
def isolated_env(dummy_aws, tmp_path):
    """conftest's dummy AWS identity, no bucket settings of the worker; cwd in tmp_path."""
    monkeypatch = dummy_aws
    for name in (*upload.CREDENTIAL_VARS, upload.BUCKET_NAME_VAR):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # rp_upload's fallbacks would write here: they must not happen
    return tmp_path


@pytest.fixture
def bucket_env(isolated_env, s3_server, monkeypatch):
    """The three BUCKET_* variables pointing at the moto server, and an existing bucket."""
    monkeypatch.setenv("BUCKET_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("BUCKET_ACCESS_KEY_ID", "moto-access-key")
    monkeypatch.setenv("BUCKET_SECRET_ACCESS_KEY", SECRET)
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET)
    return s3


def encoded(fmt: str, size=(96, 64)) -> bytes:
    """A real photo (scikit-image's astronaut), resized and encoded."""
    buf = io.BytesIO()
    photo().resize(size, Image.Resampling.LANCZOS).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_upload_roundtrip_through_presigned_url(bucket_env, ext):
    data = encoded(FORMATS[ext])
    url = upload.upload_image(data, key_prefix="job-123", extension=ext, bucket_name=BUCKET)

    assert url.startswith(bucket_env.meta.endpoint_url) and "/job-123/" in url and "Signature" in url
    got = requests.get(url, timeout=10)
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["Content-Type"] == upload.CONTENT_TYPES[ext]
    with Image.open(io.BytesIO(got.content)) as im:
        assert im.format == FORMATS[ext]
        assert im.size == (96, 64)
        im.load()

    keys = [obj["Key"] for obj in bucket_env.list_objects_v2(Bucket=BUCKET, Prefix="job-123/")["Contents"]]
    assert any(key.endswith(f".{ext}") for key in keys)


def test_each_upload_gets_its_own_key(bucket_env):
    data = encoded("JPEG")
    first = upload.upload_image(data, key_prefix="job-1", extension="jpg", bucket_name=BUCKET)
    second = upload.upload_image(data, key_prefix="job-1", extension="jpg", bucket_name=BUCKET)
    assert first.split("?")[0] != second.split("?")[0]


def test_key_prefix_cannot_escape_its_folder(bucket_env):
    url = upload.upload_image(encoded("PNG"), key_prefix="../../a b/c", extension="png", bucket_name=BUCKET)
    key = bucket_env.list_objects_v2(Bucket=BUCKET, Prefix="a_b_c/")["Contents"][0]["Key"]
    assert key.startswith("a_b_c/") and key.endswith(".png") and key in url
    assert requests.get(url, timeout=10).status_code == 200


def test_bucket_configured(isolated_env, monkeypatch):
    assert not upload.bucket_configured()
    monkeypatch.setenv("BUCKET_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("BUCKET_ACCESS_KEY_ID", "id")
    assert not upload.bucket_configured()
    monkeypatch.setenv("BUCKET_SECRET_ACCESS_KEY", "")
    assert not upload.bucket_configured()  # empty counts as unset
    monkeypatch.setenv("BUCKET_SECRET_ACCESS_KEY", "secret")
    assert upload.bucket_configured()


@pytest.mark.parametrize("unset", [upload.CREDENTIAL_VARS, ("BUCKET_SECRET_ACCESS_KEY",)])
def test_missing_credentials_say_what_to_configure(bucket_env, isolated_env, monkeypatch, unset):
    for name in unset:
        monkeypatch.delenv(name)
    with pytest.raises(JobError) as info:
        upload.upload_image(encoded("JPEG"), key_prefix="job", extension="jpg", bucket_name=BUCKET)
    message = str(info.value)
    for name in (*upload.CREDENTIAL_VARS, "BUCKET_NAME"):
        assert name in message
    assert f"missing: {', '.join(unset)}" in message
    # rp_upload's silent fallback (writing the image to a local folder) did not happen.
    assert list(isolated_env.iterdir()) == []


@pytest.mark.parametrize("name", ["", "   "])
def test_no_bucket_name_is_refused_never_defaulted(bucket_env, name):
    before = {b["Name"] for b in bucket_env.list_buckets()["Buckets"]}  # (moto's state is per process)
    with pytest.raises(JobError, match="set BUCKET_NAME"):
        upload.upload_image(encoded("JPEG"), key_prefix="job", extension="jpg", bucket_name=name)
    # Nothing went to rp_upload's month-year default bucket either: no bucket was made.
    assert BUCKET in before and {b["Name"] for b in bucket_env.list_buckets()["Buckets"]} == before


def test_nonexistent_bucket_is_a_clear_job_error(bucket_env):
    with pytest.raises(JobError) as info:
        upload.upload_image(encoded("JPEG"), key_prefix="job", extension="jpg", bucket_name="no-such-bucket")
    message = str(info.value)
    assert "'no-such-bucket' does not exist" in message and "BUCKET_NAME" in message
    assert type(info.value).__module__ == "gpu_worker.errors"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_unreachable_endpoint_is_a_clear_job_error(isolated_env, monkeypatch):
    with socket.socket() as sock:  # a loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("BUCKET_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("BUCKET_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("BUCKET_SECRET_ACCESS_KEY", SECRET)
    with pytest.raises(JobError, match="could not connect to the bucket endpoint") as info:
        upload.upload_image(encoded("JPEG"), key_prefix="job", extension="jpg", bucket_name=BUCKET)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert SECRET not in str(info.value)


def test_malformed_endpoint_is_a_clear_job_error(isolated_env, monkeypatch):
    monkeypatch.setenv("BUCKET_ENDPOINT_URL", "not a url")
    monkeypatch.setenv("BUCKET_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("BUCKET_SECRET_ACCESS_KEY", SECRET)
    with pytest.raises(JobError, match="BUCKET_ENDPOINT_URL='not a url' is not a valid endpoint URL"):
        upload.upload_image(encoded("JPEG"), key_prefix="job", extension="jpg", bucket_name=BUCKET)


@pytest.mark.parametrize("ext", ["tiff", "exe", ""])
def test_unknown_extension_is_refused(bucket_env, ext):
    with pytest.raises(JobError, match="extension"):
        upload.upload_image(encoded("JPEG"), key_prefix="job", extension=ext, bucket_name=BUCKET)


def test_empty_data_is_refused(bucket_env):
    with pytest.raises(JobError, match="non-empty"):
        upload.upload_image(b"", key_prefix="job", extension="jpg", bucket_name=BUCKET)


def test_nothing_logs_or_prints_the_image(bucket_env, caplog, capfd):
    """Even with the root logger at DEBUG, neither the bytes nor the secret reach a log or stdout."""
    data = encoded("JPEG")
    caplog.set_level(logging.DEBUG)
    upload.upload_image(data, key_prefix="job-log", extension="jpg", bucket_name=BUCKET)

    needle = repr(data[:24])[2:-1]  # how a bytes body shows inside a logged dict
    logged = "\n".join(record.getMessage() for record in caplog.records)
    out, err = capfd.readouterr()
    for text in (logged, out, err):
        assert needle not in text
        assert SECRET not in text


# ------------------------------------------------------------------- through the job runner
def runner(**overrides):
    import dataclasses

    import torch

    from gpu_worker.config import Settings
    from gpu_worker.jobs import JobRunner

    settings = dataclasses.replace(Settings(), cache_max_bytes=0, bucket_name=BUCKET, **overrides)
    return JobRunner(settings, torch.device("cpu"))


def job(fmt="PNG", upload_flag=False, width=48):
    import base64 as b64

    return {"image": {"base64": b64.b64encode(encoded("JPEG", (96, 64))).decode()},
            "operations": [{"type": "resize", "params": {"width": width}}],
            "output": {"format": fmt, "upload": upload_flag}}


def test_a_job_asking_for_upload_gets_a_presigned_url_back(bucket_env):
    response = runner().run(job(upload_flag=True), job_id="job-42")
    assert response["success"] and "processed_image" not in response, response
    got = requests.get(response["processed_image_url"], timeout=10)
    with Image.open(io.BytesIO(got.content)) as im:
        assert im.format == "PNG" and im.size == (48, 32) == (response["metadata"]["width"], response["metadata"]["height"])


def test_results_over_the_inline_threshold_go_to_the_bucket(bucket_env):
    response = runner(upload_threshold_bytes=1_000).run({"images": [job(), job(width=40)]}, job_id="job-43")
    results = response["results"]
    assert [r["success"] for r in results] == [True, True]
    for result, width in zip(results, (48, 40)):
        with Image.open(io.BytesIO(requests.get(result["processed_image_url"], timeout=10).content)) as im:
            assert im.size[0] == width
    # Under the threshold the same job stays inline.
    inline = runner().run(job(), job_id="job-44")
    assert inline["processed_image"].startswith("data:image/png;base64,")


def test_without_a_bucket_a_large_result_is_an_error_that_says_what_to_configure(isolated_env):
    response = runner(upload_threshold_bytes=1_000).run(job())
    assert response == {"success": False, "error": response["error"]}
    assert "UPLOAD_THRESHOLD_BYTES" in response["error"] and "BUCKET_ENDPOINT_URL" in response["error"]
    asked = runner().run(job(upload_flag=True))
    assert not asked["success"] and "BUCKET_ACCESS_KEY_ID" in asked["error"]
    assert not any(isolated_env.iterdir())  # no silent local file instead
