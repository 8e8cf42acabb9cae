"""gpu_worker.job_done: a job's failure posted to RunPod the way the SDK posts it, without the SDK.

The reference is the SDK itself: runpod's ``rp_http.send_result`` posts one job's
``{"error": ...}`` to the fake queue (tests/fake_runpod.py) and :func:`post_failures` another's;
the two requests must match (URL query, body bytes, headers but the User-Agent). A new SDK that
changes its job-done call fails here. Then what the SDK's retry does (5xx tried again, 4xx not)
and that an unreachable or silent queue is named within the time bound.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fake_runpod import FakeRunPodQueue
from worker_process import free_port

from gpu_worker import job_done

pytestmark = pytest.mark.timeout(60)

MESSAGE = "the worker process crashed (SIGSEGV) — naïve input? « 3 »"  # non-ASCII: UTF-8 unescaped


def _sdk_send_result(queue: FakeRunPodQueue, job_id: str, monkeypatch) -> None:
    """Post ``{"error": MESSAGE}`` for ``job_id`` with runpod's own job-done call."""
    from runpod.http_client import AsyncClientSession
    from runpod.serverless.modules import rp_http

    url = queue.env()["RUNPOD_WEBHOOK_POST_OUTPUT"].replace("$RUNPOD_POD_ID", queue.pod_id)
    monkeypatch.setattr(rp_http, "JOB_DONE_URL", url)  # read from the environment at its import

    async def send() -> None:
        async with AsyncClientSession() as session:
            await rp_http.send_result(session, {"error": MESSAGE}, {"id": job_id})

    asyncio.run(send())


@pytest.mark.parametrize("key_from", ["environment", "credential_file"])
def test_the_failure_post_is_the_sdks_job_done_post(key_from, monkeypatch, tmp_path):
    from runpod.cli.groups.config import functions as sdk_credentials

    home = tmp_path / "home"
    (home / ".runpod").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(sdk_credentials, "CREDENTIAL_FILE", str(home / ".runpod" / "config.toml"))
    with FakeRunPodQueue() as queue:
        monkeypatch.setenv("RUNPOD_AI_API_KEY", queue.api_key)
        expected_key = queue.api_key
        if key_from == "credential_file":
            (home / ".runpod" / "config.toml").write_text('[default]\napi_key = "key-from-the-file"\n')
            expected_key = "key-from-the-file"
        by_sdk, by_us = queue.add_job({}), queue.add_job({})
        _sdk_send_result(queue, by_sdk, monkeypatch)
        assert job_done.post_failures({by_us: MESSAGE}, environ=queue.env()) == {}
        sdk, ours = queue.records[by_sdk], queue.records[by_us]
        assert queue.unexpected == []

    assert sdk.result == ours.result == {"error": MESSAGE}
    assert sdk.result_query == ours.result_query == {"gpu": "fake", "isStream": "false"}
    assert sdk.result_headers["x-request-id"] == by_sdk and ours.result_headers["x-request-id"] == by_us
    assert ours.result_headers["authorization"] == expected_key
    assert ours.result_headers["user-agent"].startswith("gpu_worker.job_done")
    # Same headers (content-length: the same bytes, UTF-8 unescaped), bar those naming the sender
    # or the connection (urllib closes it, aiohttp keeps it).
    ignored = {"host", "user-agent", "connection", "x-request-id"}
    assert ({k: v for k, v in ours.result_headers.items() if k not in ignored}
            == {k: v for k, v in sdk.result_headers.items() if k not in ignored})


class _Scripted(BaseHTTPRequestHandler):
    """Answers each POST with the next status of ``server.statuses`` (then 200), counting them."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts.append(self.path)
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture
def scripted_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.posts, server.statuses = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _environ(port: int) -> dict[str, str]:
    return {job_done.JOB_DONE_URL_ENV: f"http://127.0.0.1:{port}/job-done/$RUNPOD_POD_ID/$ID?gpu=x",
            "RUNPOD_POD_ID": "pod-1", "RUNPOD_AI_API_KEY": "key"}


def test_a_5xx_answer_is_tried_again_and_a_4xx_is_final(scripted_server, monkeypatch):
    monkeypatch.setattr(job_done, "RETRY_WAITS_S", (0.05, 0.05))
    environ = _environ(scripted_server.server_port)

    scripted_server.statuses[:] = [503, 502]
    assert job_done.post_failures({"j1": "x"}, environ=environ) == {}
    assert scripted_server.posts == ["/job-done/pod-1/j1?gpu=x&isStream=false"] * 3

    scripted_server.posts.clear()
    scripted_server.statuses[:] = [500, 500, 500, 500]
    assert job_done.post_failures({"j2": "x"}, environ=environ) == {"j2": "HTTP 500 Internal Server Error"}
    assert len(scripted_server.posts) == job_done.ATTEMPTS

    scripted_server.posts.clear()
    scripted_server.statuses[:] = [404]
    assert job_done.post_failures({"j3": "x"}, environ=environ) == {"j3": "HTTP 404 Not Found"}
    assert len(scripted_server.posts) == 1


def test_an_unreachable_or_silent_queue_is_named_within_the_time_bound():
    refused = job_done.post_failures({"a": "x", "b": "y"}, environ=_environ(free_port()))
    assert set(refused) == {"a", "b"} and all("Connection refused" in why for why in refused.values()), refused

    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        undelivered = job_done.post_failures({"a": "x", "b": "y"}, timeout=0.5,
                                             environ=_environ(silent.getsockname()[1]))
        took = time.monotonic() - started
    assert set(undelivered) == {"a", "b"}, undelivered
    assert all("timed out" in why or "no answer within 0.5 s" in why for why in undelivered.values()), undelivered
    assert took < 3.0, took  # bounded by its timeout, not by the network

    assert job_done.post_failures({"a": "x"}, environ={}) == {"a": "RUNPOD_WEBHOOK_POST_OUTPUT is not set"}
