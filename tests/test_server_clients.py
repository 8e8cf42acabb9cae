"""The local endpoint (``python -m gpu_worker serve``) against real clients: the tutorial's Step 9
client, ``runpod.Endpoint`` and plain HTTP, on a real server on 127.0.0.1.

One server for the module, with an API key, MAX_CONCURRENCY 2 (the cross-job batcher on), a queue
of 3, private URLs allowed (the photos and webhooks are served on 127.0.0.1), short fetch timeout,
results of runsync jobs kept 3 s, and JSON log lines. Slow jobs are real ones: an image URL that
trickles one byte per 0.2 s holds a slot until FETCH_TIMEOUT_S (6 s) ends it.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
from pathlib import Path

import pytest
import requests
import runpod
from PIL import Image

import tutorial_client
from http_servers import LoopbackServer
from local_endpoint import ENDPOINT_ID, WebhookReceiver, start_endpoint
from photos import photo

API_KEY = "test-key-0123456789"
SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "004_e0d64e0493b9d4e0.txt"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


@pytest.fixture(scope="module")
def photos():
    """A loopback server with a real photo at /photo.png and a trickling URL at /slow."""
    with LoopbackServer() as server:
        buf = io.BytesIO()
        photo("astronaut.png").resize((320, 240)).save(buf, "PNG")
        server.add_bytes("/photo.png", buf.getvalue(), content_type="image/png")
        server.add_trickle("/slow", interval_s=0.2, max_s=20)
        yield server


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """(process, base URL) of the module's server."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {"MAX_CONCURRENCY": "2", "SERVE_QUEUE_SIZE": "3", "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS": "true",
           "FETCH_TIMEOUT_S": "6", "SERVE_RUNSYNC_RESULT_TTL_S": "3", "LOG_FORMAT": "json",
           "WEBHOOK_RETRIES": "2", "WEBHOOK_RETRY_DELAY_S": "0.2", "WEBHOOK_TIMEOUT_S": "2",
           "GPU_WORKER_DEVICE": "cpu", "CPU_THREADS": "2"}
    proc, base = start_endpoint(log, env=env, api_key=API_KEY)
    yield proc, base
    proc.stop()
    print(f"--- server log tail:\n{proc.log_tail(40)}")


@pytest.fixture
def api(endpoint):
    """The endpoint's ``/v2/<id>`` URL; waits for slots and queue to be empty first, so tests
    that fill them start from the same state."""
    url = f"{endpoint[1]}/v2/{ENDPOINT_ID}"
    wait_until(lambda: idle(url), 30, "the server to be idle")
    return url


@pytest.fixture
def rp(endpoint):
    """``runpod.Endpoint`` pointed at the server (``runpod.endpoint_url_base``), our key set."""
    saved = runpod.endpoint_url_base, runpod.api_key
    runpod.endpoint_url_base, runpod.api_key = f"{endpoint[1]}/v2", API_KEY
    yield runpod.Endpoint(ENDPOINT_ID)
    runpod.endpoint_url_base, runpod.api_key = saved


def idle(url: str) -> bool:
    jobs = requests.get(f"{url}/health", headers=AUTH, timeout=5).json()["jobs"]
    return jobs["inProgress"] == 0 and jobs["inQueue"] == 0


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.1)


def job(**extra) -> dict:
    """A small real job: the photo resized and sharpened."""
    return {"operations": [{"type": "resize", "params": {"width": 64}}, {"type": "filter", "params": {"name": "sharpen"}}],
            "output": {"format": "PNG"}, **extra}


def post(url: str, body: dict, **kwargs) -> requests.Response:
    return requests.post(url, json=body, headers=AUTH, timeout=30, **kwargs)


def decode(data_uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data_uri.split("base64,", 1)[1])))


# --- the tutorial's client -------------------------------------------------------------------


def test_tutorial_client_is_the_tutorials_code_with_only_the_base_url_changed():
    if not SEEDS.exists():
        pytest.skip(f"the tutorial's text is not here ({SEEDS})")
    text = SEEDS.read_text()
    tutorial = text[text.index("```python", text.index("## Step 9")) + len("```python\n"):]
    tutorial = tutorial[: tutorial.index("# Example usage with URL")].rstrip()
    ours = Path(tutorial_client.__file__).read_text()
    ours = ours[ours.index('"""', 3) + 4:].lstrip()
    expected = tutorial.replace("https://api.runpod.ai", "{BASE_URL}").replace(
        'API_KEY = "YOUR_API_KEY"', 'BASE_URL = "https://api.runpod.ai"\nAPI_KEY = "YOUR_API_KEY"')
    assert ours.rstrip() == expected


@pytest.mark.timeout(90)
def test_tutorial_client_processes_a_photo_from_a_file_and_from_a_url(endpoint, photos, tmp_path, monkeypatch):
    monkeypatch.setattr(tutorial_client, "BASE_URL", endpoint[1])
    monkeypatch.setattr(tutorial_client, "API_KEY", API_KEY)
    monkeypatch.setattr(tutorial_client, "ENDPOINT_ID", ENDPOINT_ID)
    path = tmp_path / "astronaut.png"
    photo("astronaut.png").save(path)

    # The tutorial's own example operations: resize to 800 wide, then sharpen.
    ops = [{"type": "resize", "params": {"width": 800, "maintain_aspect": True}},
           {"type": "filter", "params": {"name": "sharpen"}}]
    result = tutorial_client.process_image(image_path=str(path), operations=ops)
    assert result.get("success"), result
    image = decode(result["processed_image"])
    assert image.format == "JPEG" and image.size == (800, 800)
    assert result["metadata"]["width"] == 800 and result["metadata"]["source"]["width"] == 512

    result = tutorial_client.process_image(image_url=photos.url("/photo.png"))
    assert result.get("success"), result
    assert decode(result["processed_image"]).size == (800, 600)


@pytest.mark.timeout(60)
def test_tutorial_client_sees_a_failed_job_as_failed_with_the_error(endpoint, monkeypatch):
    monkeypatch.setattr(tutorial_client, "BASE_URL", endpoint[1])
    monkeypatch.setattr(tutorial_client, "API_KEY", API_KEY)
    result = tutorial_client.process_image(image_url="ftp://example.com/a.png")
    assert result["error"] == "Job failed"
    details = result["details"]
    assert details["status"] == "FAILED" and "image.url" in details["error"]
    assert details["output"] == {"success": False}


# --- runpod.Endpoint -------------------------------------------------------------------------


def test_runpod_endpoint_run_sync(rp, photos):
    output = rp.run_sync({"image": {"url": photos.url("/photo.png")}, **job()}, timeout=60)
    assert output["success"] is True
    assert decode(output["processed_image"]).size == (64, 48)
    assert set(output["metadata"]["timings_ms"]) >= {"fetch", "decode", "ops", "encode", "total"}


def test_runpod_endpoint_run_status_output(rp, photos):
    request = rp.run({"input": {"image": {"url": photos.url("/photo.png")}, **job()}})
    assert request.status() in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    output = request.output(timeout=60)
    assert request.status() == "COMPLETED"
    assert output["success"] is True and output["metadata"]["width"] == 64


def test_runpod_endpoint_cancel_a_running_job(rp, api, photos):
    request = rp.run({"image": {"url": photos.url("/slow")}})
    wait_until(lambda: request.status() == "IN_PROGRESS", 10, "the job to start")
    assert request.cancel() == {"id": request.job_id, "status": "CANCELLED"}
    assert request.status() == "CANCELLED"
    assert requests.get(f"{api}/status/{request.job_id}", headers=AUTH, timeout=5).json()["status"] == "CANCELLED"


def test_runpod_endpoint_health_and_purge_queue(rp, api, photos):
    slow = {"image": {"url": photos.url("/slow")}}
    running = [rp.run(slow) for _ in range(2)]  # both slots (MAX_CONCURRENCY 2)
    wait_until(lambda: all(r.status() == "IN_PROGRESS" for r in running), 10, "both slots busy")
    queued = [rp.run(slow) for _ in range(3)]  # the queue's 3 places

    health = rp.health()
    assert health["jobs"]["inProgress"] == 2 and health["jobs"]["inQueue"] == 3
    assert health["workers"]["running"] == 2 and health["workers"]["idle"] == 0

    # A full queue is a clear 429 (plain requests: runpod's client retries 429s for a while).
    full = post(f"{api}/run", {"input": slow})
    assert full.status_code == 429 and "queue is full" in full.json()["error"]

    assert rp.purge_queue() == {"removed": 3, "status": "completed"}
    assert [r.status() for r in queued] == ["CANCELLED"] * 3
    assert rp.health()["jobs"]["inQueue"] == 0
    for r in running:
        r.cancel()


def test_runpod_endpoint_with_a_wrong_key_is_unauthorized(endpoint):
    saved = runpod.endpoint_url_base, runpod.api_key
    runpod.endpoint_url_base, runpod.api_key = f"{endpoint[1]}/v2", "wrong"
    try:
        with pytest.raises(RuntimeError, match="401 Unauthorized"):
            runpod.Endpoint(ENDPOINT_ID).health()
    finally:
        runpod.endpoint_url_base, runpod.api_key = saved


# --- the API over plain HTTP -----------------------------------------------------------------


def test_requests_without_the_key_are_refused(api):
    for response in (requests.get(f"{api}/health", timeout=5),
                     requests.post(f"{api}/run", json={"input": {}}, timeout=5),
                     requests.get(f"{api}/health", headers={"Authorization": "Bearer nope"}, timeout=5)):
        assert response.status_code == 401 and "API_KEY" in response.json()["error"]
    assert requests.get(f"{api}/health", headers={"Authorization": API_KEY}, timeout=5).status_code == 200


def test_runsync_waits_at_most_its_bound_then_answers_with_the_id(api, photos):
    started = time.monotonic()
    answer = post(f"{api}/runsync?wait=1000", {"input": {"image": {"url": photos.url("/slow")}}}).json()
    # It waited its bound; IN_PROGRESS says it answered before the job ended (at FETCH_TIMEOUT_S,
    # 6 s). The upper bound is only a hang guard.
    assert 0.9 < time.monotonic() - started < 10
    assert answer["status"] == "IN_PROGRESS" and answer["id"].startswith("sync-")
    post(f"{api}/cancel/{answer['id']}", {})


def test_execution_timeout_then_retry(api, photos):
    body = {"input": {"image": {"url": photos.url("/slow")}}, "policy": {"executionTimeout": 1000}}
    job_id = post(f"{api}/run", body).json()["id"]
    wait_until(lambda: post(f"{api}/status/{job_id}", {}).json()["status"] in FINAL, 10, "the job to end")
    state = requests.get(f"{api}/status/{job_id}", headers=AUTH, timeout=5).json()
    assert state["status"] == "TIMED_OUT" and "executionTimeout" in state["error"]
    # Ran its 1 s, and was cut before the 6 s (FETCH_TIMEOUT_S) it would have taken by itself.
    assert 900 <= state["executionTime"] < 6000

    assert post(f"{api}/retry/{job_id}", {}).json() == {"id": job_id, "status": "IN_QUEUE"}
    wait_until(lambda: requests.get(f"{api}/status/{job_id}", headers=AUTH, timeout=5).json()["status"] in FINAL,
               15, "the retried job to end")
    done = post(f"{api}/retry/{job_id}", {})
    assert done.status_code == 200  # TIMED_OUT again: retryable again
    post(f"{api}/cancel/{job_id}", {})
    completed = post(f"{api}/runsync", {"input": {"image": {"url": photos.url("/photo.png")}}}).json()
    refused = post(f"{api}/retry/{completed['id']}", {})
    assert refused.status_code == 400 and "COMPLETED" in refused.json()["error"]


def test_stream_gives_the_output_once(api, photos):
    answer = post(f"{api}/runsync", {"input": {"image": {"url": photos.url("/photo.png")}, **job()}}).json()
    first = requests.get(f"{api}/stream/{answer['id']}", headers=AUTH, timeout=5).json()
    assert first["status"] == "COMPLETED" and len(first["stream"]) == 1
    assert first["stream"][0]["output"]["success"] is True
    assert requests.get(f"{api}/stream/{answer['id']}", headers=AUTH, timeout=5).json()["stream"] == []


def test_a_batch_job_with_a_bad_item_completes(api, photos):
    good = {"image": {"url": photos.url("/photo.png")}}
    body = {"input": {"images": [good, {"image": {"base64": "not base64!"}}, good], **job()}}
    answer = post(f"{api}/runsync", body).json()
    assert answer["status"] == "COMPLETED"
    assert [r["success"] for r in answer["output"]["results"]] == [True, False, True]


def test_body_limits_are_runpods(api):
    big = {"input": {"image": {"base64": "A" * (10 * 1024 * 1024)}}}
    refused = post(f"{api}/run", big)
    assert refused.status_code == 413 and "10 MiB limit of run" in refused.json()["error"]
    accepted = post(f"{api}/runsync", big)  # under runsync's 20 MiB: a job, which fails on its input
    assert accepted.status_code == 200 and accepted.json()["status"] == "FAILED"
    huge = {"input": {"image": {"base64": "A" * (20 * 1024 * 1024)}}}
    assert post(f"{api}/runsync", huge).status_code == 413


def test_results_are_kept_for_the_stated_time_then_gone(api, photos):
    answer = post(f"{api}/runsync", {"input": {"image": {"url": photos.url("/photo.png")}}}).json()
    status_url = f"{api}/status/{answer['id']}"
    assert requests.get(status_url, headers=AUTH, timeout=5).json()["status"] == "COMPLETED"
    time.sleep(4)  # SERVE_RUNSYNC_RESULT_TTL_S=3
    gone = requests.get(status_url, headers=AUTH, timeout=5)
    assert gone.status_code == 404 and "not found" in gone.json()["error"]


def test_webhook_gets_the_status_json_and_failures_are_retried(api, photos):
    with WebhookReceiver(statuses=[500, 503]) as hook:
        body = {"input": {"image": {"url": photos.url("/photo.png")}, **job()}, "webhook": hook.url}
        job_id = post(f"{api}/run", body).json()["id"]
        wait_until(lambda: len(hook.bodies) == 3, 15, "three webhook attempts")
    assert [b["id"] for b in hook.bodies] == [job_id] * 3
    assert hook.bodies[-1]["status"] == "COMPLETED" and hook.bodies[-1]["output"]["success"] is True


def test_metrics_count_the_finished_jobs(api, endpoint, photos):
    post(f"{api}/runsync", {"input": {"image": {"url": photos.url("/photo.png")}, **job()}})
    text = requests.get(f"{endpoint[1]}/metrics", headers=AUTH, timeout=5).text
    assert float(re.search(r'^gpu_worker_jobs_total\{outcome="COMPLETED"\} (\S+)$', text, re.M).group(1)) >= 1
    assert float(re.search(r'^gpu_worker_images_total\{outcome="ok"\} (\S+)$', text, re.M).group(1)) >= 1
    for stage in ("fetch", "decode", "ops", "encode", "total"):
        assert re.search(rf'^gpu_worker_stage_seconds_count\{{stage="{stage}"\}} [1-9]', text, re.M), stage
    for name in ("gpu_worker_queue_depth", "gpu_worker_jobs_in_progress", "gpu_worker_stacked_images_count",
                 "gpu_worker_job_images_count", "process_resident_memory_bytes"):
        assert re.search(rf"^{name} ", text, re.M), name
    assert requests.get(f"{endpoint[1]}/metrics", timeout=5).status_code == 401


def test_one_json_log_line_per_job_without_image_data(api, endpoint, photos):
    marker = base64.b64encode(Path(__file__).read_bytes()[:3000]).decode()
    answer = post(f"{api}/runsync", {"input": {"image": {"base64": marker}, **job()}}).json()
    answer2 = post(f"{api}/runsync", {"input": {"image": {"url": photos.url("/photo.png")}, **job()}}).json()
    proc = endpoint[0]
    proc.wait_for_log(re.escape(answer2["id"]), 10)
    lines = [json.loads(line) for line in proc.log_text().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("event") == "job" and line["job_id"] in (answer["id"], answer2["id"])]
    assert [line["outcome"] for line in mine] == ["FAILED", "COMPLETED"]
    assert mine[0]["images"] == 1 and mine[0]["failed_images"] == 1 and mine[0]["error"]
    assert mine[1]["timings_ms"]["total"] > 0 and mine[1]["execution_ms"] is not None
    log = proc.log_text()
    assert marker[:200] not in log and "base64," not in log
