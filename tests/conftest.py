"""Shared fixtures: one `device` fixture runs every device test on CPU, and on CUDA where present."""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # tests/ helpers (photos, tolerances) import flat

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """torch.device for the test: 'cpu' always, 'cuda' skipped where no GPU exists."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    return torch.device(request.param)


cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module (use with ``pytest.mark.usefixtures``).

    On a shared 2-core CI machine torch's OpenMP threads spin against other processes and a 6 ms
    job can take 400+ ms (measured); tests that bound the job path's time use this so the bounds are
    about the worker, not about that contention. The kernels' threading is covered elsewhere.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def workers():
    """Collects started worker processes (tests/worker_process.py); stops each in teardown and
    prints its log tail, which pytest shows when the test failed."""
    started = []
    yield started
    for proc in started:
        proc.stop()
        print(f"--- {proc.argv[1:3]} rc={proc.returncode} log tail:\n{proc.log_tail(40)}")


@pytest.fixture
def clean_env(monkeypatch):
    """The SDK's default address check (RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS unset), its default size
    cap, and no proxies (the SDK refuses proxied URLs it cannot pin). Returns ``monkeypatch``."""
    monkeypatch.delenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", raising=False)
    monkeypatch.delenv("RUNPOD_MAX_DOWNLOAD_BYTES", raising=False)
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def worker(device):
    """A fresh runtime on ``device`` (own result cache) installed for the handler; the old one
    restored. Tests that take it run on the CPU, and on CUDA where present."""
    import dataclasses

    from gpu_worker import runtime as runtime_module
    from gpu_worker.config import Settings

    previous = runtime_module._runtime
    runtime = runtime_module.build_runtime(dataclasses.replace(Settings(), gpu_worker_device=str(device)))
    runtime_module.set_runtime(runtime)
    yield runtime
    runtime_module.set_runtime(previous)


@pytest.fixture
def dummy_aws(monkeypatch, tmp_path):
    """A dummy AWS identity for moto: no profile, token, endpoint override, config file,
    metadata service or proxy (loopback excepted). Returns ``monkeypatch``."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_S3", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                 "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return monkeypatch


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
