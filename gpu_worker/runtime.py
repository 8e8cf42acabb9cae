"""The worker's long-lived state, built once per process: settings, device and job runner.

:func:`build_runtime` is the one way to build it, used by ``python -m gpu_worker`` (through
``gpu_worker.startup``, which adds the warm-up and the fitness check), by the handler when it is
imported and called directly (a notebook, a test, the local server), and by the benchmarks: all
get the worker's CPU set-up (:func:`use_cpu_cores`). Only the library (``Pipeline``) leaves
torch's threads as it finds them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from gpu_worker import cpu_pool
from gpu_worker.cross_job_batcher import CrossJobBatcher
from gpu_worker.config import Settings, load_settings
from gpu_worker.crash_journal import CrashJournal
from gpu_worker.device import select_device
from gpu_worker.jobs import JobRunner
from kernels import parallel, resize_cuda


@dataclass
class Runtime:
    settings: Settings
    device: torch.device
    runner: JobRunner


_runtime: Runtime | None = None
_lock = threading.Lock()


def build_runtime(settings: Settings | None = None) -> Runtime:
    """A fresh runtime from ``settings`` (default: the package's worker.yaml + environment), with the
    worker's CPU set-up and CUDA_COMPILE applied (process-wide: the last runtime built sets them)."""
    settings = settings or load_settings()
    device = select_device(settings.gpu_worker_device)
    use_cpu_cores(settings, device)
    resize_cuda.set_enabled(bool(settings.cuda_compile))
    # Concurrent jobs share one batcher, so compatible images from different jobs stack together.
    executor = None
    if settings.max_concurrency > 1:
        executor = CrossJobBatcher(wait_ms=settings.batch_wait_ms, max_pixels=settings.batch_max_pixels)
    journal = CrashJournal.from_environment()  # set when gpu_worker.supervisor started this process
    return Runtime(settings, device, JobRunner(settings, device, executor=executor, journal=journal))


def use_cpu_cores(settings: Settings, device: torch.device) -> None:
    """On the CPU, work on ``CPU_THREADS`` images at once (default: every core), each on one torch
    thread (:mod:`gpu_worker.cpu_pool`), and let the kernels spread a lone image over the same
    threads (:mod:`kernels.parallel`). Torch's own threads split each kernel across cores and
    wait for each other, which a core busy elsewhere stalls (BENCHMARKS.md, "a busy machine").
    On CUDA the same pool encodes what is encoded on the host
    (PNG, WebP, JPEG unless CUDA_JPEG_CODEC=nvjpeg) and decodes JPEG with CUDA_JPEG_CODEC=libjpeg.
    A worker-wide setting: the library (Pipeline) leaves torch's threads alone."""
    cpu_pool.use_threads(settings.cpu_threads or cpu_pool.available_cores())
    if device.type == "cpu":
        torch.set_num_threads(1)
        # A lone image (a single-image job) is spread over the same threads, piece by piece.
        parallel.set_piece_map(cpu_pool.map_images if cpu_pool.threads() > 1 else None)


def get_runtime() -> Runtime:
    """The process's runtime, built on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime()
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Replace the process's runtime (tests use it to run with other settings)."""
    global _runtime
    with _lock:
        _runtime = runtime
