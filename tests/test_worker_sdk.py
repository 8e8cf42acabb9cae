"""The real worker (``python -m gpu_worker``, on CPU) under the RunPod SDK, in all its modes.

* ``--rp_serve_api``: ``/runsync``, ``/run`` + ``/status``;
* ``--test_input``: one job, and no base64 in its log (gpu_worker.sdk_patches redaction);
* the real job loop against the fake queue (tests/fake_runpod.py): many jobs, failures, a batch
  job with progress updates, concurrency, cross-job stacking, SIGTERM with jobs in flight and on
  a held job-take poll, the bounded shutdown, and a worker that cannot start.

Jobs carry small JPEGs made from scikit-image's photos; results are decoded with Pillow and
compared with Pillow's own resize of the same source. Everything runs on 127.0.0.1; every worker
is stopped (its process group killed) in teardown.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import io
import re
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from fake_runpod import FakeRunPodQueue, JobRecord
from photos import photo
from worker_process import (
    WorkerProcess, api_run, api_runsync, api_status, parse_test_input_result, run_test_input,
    start_api_worker, start_polling_worker, start_worker,
)

from gpu_worker import sdk_patches

pytestmark = pytest.mark.timeout(180)

MODULE = "gpu_worker"
READY_TIMEOUT = 90.0  # torch import + warm-up, on 2 busy cores
#: Every worker here: CPU, and no result cache (each job computes, so timings and stacking mean
#: something); MAX_CONCURRENCY and the batcher's settings are set per worker.
BASE_ENV = {"GPU_WORKER_DEVICE": "cpu", "CACHE_MAX_BYTES": "0"}
#: A run of base64 this long in a log is a leak (the redaction leaves none of 100 or more).
LEAK = re.compile(r"[A-Za-z0-9+/]{100,}")


# ---------------------------------------------------------------------------- photos and jobs
def jpeg(name: str = "rocket.jpg", size: tuple[int, int] = (200, 133), box: tuple | None = None) -> bytes:
    """A real photo (or a crop of it) resized to ``size``, as JPEG bytes."""
    im = photo(name)
    if box is not None:
        im = im.crop(box)
    out = io.BytesIO()
    im.resize(size, Image.Resampling.LANCZOS).save(out, "JPEG", quality=90)
    return out.getvalue()


def data_uri(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def resize_job(data: bytes, width: int, fmt: str = "PNG") -> dict:
    return {"image": {"base64": data_uri(data)},
            "operations": [{"type": "resize", "params": {"width": width}}],
            "output": {"format": fmt}}


def heavy_job(data: bytes, width: int, height: int, blurs: int) -> dict:
    """CPU-heavy: an enlargement to ``width`` x ``height`` and ``blurs`` blur filters."""
    ops = [{"type": "resize", "params": {"width": width, "height": height, "maintain_aspect": False}}]
    ops += [{"type": "filter", "params": {"name": "blur"}}] * blurs
    return {"image": {"base64": data_uri(data)}, "operations": ops, "output": {"format": "JPEG"}}


def decode_result(output: dict) -> Image.Image:
    """The image in a successful response's ``processed_image`` data URI."""
    assert output["success"] is True, output
    head, payload = output["processed_image"].split(",", 1)
    assert head == f"data:image/{output['metadata']['format'].lower()};base64"
    with Image.open(io.BytesIO(base64.b64decode(payload, validate=True))) as im:
        im.load()
        return im


def check_resized(output: dict, source: bytes, width: int) -> None:
    """``output`` is ``source`` resized to ``width`` (aspect kept, height truncated, as the job
    contract says), within a level of Pillow's LANCZOS resize."""
    with Image.open(io.BytesIO(source)) as src:
        src = src.convert("RGB")
    size = (width, max(1, int(src.height * width / src.width)))
    result = decode_result(output)
    assert result.size == size and (output["metadata"]["width"], output["metadata"]["height"]) == size
    expected = np.asarray(src.resize(size, Image.Resampling.LANCZOS), dtype=np.int16)
    diff = np.abs(np.asarray(result.convert("RGB"), dtype=np.int16) - expected)
    assert diff.mean() < 1.0, f"mean difference {diff.mean():.2f} from Pillow"


# ---------------------------------------------------------------------------- worker helpers
def launch(queue: FakeRunPodQueue, log_path, **env: str) -> WorkerProcess:
    """``python -m gpu_worker`` against ``queue``; returns once its job loop polls."""
    return start_polling_worker(queue, log_path, READY_TIMEOUT, module=MODULE, env={**BASE_ENV, **env})


def makespan(records: dict[str, JobRecord]) -> float:
    """From the first job handed out to the last result received (seconds)."""
    return max(r.result_at for r in records.values()) - min(r.handed_out_at for r in records.values())


def max_overlap(records: dict[str, JobRecord]) -> int:
    """Most jobs held at once by the worker: handed out and not yet reported."""
    events = sorted([(r.handed_out_at, 1) for r in records.values()]
                    + [(r.result_at, -1) for r in records.values()], key=lambda e: (e[0], e[1]))
    held = best = 0
    for _, step in events:
        held += step
        best = max(best, held)
    return best




@pytest.fixture(scope="module")
def worker4(tmp_path_factory):
    """One real worker, MAX_CONCURRENCY=4, a 200 ms cross-job batching window and 50,000-pixel
    chunks (so a batch of 200x133 images runs in several chunks), on its own fake queue."""
    with FakeRunPodQueue() as queue:
        proc = launch(queue, tmp_path_factory.mktemp("worker4") / "worker.log",
                      MAX_CONCURRENCY="4", BATCH_WAIT_MS="200", MAX_STACK_PIXELS="50000")
        try:
            yield queue, proc
        finally:
            proc.stop()
            print(f"--- worker4 log tail:\n{proc.log_tail(30)}")


# ---------------------------------------------------------------------------- log redaction
def test_redact_replaces_data_uris_and_long_base64_runs():
    payload = base64.b64encode(jpeg(size=(64, 48))).decode()
    text = repr({"processed_image": f"data:image/jpeg;base64,{payload}", "bare": payload, "id": "job-1"})
    redacted = sdk_patches.redact(text)
    assert payload not in redacted and not LEAK.search(redacted)
    placeholder = f"<base64: {len(payload):,} chars>"
    # Still a Python literal (the harness parses the --test_input result line).
    assert ast.literal_eval(redacted) == {"processed_image": f"data:image/jpeg;base64,{placeholder}",
                                          "bare": placeholder, "id": "job-1"}
    short = "data:image/png;base64,iVBORw0KGgo="
    assert sdk_patches.redact(short) == "data:image/png;base64,<base64: 12 chars>"
    for plain in ("Jobs in progress: 4", "/work/main/.venv/lib/python3.11/site-packages/runpod", "x" * 99):
        assert sdk_patches.redact(plain) == plain


def test_sdk_logger_prints_no_base64(monkeypatch, capsys):
    from runpod.serverless.modules import rp_logger

    monkeypatch.setattr(rp_logger.RunPodLogger, "log", rp_logger.RunPodLogger.log)  # restored after
    monkeypatch.setattr(rp_logger.RunPodLogger(), "level", "DEBUG")
    monkeypatch.delenv("RUNPOD_ENDPOINT_ID", raising=False)
    sdk_patches.install_log_redaction()
    sdk_patches.install_log_redaction()  # idempotent: one wrapper
    assert rp_logger.RunPodLogger.log._redacts_base64
    assert not hasattr(rp_logger.RunPodLogger.log.__wrapped__, "_redacts_base64")
    payload = base64.b64encode(jpeg(size=(300, 200))).decode()  # over the SDK's 4 kB truncation
    logger = rp_logger.RunPodLogger()
    logger.info(f"Job result: {{'output': {{'processed_image': 'data:image/jpeg;base64,{payload}'}}}}")
    logger.debug({"output": payload}, "job-7")
    printed = capsys.readouterr().out.splitlines()
    placeholder = f"<base64: {len(payload):,} chars>"
    assert printed == [
        f"INFO   | Job result: {{'output': {{'processed_image': 'data:image/jpeg;base64,{placeholder}'}}}}",
        f"DEBUG  | job-7 | {{'output': '{placeholder}'}}",
    ]


# ---------------------------------------------------------------------------- settings
def test_shutdown_grace_setting():
    assert sdk_patches.shutdown_grace_s(environ={}) == sdk_patches.DEFAULT_SHUTDOWN_GRACE_S
    assert sdk_patches.shutdown_grace_s(environ={"SHUTDOWN_GRACE_S": "2.5"}) == 2.5
    assert sdk_patches.shutdown_grace_s(environ={"SHUTDOWN_GRACE_S": "0"}) == 0

    class WithSetting:
        shutdown_grace_s = 7.0

    assert sdk_patches.shutdown_grace_s(WithSetting(), environ={"SHUTDOWN_GRACE_S": "1"}) == 7.0
    for bad in ("-1", "soon", "inf", "nan"):
        with pytest.raises(ValueError, match=r"shutdown_grace_s \(SHUTDOWN_GRACE_S\) must be a number"):
            sdk_patches.shutdown_grace_s(environ={"SHUTDOWN_GRACE_S": bad})


# ---------------------------------------------------------------------------- drain fix, in process
@pytest.mark.parametrize("patched", [False, True], ids=["sdk", "with_drain_fix"])
def test_job_returned_by_the_poll_open_at_shutdown_is_run(patched, monkeypatch):
    """The SDK's JobScaler, driven in this process with a fetcher that answers its poll after
    the shutdown signal: runpod 1.12.0 drops that job; the patched scaler runs it."""
    from runpod.serverless.modules import rp_logger, rp_scale, worker_state

    if not worker_state.IS_LOCAL_TEST:
        pytest.skip("RUNPOD_WEBHOOK_GET_JOB is set: the SDK ignores custom fetchers")
    monkeypatch.setattr(rp_scale, "JobScaler", rp_scale.JobScaler)  # restored after
    monkeypatch.setattr(rp_logger.RunPodLogger(), "level", "WARN")
    worker_state.JobsProgress().clear()
    if patched:
        sdk_patches.install_drain_fix()
    handled: list[str] = []
    polls = 0

    async def fetcher(session, count):
        nonlocal polls
        polls += 1
        if polls > 1:
            return None
        scaler.kill_worker()  # SIGTERM arrives while the poll is held open ...
        await asyncio.sleep(0.3)  # ... run_jobs sees an empty queue and stops picking jobs
        return [{"id": "taken-at-shutdown", "input": {}}]

    async def jobs_handler(session, config, job):
        handled.append(job["id"])

    async def no_stop_signals(session):
        await asyncio.sleep(0.05)
        return []

    scaler = rp_scale.JobScaler({"handler": None, "jobs_fetcher": fetcher, "jobs_handler": jobs_handler,
                                 "stop_signals_fetcher": no_stop_signals,
                                 "concurrency_modifier": lambda current: 2})
    asyncio.run(asyncio.wait_for(scaler.run(), timeout=10))
    assert handled == (["taken-at-shutdown"] if patched else [])
    assert worker_state.JobsProgress().get_job_count() == (0 if patched else 1)
    worker_state.JobsProgress().clear()


# ---------------------------------------------------------------------------- local modes
def test_serve_api_runsync_and_run_status(workers, tmp_path):
    proc, url = start_api_worker(module=MODULE, env=BASE_ENV, log_path=tmp_path / "api.log",
                                 timeout=READY_TIMEOUT)
    workers.append(proc)
    source = jpeg("chelsea.png", (200, 150))

    started = time.perf_counter()
    reply = api_runsync(url, resize_job(source, 120), timeout=60)
    runsync_s = time.perf_counter() - started
    assert reply["status"] == "COMPLETED", reply
    check_resized(reply["output"], source, 120)
    assert reply["output"]["metadata"]["device"] == "cpu"

    queued = api_run(url, resize_job(source, 64, fmt="JPEG"))
    assert queued["status"] == "IN_PROGRESS"
    status = api_status(url, queued["id"], timeout=60)  # /status runs the stored job
    assert status["status"] == "COMPLETED", status
    assert decode_result(status["output"]).size == (64, 48)

    failed = api_runsync(url, {"image": {"base64": data_uri(source)}, "operations": [{"type": "sepia"}]})
    assert failed["status"] == "FAILED"
    assert "operations[0].type: 'sepia' is not an operation" in failed["error"]
    print(f"--rp_serve_api: /runsync of a 200x150 JPEG took {runsync_s * 1000:.0f} ms")
    rc, _ = proc.terminate(timeout=15)
    assert rc in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown


def test_test_input_runs_once_and_logs_no_base64():
    """``--test_input`` at DEBUG, where the SDK logs the job's input, the handler's output and
    the result: no base64 may reach the log."""
    source = jpeg("rocket.jpg", (200, 133))
    job = resize_job(source, 100, fmt="JPEG")
    done = run_test_input(module=MODULE, job_input=job, env={**BASE_ENV, "RUNPOD_LOG_LEVEL": "DEBUG"},
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    result = parse_test_input_result(done.stdout)["output"]
    assert result["success"] is True
    assert result["processed_image"].startswith("data:image/jpeg;base64,<base64: ")
    assert (result["metadata"]["width"], result["metadata"]["height"]) == (100, 66)
    assert "Local testing complete, exiting." in done.stdout
    assert job["image"]["base64"][23:123] not in done.stdout  # the input
    assert not LEAK.search(done.stdout), LEAK.search(done.stdout).group()[:80]
    assert "Retrieved local job" in done.stdout  # DEBUG did log the job, redacted


# ---------------------------------------------------------------------------- the real job loop
def test_many_jobs_completed_with_correct_outputs(worker4):
    queue, proc = worker4
    sources = [jpeg(name, (200, 133)) for name in ("rocket.jpg", "chelsea.png", "coffee.png")]
    jobs = [(sources[i % 3], 40 + 8 * i) for i in range(12)]  # a different output size per job
    ids = queue.add_jobs([resize_job(source, width) for source, width in jobs])
    records = queue.wait_for_results(ids, timeout=60)

    for (source, width), record in zip(jobs, records.values()):
        assert not record.failed, record.result
        assert len(record.results) == 1
        check_resized(record.output, source, width)
    print(f"12 jobs, MAX_CONCURRENCY=4: {makespan(records):.2f} s from first taken to last result")
    assert queue.unexpected == [] and proc.alive()


def test_failing_jobs_reported_and_worker_keeps_serving(worker4):
    queue, proc = worker4
    source = jpeg("coffee.png", (200, 133))
    bad_base64 = queue.add_job({"image": {"base64": "data:image/jpeg;base64,not*base64"}})
    unknown_op = queue.add_job({"image": {"base64": data_uri(source)}, "operations": [{"type": "sepia"}]})
    not_an_image = queue.add_job({"image": {"base64": base64.b64encode(b"plain text, no image").decode()}})
    after = queue.add_jobs([resize_job(source, 50), resize_job(source, 60)])
    records = queue.wait_for_results([bad_base64, unknown_op, not_an_image, *after], timeout=60)

    # The handler returns {"success": false, "error": ...}: the SDK posts the error beside the rest.
    for job_id, expected in ((bad_base64, "image.base64 is not valid base64: character '*'"),
                             (unknown_op, "operations[0].type: 'sepia' is not an operation; allowed:"),
                             (not_an_image, "not a recognised image")):
        record = records[job_id]
        assert record.failed and record.result == {"output": {"success": False}, "error": record.error}
        assert expected in record.error, record.error
    for job_id, width in zip(after, (50, 60)):
        check_resized(records[job_id].output, source, width)
    assert proc.alive()


def test_batch_job_in_order_with_progress_updates(worker4):
    queue, _ = worker4
    sources = [jpeg(name, (200, 133)) for name in ("rocket.jpg", "chelsea.png", "coffee.png")]
    items = [resize_job(sources[0], 50), {"image": {"base64": "%%%"}},
             resize_job(sources[1], 70), resize_job(sources[2], 90)]
    job_id = queue.add_job({"images": items})
    record = queue.wait_for_results([job_id], timeout=60)[job_id]

    assert not record.failed, record.result
    output = record.output
    assert output["metadata"]["count"] == 4 and output["metadata"]["failed"] == 1
    results = output["results"]
    assert results[1] == {"success": False,
                          "error": "images[1]: image.base64 is not valid base64: character '%' at position 0 of the data"}
    for index, source, width in ((0, sources[0], 50), (2, sources[1], 70), (3, sources[2], 90)):
        check_resized(results[index], source, width)
    # 26,600-pixel images in 50,000-pixel chunks: one image per chunk, a progress update after
    # each but the last (the result itself says it is done). The failed item counts as done from
    # the start. Updates are fire-and-forget threads:
    # wait for them, in any order.
    queue.wait_until(lambda: len(record.progress) >= 2, timeout=15, what="2 progress updates")
    progress = sorted((p for _, p in record.progress), key=lambda p: p["processed"])
    assert progress == [{"processed": n, "total": 4} for n in (2, 3)]


def test_concurrency_4_overlaps_and_one_slot_is_refilled_at_once(worker4, workers, tmp_path):
    source = jpeg("chelsea.png", (200, 133))
    jobs = [heavy_job(source, 800 + 8 * i, 532, blurs=1) for i in range(8)]  # distinct shapes
    queue4, _ = worker4
    queue4.wait_for_idle_worker(timeout=30)
    records4 = queue4.wait_for_results(queue4.add_jobs(jobs), timeout=90)

    # Each result post takes 0.5 s to arrive (a slow link), so the order of take and post shows
    # when the one slot asked again.
    with FakeRunPodQueue(post_delay_s=0.5) as queue1:
        proc1 = launch(queue1, tmp_path / "conc1.log", MAX_CONCURRENCY="1")
        workers.append(proc1)
        queue1.wait_for_idle_worker(timeout=30)
        records1 = queue1.wait_for_results(queue1.add_jobs(jobs), timeout=120)
        proc1.stop()  # while its queue still answers

    for records in (records4, records1):
        assert not any(r.failed for r in records.values())
    span4, span1 = makespan(records4), makespan(records1)
    overlap4, overlap1 = max_overlap(records4), max_overlap(records1)
    print(f"8 jobs (800x532 enlargement + blur): MAX_CONCURRENCY=4 {span4:.2f} s (overlap {overlap4}), "
          f"MAX_CONCURRENCY=1 {span1:.2f} s (overlap {overlap1}), ratio {span4 / span1:.2f}")
    # Held at once = running + results being posted: one slot runs one job while the result
    # before it may still be on its way (sdk_patches fix 4).
    assert overlap1 <= 2 and overlap4 >= 3
    # runpod 1.12 alone sleeps 1 s whenever every slot is busy, and holds the slot until the
    # result is posted: each next job came after the result before it. The prompt job-take asks
    # again as soon as the handler returns: each next job is handed out while the result before
    # it is still on its way.
    in_order = sorted(records1.values(), key=lambda r: r.handed_out_at)
    for before, after in zip(in_order, in_order[1:]):
        assert after.handed_out_at < before.result_at


def test_cross_job_batching_stacks_concurrent_jobs(worker4):
    """Four jobs of the same shape and operations, taken together, share kernel calls
    (``metadata.stacked`` > 1). Needs the CrossJobBatcher wired in runtime.py for
    MAX_CONCURRENCY > 1."""
    queue, _ = worker4
    crops = [(0, 0, 240, 160), (100, 50, 340, 210), (200, 100, 440, 260), (300, 150, 540, 310)]
    sources = [jpeg("astronaut.png", (96, 64), box) for box in crops]  # 6,144 px: 8 fit in a chunk
    queue.wait_for_idle_worker(timeout=30)
    ids = queue.add_jobs([resize_job(source, 48) for source in sources])
    records = queue.wait_for_results(ids, timeout=60)

    stacked = [records[i].output["metadata"]["stacked"] for i in ids]
    print(f"4 same-shape jobs at once, BATCH_WAIT_MS=200: stacked per job {stacked}")
    for source, job_id in zip(sources, ids):
        check_resized(records[job_id].output, source, 48)  # each job got its own image back
    assert max(stacked) > 1, f"no job shared a kernel call: stacked={stacked}"


# ---------------------------------------------------------------------------- SIGTERM
def test_sigterm_finishes_jobs_in_flight_and_on_the_open_poll(workers, tmp_path):
    """SIGTERM with two jobs running and a job-take poll held open: both jobs finish and are
    posted, the job that the open poll then returns is run too (the drain fix), the worker
    exits 0 and its heartbeat process with it."""
    with FakeRunPodQueue(poll_hold_s=10.0) as queue:
        proc = launch(queue, tmp_path / "sigterm.log", MAX_CONCURRENCY="4")
        workers.append(proc)
        source = jpeg("rocket.jpg", (200, 133))
        # ~4 s each on one core (an enlargement and 30 blurs), so both are still running at SIGTERM.
        in_flight = queue.add_jobs([heavy_job(source, 4000, 2667, blurs=30) for _ in range(2)])
        proc.wait_for_log(r"\| Started\.", timeout=30, count=2)
        # A fresh held poll (it asks for the 2 free slots), so it is still open 0.5 s later.
        queue.wait_until(lambda: queue.polls[-1].answered_at is None and time.time() - queue.polls[-1].at < 6,
                         timeout=10, what="a fresh held job-take poll")
        proc.send_sigterm()
        time.sleep(0.5)  # run_jobs has stopped taking jobs from its queue by now
        late = queue.add_job(resize_job(source, 80))
        rc = proc.wait_exit(timeout=60)
        delay = proc.exited_at - proc.sigterm_at
        print(f"SIGTERM with 2 jobs in flight and one on the open poll: exit {rc} after {delay:.2f} s")

        assert rc == 0
        for job_id in in_flight:
            record = queue.records[job_id]
            assert record.done and not record.failed, record.result
            assert proc.sigterm_at < record.result_at <= proc.exited_at
            assert decode_result(record.output).size == (4000, 2667)
        record = queue.records[late]
        assert record.handed_out_at > proc.sigterm_at, "the late job should come on the open poll"
        assert record.done, "taken on the open poll at SIGTERM, never run: the drain fix is missing"
        check_resized(record.output, source, 80)
        assert "running 1 job(s) taken by the last job-take request" in proc.log_text()
        assert proc.group_members() == []
        assert queue.unexpected == []


def test_shutdown_grace_bounds_the_wait_and_reports_the_unfinished_job(workers, tmp_path):
    """A job far longer than SHUTDOWN_GRACE_S: at SIGTERM + grace it is reported FAILED with a
    message naming the limit, and the worker exits 0 at once, heartbeat included."""
    grace = 1.5
    with FakeRunPodQueue() as queue:
        proc = launch(queue, tmp_path / "grace.log", SHUTDOWN_GRACE_S=str(grace))
        workers.append(proc)
        source = jpeg("rocket.jpg", (200, 133))
        slow = queue.add_job(heavy_job(source, 6000, 4000, blurs=45))  # 15 s or more on this CPU
        proc.wait_for_log(r"\| Started\.", timeout=30)
        rc, delay = proc.terminate(timeout=30)
        print(f"SIGTERM, SHUTDOWN_GRACE_S={grace}, a job of 15 s or more running: exit {rc} after {delay:.2f} s")

        assert rc == 0
        # It waited the grace period. The upper bound is a hang guard, under the 15 s the job
        # would take: the job's FAILED record below shows it was cut, not waited for.
        assert grace <= delay < grace + 8
        record = queue.records[slow]
        assert record.failed and set(record.result) == {"error"}
        assert record.result_headers["authorization"] == queue.api_key  # gpu_worker.job_done's post
        assert f"shutdown grace period of {grace:g} s (SHUTDOWN_GRACE_S)" in record.error
        assert proc.sigterm_at + grace <= record.result_at <= proc.exited_at
        assert f"Shutdown grace period of {grace:g} s (SHUTDOWN_GRACE_S) is over with 1 job(s) unfinished" \
            in proc.log_text()
        assert proc.group_members() == []


# ---------------------------------------------------------------------------- start-up failure
def test_worker_that_cannot_build_its_runtime_exits_before_taking_jobs(tmp_path):
    """A device that does not exist: one clear log line, exit status 1, no job-take poll."""
    with FakeRunPodQueue() as queue:
        proc = start_worker(module=MODULE, env=queue.env(**{**BASE_ENV, "GPU_WORKER_DEVICE": "cuda:99"}),
                            log_path=tmp_path / "nodevice.log")
        try:
            rc = proc.wait_exit(timeout=READY_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit:\n{proc.log_tail()}")
        finally:
            proc.stop()
        log = proc.log_text()
        print(log)
        assert rc == 1
        errors = [line for line in log.splitlines() if line.startswith("ERROR")]
        assert len(errors) == 1, log
        assert re.fullmatch(r"ERROR  \| Worker failed to start: cannot build the runtime: device 'cuda:99'"
                            r".* \(GPU_WORKER_DEVICE='cuda:99'\)", errors[0]), errors[0]
        assert "Traceback" not in log
        assert queue.polls == [] and queue.pings == []
