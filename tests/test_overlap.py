"""A batch job's chunks with decode, operations and encode overlapped (gpu_worker.overlap), and
batch jobs run in chunks of CHUNK_IMAGES images giving the same results as one chunk."""

from __future__ import annotations

import base64
import dataclasses
import threading

import pytest
import torch

from conftest import cuda_only
from corpus import jpeg, save
from gpu_worker.codecs import decode_batch, probe
from gpu_worker.config import Settings
from gpu_worker.overlap import decoded_ahead, run_chunks
from gpu_worker.runtime import build_runtime
from gpu_worker.jobs import JobRunner
from photos import COLOR_PHOTOS, sample

CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# decoded_ahead on plain Python chunks


def test_chunks_come_in_order_each_decoded_once_before_it_is_yielded():
    decoded: list[int] = []

    def decode(chunk):
        decoded.append(chunk)
        return []

    seen = []
    for chunk, decode_ms in decoded_ahead([0, 1, 2, 3, 4], decode, CPU):
        assert chunk in decoded and decode_ms >= 0
        seen.append(chunk)
    assert seen == [0, 1, 2, 3, 4] and sorted(decoded) == [0, 1, 2, 3, 4]


def test_the_next_chunk_decodes_while_the_caller_holds_this_one():
    next_decoded = threading.Event()

    def decode(chunk):
        if chunk == 1:
            next_decoded.set()
        return []

    for chunk, _ in decoded_ahead([0, 1], decode, CPU):
        if chunk == 0:  # chunk 1 must decode meanwhile, without the caller moving on
            assert next_decoded.wait(timeout=10), "chunk 1 was not decoded while chunk 0 was in use"


def test_at_most_one_chunk_is_decoded_ahead():
    ahead = []  # chunks decoded and not yet finished by the caller, when each decode starts
    finished: set[int] = set()
    lock = threading.Lock()

    def decode(chunk):
        with lock:
            ahead.append(sum(1 for c in range(chunk) if c not in finished))
        return []

    for chunk, _ in decoded_ahead(list(range(6)), decode, CPU):
        threading.Event().wait(0.01)  # give a too-eager helper the time to run further ahead
        with lock:
            finished.add(chunk)
    assert max(ahead) <= 1, ahead


def test_a_lone_chunk_is_decoded_in_the_calling_thread_and_several_on_a_helper():
    threads = []

    def decode(chunk):
        threads.append(threading.current_thread())
        return []

    list(decoded_ahead(["only"], decode, CPU))
    assert threads == [threading.current_thread()]
    threads.clear()
    list(decoded_ahead(["a", "b", "c"], decode, CPU))
    assert len(threads) == 3 and threading.current_thread() not in threads


def test_a_decode_failure_reaches_the_caller_at_its_chunk():
    def decode(chunk):
        if chunk == 2:
            raise RuntimeError("decoder bug on chunk 2")
        return []

    seen = []
    with pytest.raises(RuntimeError, match="chunk 2"):
        for chunk, _ in decoded_ahead([0, 1, 2, 3], decode, CPU):
            seen.append(chunk)
    assert seen == [0, 1]


def test_a_caller_that_stops_early_leaves_no_helper_running():
    release = threading.Event()

    def decode(chunk):
        if chunk == 1:
            release.wait(timeout=10)
        return []

    chunks = decoded_ahead([0, 1, 2], decode, CPU)
    assert next(chunks)[0] == 0
    release.set()
    chunks.close()  # waits for the decode of chunk 1; chunk 2 is never decoded
    assert not [t for t in threading.enumerate() if t.name.startswith("decode-ahead")]


# ---------------------------------------------------------------------------------------------
# run_chunks: decode ahead, operations in the caller, host encodes behind


def _recording(log: list, lock: threading.Lock):
    def stage(name):
        def work(chunk):
            with lock:
                log.append((name, chunk, threading.current_thread().name))
            return []
        return work
    return stage


def test_every_stage_runs_once_per_chunk_in_order_and_done_follows_each_encode():
    log, lock = [], threading.Lock()
    stage = _recording(log, lock)
    done = []
    totals = run_chunks([0, 1, 2, 3], stage("decode"), stage("run"), stage("encode"), CPU,
                        encode_behind=lambda chunk: chunk % 2 == 0, done=done.append)
    assert done == [0, 1, 2, 3] and set(totals) == {"decode", "ops", "encode"}
    for name in ("decode", "run", "encode"):
        assert [chunk for n, chunk, _ in log if n == name] == [0, 1, 2, 3]
    for chunk in range(4):  # decode before run before encode, chunk by chunk
        order = [n for n, c, _ in log if c == chunk]
        assert order == ["decode", "run", "encode"]
    caller = threading.current_thread().name
    assert all(thread == caller for n, _, thread in log if n == "run")
    assert {thread for n, c, thread in log if n == "encode" and c % 2} == {caller}  # not behind: inline
    assert all(thread.startswith("encode-behind") for n, c, thread in log if n == "encode" and c % 2 == 0)


def test_a_host_encode_runs_while_the_caller_runs_the_next_chunk():
    encoding_zero = threading.Event()
    release = threading.Event()

    def encode(chunk):
        if chunk == 0:
            encoding_zero.set()
            assert release.wait(timeout=10)

    def run(chunk):
        if chunk == 1:  # chunk 0 must be encoding meanwhile, on the helper
            assert encoding_zero.wait(timeout=10), "chunk 0 was not encoded beside chunk 1's operations"
            release.set()

    run_chunks([0, 1], lambda chunk: [], run, encode, CPU, encode_behind=lambda chunk: True)


def test_a_failing_encode_behind_reaches_the_caller():
    def encode(chunk):
        if chunk == 1:
            raise RuntimeError("encoder bug on chunk 1")

    done = []
    with pytest.raises(RuntimeError, match="chunk 1"):
        run_chunks([0, 1, 2], lambda chunk: [], lambda chunk: None, encode, CPU,
                   encode_behind=lambda chunk: True, done=done.append)
    assert done == [0]
    assert not [t for t in threading.enumerate() if t.name.startswith(("encode-behind", "decode-ahead"))]


# ---------------------------------------------------------------------------------------------
# batch jobs in chunks


def _job(datas: list[bytes]) -> dict:
    return {"operations": [{"type": "resize", "params": {"width": 41}}, {"type": "filter", "params": {"name": "sharpen"}},
                           {"type": "adjust", "params": {"brightness": 1.1, "contrast": 1.2}}],
            "output": {"format": "PNG"}, "analysis": "source",
            "images": [{"image": {"base64": base64.b64encode(d).decode()}} for d in datas]}


def _sources() -> list[bytes]:
    """Seven real photos in two sizes and two formats, and a JPEG whose data stops half way (it
    probes fine and fails in decode, inside the third chunk of two)."""
    photos = [save(sample("RGB", size, name), fmt) for name in COLOR_PHOTOS
              for size, fmt in (((97, 61), "PNG"), ((64, 48), "JPEG"))][:7]
    whole = jpeg((80, 60))
    return photos[:5] + [whole[: len(whole) // 2]] + photos[5:]


@pytest.mark.parametrize("chunk_images", [1, 2, 3])
def test_a_batch_in_chunks_equals_the_batch_in_one_chunk(device, chunk_images):
    settings = dataclasses.replace(Settings(), gpu_worker_device=str(device), cache_max_bytes=0)
    job = _job(_sources())
    whole = JobRunner(dataclasses.replace(settings, chunk_images=0), device).run(job)
    progress = []
    chunked = JobRunner(dataclasses.replace(settings, chunk_images=chunk_images), device).run(
        job, progress=lambda done, total: progress.append((done, total)))

    assert whole["metadata"]["failed"] == chunked["metadata"]["failed"] == 1
    assert "images[5]" in chunked["results"][5]["error"] and "JPEG" in chunked["results"][5]["error"]
    for alone, part in zip(whole["results"], chunked["results"]):
        assert alone.get("processed_image") == part.get("processed_image")
        assert alone.get("analysis") == part.get("analysis")
    expected = [min(8, n) for n in range(chunk_images, 8 + chunk_images, chunk_images)]
    assert progress == [(done, 8) for done in expected]


def test_chunks_respect_both_the_image_count_and_the_pixel_limit():
    datas = [save(sample("RGB", (40, 30), name), "PNG") for name in COLOR_PHOTOS] * 2  # 8 images
    runner = JobRunner(dataclasses.replace(Settings(), gpu_worker_device="cpu", chunk_images=3,
                                           max_stack_pixels=2 * 40 * 30), CPU)
    progress = []
    response = runner.run(_job(datas), progress=lambda done, total: progress.append(done))
    assert response["metadata"]["failed"] == 0
    assert progress == [2, 4, 6, 8]  # MAX_STACK_PIXELS holds 2 images, fewer than CHUNK_IMAGES
    runner = JobRunner(dataclasses.replace(Settings(), gpu_worker_device="cpu", chunk_images=3), CPU)
    progress.clear()
    runner.run(_job(datas), progress=lambda done, total: progress.append(done))
    assert progress == [3, 6, 8]


# ---------------------------------------------------------------------------------------------
# CUDA: the decode's own stream, and memory handed back only when the job's kernels are done


@cuda_only
@pytest.mark.cuda
def test_decoded_images_freed_by_a_busy_stream_are_not_overwritten_by_the_next_decode():
    """Each decoded chunk is read by a reduction queued behind a long kernel, then dropped while
    that reduction still waits; the helper meanwhile decodes the next chunks, whose memory must
    not be the dropped images' (nvjpeg's hardware decoder writes without waiting for the stream,
    pytorch/vision#9606). The sums must equal those of a plain decode."""
    device = torch.device("cuda")
    datas = [save(sample("RGB", (400, 300), COLOR_PHOTOS[i % 4]), "JPEG", quality=90 - i) for i in range(24)]
    infos = [probe(d) for d in datas]
    expected = [int(image.to(torch.int64).sum()) for image in decode_batch(datas, device, infos)]
    chunks = [list(range(start, start + 4)) for start in range(0, 24, 4)]
    decoded: dict[int, torch.Tensor] = {}

    def decode(chunk):
        images = decode_batch([datas[i] for i in chunk], device, [infos[i] for i in chunk])
        decoded.update(zip(chunk, images))
        return images

    busy = torch.randn(4096, 4096, device=device)
    sums = {}
    for chunk, _ in decoded_ahead(chunks, decode, device):
        for _ in range(20):  # ~tens of ms of queued work before the reductions
            busy = (busy @ busy).tanh_()
        for i in chunk:
            sums[i] = decoded.pop(i).to(torch.int64).sum()  # queued; the image is dropped now
    torch.cuda.synchronize()
    assert [int(sums[i]) for i in range(24)] == expected


def test_images_that_stack_together_share_chunks():
    """Eight images of two sizes, alternating: in chunks of four they run as two stacks of four
    per size, not four stacks of two; results stay in the job's order."""
    datas = [save(sample("RGB", (40, 30) if i % 2 else (30, 40), COLOR_PHOTOS[i % 4]), "PNG") for i in range(8)]
    runner = JobRunner(dataclasses.replace(Settings(), gpu_worker_device="cpu", chunk_images=4, cache_max_bytes=0), CPU)
    job = _job(datas)
    job["operations"] = [{"type": "filter", "params": {"name": "sharpen"}}]  # keeps each size
    response = runner.run(job)
    assert [r["metadata"]["stacked"] for r in response["results"]] == [4] * 8
    assert [(r["metadata"]["width"], r["metadata"]["height"]) for r in response["results"]] == \
        [(40, 30) if i % 2 else (30, 40) for i in range(8)]


def test_concurrent_chunked_jobs_through_the_cross_job_batcher_equal_one_job_alone():
    """Four threads run the same 10-image job five times each (chunks of 3, the cross-job batcher
    stacking images of different jobs): every answer equals the job run alone."""
    datas = [save(sample("RGB", (97 + i % 3, 61), COLOR_PHOTOS[i % 4]), "PNG") for i in range(10)]
    settings = dataclasses.replace(Settings(), gpu_worker_device="cpu", cache_max_bytes=0, chunk_images=3,
                                   max_concurrency=4)
    runtime = build_runtime(settings)
    job = _job(datas)
    alone = [r["processed_image"] for r in runtime.runner.run(job)["results"]]
    answers, lock = [], threading.Lock()

    def work() -> None:
        for _ in range(5):
            response = runtime.runner.run(job)
            with lock:
                answers.append(response)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == 20
    assert all([r["processed_image"] for r in response["results"]] == alone for response in answers)
    assert max(r["metadata"]["stacked"] for response in answers for r in response["results"]) > 3  # across jobs
