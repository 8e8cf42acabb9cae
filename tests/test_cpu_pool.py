"""gpu_worker.cpu_pool, the kernels' context and the worker's CPU thread policy: images in
parallel, one torch thread each, decided per runner from its settings, not process-wide.

The pool's contract (order, errors, nesting, context) on plain functions; the policy a runner
derives from its settings; then real batch jobs through the handler with the pool on, whose results
must be the bytes of the same job run one image at a time, with decode, ops and encode seen running
on the pool's threads in the job's kernel context; and two runners with different settings at once.
"""

from __future__ import annotations

import base64
import dataclasses
import threading

import pytest
import torch

import gpu_worker.stages.device as device_stages
import gpu_worker.runtime as runtime_module
import kernels.resize_cpu as resize_cpu
from corpus import png as png_bytes
from gpu_worker import cpu_pool
from gpu_worker.config import Settings
from gpu_worker.handler import run_sync
from gpu_worker.jobs import JobRunner
from gpu_worker.runtime import build_runtime, set_runtime, use_cpu_cores
from gpu_worker.stages.policy import DevicePolicy
from kernels import context as kernel_context, parallel, resize
from kernels.context import KernelContext
from photos import COLOR_PHOTOS, photo, sample, to_tensor

CPU = torch.device("cpu")


@pytest.fixture
def restore():
    """Leaves torch's threads as they were (process-wide)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_map_runs_items_at_once_in_order():
    pool = cpu_pool.shared_pool(2)
    assert pool.threads == 2 and cpu_pool.shared_pool(2) is pool
    both_running = threading.Barrier(2, timeout=10)  # passes only if two items run at the same time

    def work(x: int) -> tuple[int, str]:
        if x < 2:
            both_running.wait()
        return x * x, threading.current_thread().name

    results = pool.map(work, range(6))
    assert [value for value, _ in results] == [x * x for x in range(6)]
    assert all(name.startswith("cpu-image") for _, name in results)


def test_map_without_pool_runs_in_the_caller():
    assert cpu_pool.ONE_BY_ONE.threads == 1
    names = cpu_pool.ONE_BY_ONE.map(lambda _: threading.current_thread().name, range(3))
    assert names == [threading.current_thread().name] * 3


def test_first_error_propagates_and_the_pool_keeps_working():
    pool = cpu_pool.shared_pool(2)

    def work(x: int) -> int:
        if x == 3:
            raise ValueError("bad item 3")
        return x

    with pytest.raises(ValueError, match="bad item 3"):
        pool.map(work, range(6))
    assert pool.map(lambda x: x + 1, range(4)) == [1, 2, 3, 4]


def test_nested_calls_run_inline_instead_of_deadlocking():
    pool = cpu_pool.shared_pool(2)
    done = threading.Event()
    result: list = []

    def outer(x: int) -> list[int]:
        return pool.map(lambda y: x * 10 + y, range(3))

    thread = threading.Thread(target=lambda: (result.append(pool.map(outer, range(4))), done.set()))
    thread.start()
    assert done.wait(10), "a map inside the pool's threads waited on the pool"
    assert result == [[[0, 1, 2], [10, 11, 12], [20, 21, 22], [30, 31, 32]]]


def test_map_runs_each_item_in_the_callers_kernel_context():
    pool = cpu_pool.shared_pool(2)
    eager = KernelContext(compiled_resize=False)
    with kernel_context.using(eager):
        seen = pool.map(lambda _: (kernel_context.current(), threading.current_thread().name), range(4))
    assert all(context is eager for context, _ in seen)
    assert any(name.startswith("cpu-image") for _, name in seen)
    # Outside the block the defaults are back, in this thread and on the pool's threads.
    assert kernel_context.current() is kernel_context.DEFAULT
    assert pool.map(lambda _: kernel_context.current(), range(4)) == [kernel_context.DEFAULT] * 4


def test_device_policy_follows_the_settings():
    on_cpu = DevicePolicy.decide(Settings(cpu_threads=3), CPU)
    assert on_cpu.pool is cpu_pool.shared_pool(3)
    assert on_cpu.kernels.piece_map == on_cpu.pool.map and on_cpu.kernels.compiled_resize
    assert DevicePolicy.decide(Settings(), CPU).pool.threads == cpu_pool.available_cores()  # 0: every core
    one = DevicePolicy.decide(Settings(cpu_threads=1), CPU)  # one thread: nothing to spread
    assert one.pool.threads == 1 and one.kernels.piece_map is None
    # On CUDA the pool codes on the host; a batch runs stacked there, so no pieces.
    on_cuda = DevicePolicy.decide(Settings(cpu_threads=3, cuda_compile=0), torch.device("cuda"))
    assert on_cuda.pool.threads == 3 and on_cuda.kernels.piece_map is None
    assert not on_cuda.kernels.compiled_resize


def test_torch_threads_on_the_cpu_only(restore):
    torch.set_num_threads(2)
    use_cpu_cores(torch.device("cuda"))
    assert torch.get_num_threads() == 2
    use_cpu_cores(CPU)
    assert torch.get_num_threads() == 1


def test_the_handler_called_directly_gets_the_workers_cpu_set_up(restore, monkeypatch):
    """A notebook or test that imports the handler and calls it builds the runtime lazily: it gets
    the CPU set-up `python -m gpu_worker` has (images on the pool's threads, one torch thread, a
    lone image's kernels spread over the pool) inside the job, and nothing changes outside it."""
    monkeypatch.setenv("GPU_WORKER_DEVICE", "cpu")
    monkeypatch.setenv("CPU_THREADS", "3")
    torch.set_num_threads(2)
    previous = runtime_module._runtime
    set_runtime(None)
    seen: list[KernelContext] = []
    real = resize_cpu.map_pieces
    monkeypatch.setattr(resize_cpu, "map_pieces", lambda work, pieces: (seen.append(kernel_context.current()),
                                                                        real(work, pieces))[1])
    try:
        job = {"image": {"base64": base64.b64encode(png_bytes(sample("RGB", (40, 30)))).decode()},
               "operations": [{"type": "resize", "params": {"width": 20}}]}
        assert run_sync({"id": "notebook", "input": job})["success"] is True
        policy = runtime_module.get_runtime().runner.policy
    finally:
        set_runtime(previous)
    assert torch.get_num_threads() == 1 and policy.pool.threads == 3
    assert seen and all(context is policy.kernels and context.piece_map == policy.pool.map for context in seen)
    assert kernel_context.current() is kernel_context.DEFAULT


def _spy(seen: dict[str, set], stage: str, real):
    """``real``, recording the thread and kernel context of each call under ``stage``."""
    def call(*args, **kwargs):
        seen[stage].add((threading.current_thread().name, kernel_context.current()))
        return real(*args, **kwargs)
    return call


def test_batch_job_with_the_pool_equals_one_image_at_a_time(restore, monkeypatch):
    sources = [base64.b64encode(png_bytes(sample("RGB", (97, 61), name))).decode() for name in COLOR_PHOTOS]
    job = {"images": [{"image": {"base64": data}} for data in sources], "analysis": "result",
           "operations": [{"type": "resize", "params": {"width": 40}}, {"type": "filter", "params": {"name": "sharpen"}}],
           "output": {"format": "PNG"}}
    previous = runtime_module._runtime
    settings = dataclasses.replace(Settings(), gpu_worker_device="cpu", cache_max_bytes=0, chunk_images=2)
    try:
        set_runtime(build_runtime(dataclasses.replace(settings, cpu_threads=1)))
        alone = run_sync({"id": "one-by-one", "input": job})

        # Record which threads decode, run the ops and encode, in which context (the real
        # functions still run).
        seen: dict[str, set] = {"decode": set(), "ops": set(), "encode": set()}
        monkeypatch.setattr(device_stages, "decode_batch", _spy(seen, "decode", device_stages.decode_batch))
        monkeypatch.setattr(device_stages, "encode_results", _spy(seen, "encode", device_stages.encode_results))
        runtime = build_runtime(dataclasses.replace(settings, cpu_threads=2))
        set_runtime(runtime)
        runtime.runner.executor = _spy(seen, "ops", runtime.runner.executor)
        pooled = run_sync({"id": "pooled", "input": job})
    finally:
        set_runtime(previous)

    assert len(COLOR_PHOTOS) > 2  # several chunks: decode ahead and encode behind on helper threads
    assert pooled["success"] and pooled["metadata"]["failed"] == 0
    for a, b in zip(alone["results"], pooled["results"]):
        assert a["processed_image"] == b["processed_image"]
        assert a["analysis"] == b["analysis"]
    threads = {stage: {name for name, _ in calls} for stage, calls in seen.items()}
    assert threads["decode"] and threads["encode"], seen
    assert all(name.startswith("cpu-image") for name in threads["decode"] | threads["encode"]), seen
    # The executor is called once per group; its images fan out to the pool inside run_images.
    assert threads["ops"] and not any(name.startswith("cpu-image") for name in threads["ops"])
    # Every stage, on whichever thread, ran in the job's kernel context.
    assert {context for calls in seen.values() for _, context in calls} == {runtime.runner.policy.kernels}


def test_two_runners_with_different_settings_at_once_keep_their_own_set_up(monkeypatch):
    """No process-wide switch: a runner with one thread and one with two, running at the same
    time, each spread (or not) their kernels' pieces by their own settings."""
    runners = {threads: JobRunner(Settings(gpu_worker_device="cpu", cache_max_bytes=0, cpu_threads=threads), CPU)
               for threads in (1, 2)}
    seen: dict[str, list] = {"1": [], "2": []}
    real = resize_cpu.map_pieces

    def spy(work, pieces):
        seen[threading.current_thread().name].append(kernel_context.current().piece_map)
        return real(work, pieces)

    monkeypatch.setattr(resize_cpu, "map_pieces", spy)
    data = base64.b64encode(png_bytes(photo("astronaut.png").resize((640, 480)))).decode()
    job = {"image": {"base64": data}, "operations": [{"type": "resize", "params": {"width": 300}}]}
    start = threading.Barrier(2, timeout=10)
    results: dict[int, dict] = {}

    def run(threads: int) -> None:
        start.wait()
        results[threads] = runners[threads].run(job)

    workers = [threading.Thread(target=run, args=(n,), name=str(n)) for n in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert results[1]["success"] and results[1]["processed_image"] == results[2]["processed_image"]
    assert seen["1"] and all(piece_map is None for piece_map in seen["1"])
    assert seen["2"] and all(piece_map == runners[2].policy.pool.map for piece_map in seen["2"])


def test_split_covers_every_item_once():
    assert parallel.split(range(10)) == [range(10)]
    with kernel_context.using(KernelContext(piece_map=cpu_pool.shared_pool(2).map)):
        for count in (0, 1, 3, 4, 9, 100):
            runs = parallel.split(list(range(count)))
            assert [x for run in runs for x in run] == list(range(count))
            assert len(runs) <= parallel.PIECES


@pytest.mark.parametrize("filter", ["lanczos", "bilinear"])
def test_a_lone_image_spread_over_the_pool_gives_the_same_pixels(filter):
    image = to_tensor(photo("astronaut.png").resize((1280, 720)))
    sizes = ((300, 533), (1000, 1700), (720, 400), (200, 1280))
    expected = [resize(image, size, filter) for size in sizes]

    pool = cpu_pool.shared_pool(2)
    pieces_seen: set[str] = set()

    def recording_map(work, items):
        return pool.map(lambda item: (pieces_seen.add(threading.current_thread().name), work(item))[1], items)

    with kernel_context.using(KernelContext(piece_map=recording_map)):
        got = [resize(image, size, filter) for size in sizes]
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
