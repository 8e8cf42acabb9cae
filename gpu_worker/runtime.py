"""The worker's long-lived state, built once per process: settings, device and job runner."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from gpu_worker.batcher import CrossJobBatcher
from gpu_worker.config import Settings, load_settings
from gpu_worker.crash_journal import CrashJournal
from gpu_worker.device import select_device
from gpu_worker.jobs import JobRunner


@dataclass
class Runtime:
    settings: Settings
    device: torch.device
    runner: JobRunner


_runtime: Runtime | None = None
_lock = threading.Lock()


def build_runtime(settings: Settings | None = None) -> Runtime:
    """A fresh runtime from ``settings`` (default: configs/worker.yaml + environment)."""
    settings = settings or load_settings()
    device = select_device(settings.gpu_worker_device)
    # Concurrent jobs share one batcher, so compatible images from different jobs stack together.
    executor = None
    if settings.max_concurrency > 1:
        executor = CrossJobBatcher(wait_ms=settings.batch_wait_ms, max_pixels=settings.batch_max_pixels)
    journal = CrashJournal.from_environment()  # set when gpu_worker.supervisor started this process
    return Runtime(settings, device, JobRunner(settings, device, executor=executor, journal=journal))


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
