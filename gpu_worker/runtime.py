"""The worker's long-lived state, built once per process: settings, device and job runner.

:func:`build_runtime` is the one way to build it, used by ``python -m gpu_worker`` (through
``gpu_worker.startup``, which adds the warm-up and the fitness check), by the handler when it is
imported and called directly (a notebook, a test, the local server), and by the benchmarks: all
get the worker's CPU set-up. What the settings decide (host threads, how kernels run) is held by
the runner's :class:`~gpu_worker.stages.policy.DevicePolicy` and applied per job; the one
process-wide effect is torch's own thread count (:func:`use_cpu_cores`). Only the library
(``Pipeline``) leaves torch's threads as it finds them.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from gpu_worker.cross_job_batcher import CrossJobBatcher
from gpu_worker.config import Settings, load_settings
from gpu_worker.crash_journal import CrashJournal
from gpu_worker.device import select_device
from gpu_worker.jobs import JobRunner
from gpu_worker.stages.policy import DevicePolicy
from kernels import context as kernel_context


@dataclass
class Runtime:
    settings: Settings
    device: torch.device
    runner: JobRunner


_runtime: Runtime | None = None
_lock = threading.Lock()


def build_runtime(settings: Settings | None = None) -> Runtime:
    """A fresh runtime from ``settings`` (default: the package's worker.yaml + environment), with
    torch's threads set for the worker (:func:`use_cpu_cores`)."""
    settings = settings or load_settings()
    device = select_device(settings.gpu_worker_device)
    use_cpu_cores(device)
    policy = DevicePolicy.decide(settings, device)
    # Concurrent jobs share one batcher, so compatible images from different jobs stack together.
    executor = None
    if settings.max_concurrency > 1:
        executor = CrossJobBatcher(wait_ms=settings.batch_wait_ms, max_pixels=settings.max_stack_pixels,
                                   pool=policy.pool)
    journal = CrashJournal.from_environment()  # set when gpu_worker.supervisor started this process
    return Runtime(settings, device, JobRunner(settings, device, executor=executor, journal=journal, policy=policy))


def use_cpu_cores(device: torch.device) -> None:
    """On the CPU, one torch thread: the worker runs images one per thread on its own pool
    (``DevicePolicy.pool``, gpu_worker.cpu_pool) and spreads a lone image's kernels over the same
    threads (kernels.parallel). Torch's own threads split each kernel across cores and wait for
    each other, which a core busy elsewhere stalls (BENCHMARKS.md, "a busy machine"). On CUDA
    torch's threads are left alone. Process-wide (torch's setting): the last runtime built sets it.
    """
    if device.type == "cpu":
        torch.set_num_threads(1)


@contextmanager
def worker_kernels(settings: Settings, device: torch.device) -> Iterator[DevicePolicy]:
    """For code that calls kernels or stages outside a job (the benchmarks): torch's threads as
    :func:`build_runtime` sets them, and inside the block the kernels run as in a job of a worker
    with ``settings``. Yields the worker's policy (its ``pool`` for the stages)."""
    use_cpu_cores(device)
    policy = DevicePolicy.decide(settings, device)
    with kernel_context.using(policy.kernels):
        yield policy


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
