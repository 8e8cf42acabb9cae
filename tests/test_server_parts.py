"""Parts of the local endpoint on their own: its settings and start-up refusals, how a handler's
output becomes a RunPod status, and the webhook's address rules (real sockets on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from gpu_worker.server.config import ServerConfig, is_loopback, load_config, refusal
from gpu_worker.server.jobqueue import COMPLETED, FAILED, judge
from gpu_worker.server.webhook import WebhookRefused, WebhookSender, post_once
from local_endpoint import WebhookReceiver
from worker_process import REPO_ROOT, worker_env


def serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpu_worker", "serve", *args], cwd=REPO_ROOT, env=worker_env(env),
                          capture_output=True, text=True, timeout=60)


def test_listening_beyond_loopback_without_a_key_is_refused_at_start():
    done = serve("--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0" in done.stderr and "API_KEY" in done.stderr


def test_bad_server_settings_are_named_at_start():
    done = serve("--queue-size", "many")
    assert done.returncode == 2 and "SERVE_QUEUE_SIZE (--queue-size) must be a number" in done.stderr
    done = serve(env={"LOG_FORMAT": "xml"})
    assert done.returncode == 2 and "LOG_FORMAT" in done.stderr


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
                                            ("localhost", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                            ("::", False), ("example.com", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback
    assert (refusal(ServerConfig(host=host)) is None) is loopback
    assert refusal(ServerConfig(host=host, api_key="k")) is None


def test_flags_override_the_environment_which_overrides_defaults():
    config = load_config(["--port", "9001", "--webhook-retries", "5"],
                         {"SERVE_PORT": "9000", "SERVE_QUEUE_SIZE": "7", "API_KEY": "k", "WEBHOOK_RETRIES": "1"})
    assert (config.port, config.queue_size, config.api_key, config.webhook_retries) == (9001, 7, "k", 5)
    assert config.result_ttl_s == 1800 and config.runsync_result_ttl_s == 60  # RunPod's keep times
    with pytest.raises(ValueError, match="must not be negative"):
        load_config([], {"SERVE_RESULT_TTL_S": "-1"})


def test_a_handler_error_output_is_failed_with_that_error_as_runpods_sdk_reports_it():
    assert judge({"success": False, "error": "bad width"}) == (FAILED, {"success": False}, "bad width")
    assert judge({"error": "only this"}) == (FAILED, None, "only this")
    assert judge({"success": True, "processed_image": "x"}) == (COMPLETED, {"success": True, "processed_image": "x"}, None)
    assert judge({"success": True, "results": [{"success": False, "error": "item"}]})[0] == COMPLETED
    assert judge([1, 2]) == (COMPLETED, [1, 2], None)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "http://[::1]/x",
                                 "http://10.0.0.1/x", "http://2130706433/x", "ftp://example.com/x", "not a url",
                                 "http://[::ffff:127.0.0.1]/x"])
def test_webhooks_to_non_public_addresses_are_refused(clean_env, url):
    with pytest.raises(WebhookRefused):
        post_once(url, {"id": "job"}, timeout_s=2)


def test_a_refused_webhook_is_not_retried(clean_env):
    outcomes = []
    sender = WebhookSender(timeout_s=1, retries=3, retry_delay_s=5, on_outcome=outcomes.append)
    assert asyncio.run(asyncio.wait_for(sender.deliver("http://127.0.0.1:9/hook", {"id": "j"}), 5)) == "refused"
    assert outcomes == ["refused"]


def test_private_webhooks_are_allowed_by_the_sdks_switch(clean_env):
    clean_env.setenv("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "true")
    with WebhookReceiver(statuses=[302]) as hook:
        sender = WebhookSender(timeout_s=2, retries=1, retry_delay_s=0.05)
        # A redirect is not followed: it counts as a failed attempt, and the retry is delivered.
        assert asyncio.run(sender.deliver(hook.url, {"id": "j", "status": "COMPLETED"})) == "delivered"
    assert hook.bodies == [{"id": "j", "status": "COMPLETED"}] * 2
