"""gpu_worker.cpu_pool and the worker's CPU thread policy: images in parallel, one torch thread each.

The pool's contract (order, errors, nesting) on plain functions; then a real batch job through the
handler with the pool on, whose results must be the bytes of the same job run one image at a time,
with decode, ops and encode seen running on the pool's threads.
"""

from __future__ import annotations

import base64
import dataclasses
import threading

import pytest
import torch

import gpu_worker.stages.device as device_stages
import gpu_worker.runtime as runtime_module
from corpus import png as png_bytes
from gpu_worker import cpu_pool
from gpu_worker.config import Settings
from gpu_worker.handler import run_sync
from gpu_worker.runtime import build_runtime, set_runtime, use_cpu_cores
from kernels import parallel, resize
from photos import COLOR_PHOTOS, photo, sample, to_tensor


@pytest.fixture
def restore():
    """Leaves the pool, the kernels' piece map and torch's threads as they were (process-wide)."""
    threads, pool_threads, piece_map = torch.get_num_threads(), cpu_pool.threads(), parallel._piece_map
    yield
    cpu_pool.use_threads(pool_threads)
    parallel.set_piece_map(piece_map)
    torch.set_num_threads(threads)


def test_map_runs_items_at_once_in_order(restore):
    cpu_pool.use_threads(2)
    assert cpu_pool.threads() == 2
    both_running = threading.Barrier(2, timeout=10)  # passes only if two items run at the same time

    def work(x: int) -> tuple[int, str]:
        if x < 2:
            both_running.wait()
        return x * x, threading.current_thread().name

    results = cpu_pool.map_images(work, range(6))
    assert [value for value, _ in results] == [x * x for x in range(6)]
    assert all(name.startswith("cpu-image") for _, name in results)


def test_map_without_pool_runs_in_the_caller(restore):
    cpu_pool.use_threads(1)
    assert cpu_pool.threads() == 1
    names = cpu_pool.map_images(lambda _: threading.current_thread().name, range(3))
    assert names == [threading.current_thread().name] * 3


def test_first_error_propagates_and_the_pool_keeps_working(restore):
    cpu_pool.use_threads(2)

    def work(x: int) -> int:
        if x == 3:
            raise ValueError("bad item 3")
        return x

    with pytest.raises(ValueError, match="bad item 3"):
        cpu_pool.map_images(work, range(6))
    assert cpu_pool.map_images(lambda x: x + 1, range(4)) == [1, 2, 3, 4]


def test_nested_calls_run_inline_instead_of_deadlocking(restore):
    cpu_pool.use_threads(2)
    done = threading.Event()
    result: list = []

    def outer(x: int) -> list[int]:
        return cpu_pool.map_images(lambda y: x * 10 + y, range(3))

    thread = threading.Thread(target=lambda: (result.append(cpu_pool.map_images(outer, range(4))), done.set()))
    thread.start()
    assert done.wait(10), "a map inside the pool's threads waited on the pool"
    assert result == [[[0, 1, 2], [10, 11, 12], [20, 21, 22], [30, 31, 32]]]


def test_worker_start_up_policy(restore):
    torch.set_num_threads(2)
    use_cpu_cores(Settings(cpu_threads=3), torch.device("cpu"))
    assert torch.get_num_threads() == 1 and cpu_pool.threads() == 3
    assert parallel._piece_map is cpu_pool.map_images
    use_cpu_cores(Settings(), torch.device("cpu"))  # 0: every core this process may use
    assert cpu_pool.threads() == cpu_pool.available_cores()
    use_cpu_cores(Settings(cpu_threads=1), torch.device("cpu"))  # one thread: nothing to spread
    assert cpu_pool.threads() == 1 and parallel._piece_map is None
    # On CUDA the pool encodes on the host; torch's threads and the kernels' pieces are left
    # alone: a batch runs stacked there.
    torch.set_num_threads(2)
    parallel.set_piece_map(None)
    use_cpu_cores(Settings(cpu_threads=3), torch.device("cuda"))
    assert torch.get_num_threads() == 2 and cpu_pool.threads() == 3 and parallel._piece_map is None


def test_the_handler_called_directly_gets_the_workers_cpu_set_up(restore, monkeypatch):
    """A notebook or test that imports the handler and calls it builds the runtime lazily: it gets
    the CPU set-up `python -m gpu_worker` has (images on the pool's threads, one torch thread)."""
    monkeypatch.setenv("GPU_WORKER_DEVICE", "cpu")
    monkeypatch.setenv("CPU_THREADS", "3")
    torch.set_num_threads(2)
    cpu_pool.use_threads(1)
    previous = runtime_module._runtime
    set_runtime(None)
    try:
        job = {"image": {"base64": base64.b64encode(png_bytes(sample("RGB", (40, 30)))).decode()},
               "operations": [{"type": "resize", "params": {"width": 20}}]}
        assert run_sync({"id": "notebook", "input": job})["success"] is True
        assert torch.get_num_threads() == 1 and cpu_pool.threads() == 3
        assert parallel._piece_map is cpu_pool.map_images
    finally:
        set_runtime(previous)


def test_batch_job_with_the_pool_equals_one_image_at_a_time(restore, monkeypatch):
    sources = [base64.b64encode(png_bytes(sample("RGB", (97, 61), name))).decode() for name in COLOR_PHOTOS]
    job = {"images": [{"image": {"base64": data}} for data in sources], "analysis": "result",
           "operations": [{"type": "resize", "params": {"width": 40}}, {"type": "filter", "params": {"name": "sharpen"}}],
           "output": {"format": "PNG"}}
    previous = runtime_module._runtime
    settings = dataclasses.replace(Settings(), gpu_worker_device="cpu", cache_max_bytes=0, cpu_threads=2)
    try:
        cpu_pool.use_threads(1)
        set_runtime(build_runtime(settings))
        alone = run_sync({"id": "one-by-one", "input": job})

        # Record which threads decode, run the ops and encode (the real functions still run).
        seen: dict[str, set[str]] = {"decode": set(), "ops": set(), "encode": set()}

        def spy(stage, real):
            def call(*args, **kwargs):
                seen[stage].add(threading.current_thread().name)
                return real(*args, **kwargs)
            return call

        monkeypatch.setattr(device_stages, "decode_batch", spy("decode", device_stages.decode_batch))
        monkeypatch.setattr(device_stages, "encode_results", spy("encode", device_stages.encode_results))
        runtime = build_runtime(settings)
        use_cpu_cores(runtime.settings, runtime.device)
        set_runtime(runtime)
        runner = runtime.runner
        runner.executor = spy("ops", runner.executor)
        pooled = run_sync({"id": "pooled", "input": job})
    finally:
        set_runtime(previous)

    assert pooled["success"] and pooled["metadata"]["failed"] == 0
    for a, b in zip(alone["results"], pooled["results"]):
        assert a["processed_image"] == b["processed_image"]
        assert a["analysis"] == b["analysis"]
    assert seen["decode"] and seen["encode"], seen
    assert all(name.startswith("cpu-image") for name in seen["decode"] | seen["encode"]), seen
    # The executor is called once per group; its images fan out to the pool inside run_images.
    assert seen["ops"] and not any(name.startswith("cpu-image") for name in seen["ops"])


def test_split_covers_every_item_once(restore):
    parallel.set_piece_map(None)
    assert parallel.split(range(10)) == [range(10)]
    parallel.set_piece_map(cpu_pool.map_images)
    for count in (0, 1, 3, 4, 9, 100):
        runs = parallel.split(list(range(count)))
        assert [x for run in runs for x in run] == list(range(count))
        assert len(runs) <= parallel.PIECES


@pytest.mark.parametrize("filter", ["lanczos", "bilinear"])
def test_a_lone_image_spread_over_the_pool_gives_the_same_pixels(restore, filter):
    image = to_tensor(photo("astronaut.png").resize((1280, 720)))
    parallel.set_piece_map(None)
    expected = [resize(image, size, filter) for size in ((300, 533), (1000, 1700), (720, 400), (200, 1280))]

    cpu_pool.use_threads(2)
    pieces_seen: set[str] = set()

    def recording_map(work, items):
        return cpu_pool.map_images(lambda item: (pieces_seen.add(threading.current_thread().name), work(item))[1],
                                   items)

    parallel.set_piece_map(recording_map)
    got = [resize(image, size, filter) for size in ((300, 533), (1000, 1700), (720, 400), (200, 1280))]
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert pieces_seen and all(name.startswith("cpu-image") for name in pieces_seen)


@pytest.mark.parametrize("text,expected", [("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000", 2),
                                           ("50000 100000", 1), ("garbage", None), ("", None)])
def test_available_cores_follows_a_cgroup_quota(tmp_path, text, expected):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(text)
    unlimited = cpu_pool.available_cores(str(tmp_path / "missing"))
    assert unlimited >= 1
    assert cpu_pool.available_cores(str(cpu_max)) == (unlimited if expected is None else min(unlimited, expected))
