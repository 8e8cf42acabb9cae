"""The README's code runs as written, on this machine (no GPU needed): the Python API snippet, and
"Try it locally"'s curl command and Python clients against a real local endpoint. The endpoint
listens on a free port, so ``http://127.0.0.1:8000`` in the snippets is replaced by its URL; nothing
else is changed."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from local_endpoint import start_endpoint
from worker_process import REPO_ROOT, worker_env

README = (REPO_ROOT / "README.md").read_text()
DOCUMENTED_URL = "http://127.0.0.1:8000"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.M | re.S)


def run(argv: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=REPO_ROOT, env=worker_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv[:2]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    proc, base = start_endpoint(tmp_path_factory.mktemp("readme") / "serve.log", env={"GPU_WORKER_DEVICE": "cpu"})
    yield base
    proc.stop()


def test_the_python_api_snippet_runs_as_written():
    [snippet] = [b for b in blocks("python") if "from gpu_worker import Pipeline" in b]
    run([sys.executable, "-c", snippet + "\nassert out.shape[1:] == (3, 225, 400) and small.size[0] == 400\n"])


def test_the_curl_example_runs_against_the_local_endpoint(endpoint):
    [snippet] = [b for b in blocks("bash") if "curl" in b and "/runsync" in b]
    done = run(["bash", "-c", "set -o pipefail\n" + snippet.replace(DOCUMENTED_URL, endpoint)])
    assert done.stdout.startswith("COMPLETED {'width': 400, 'height': 267")


@pytest.mark.parametrize("marker", ["tutorial_client.process_image", "runpod.Endpoint"])
def test_the_client_snippets_run_against_the_local_endpoint(endpoint, marker):
    [snippet] = [b for b in blocks("python") if marker in b]
    assert DOCUMENTED_URL in snippet
    done = run([sys.executable, "-c", snippet.replace(DOCUMENTED_URL, endpoint)])
    assert "True" in done.stdout and "400" in done.stdout
