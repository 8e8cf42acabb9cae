"""Image-level parallelism on the CPU: several images at once, each on one torch thread.

Why not torch's own intra-op threads: they split every kernel across the cores and wait for each
other at its end, so one descheduled thread stalls them all when another process is busy on a
core (BENCHMARKS.md, "a busy machine"). Whole images on separate threads never wait for each
other: a busy core slows only the images on it. The worker's device policy picks its pool from the
settings (``CPU_THREADS``; ``gpu_worker.stages.policy``) and hands it to the stages that use it;
the library (``Pipeline``) runs images one by one, with torch's threads left as they are.

Between torch calls a thread needs Python's interpreter lock, so many short calls scale badly
over threads; the resize, most of the work, runs its chunk loops compiled by TorchScript, without
the lock (``kernels/resize_cpu.py``). Nothing here touches CUDA: on a GPU the images of a batch
run stacked, as one kernel call, and the pool only encodes results on the host (PNG, WebP, and
JPEG unless nvjpeg encodes them) and decodes JPEG with CUDA_JPEG_CODEC=libjpeg.
"""

from __future__ import annotations

import contextvars
import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_inside = threading.local()  # set on every pool's own threads


def available_cores(cgroup_cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup v2 CPU quota.

    A container limited to 2 CPUs by quota (``docker --cpus 2``, Kubernetes limits) still sees
    every core of the host in ``os.cpu_count()`` and in its affinity mask; ``cpu.max`` holds the
    quota as ``"<quota µs> <period µs>"`` (``"max ..."``: no quota).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        with open(cgroup_cpu_max) as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 file, or not in that format: no quota known
        pass
    return cores


class ImagePool:
    """Works on ``threads`` images at once, each on one of its own threads; 1 means one by one,
    in the caller. Get one with :func:`shared_pool`: pools are shared per thread count and live as
    long as the process."""

    def __init__(self, threads: int):
        self.threads = max(1, threads)
        self._executor = None
        if self.threads > 1:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="cpu-image", initializer=_mark_inside)

    def map(self, work: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[work(item) for item in items]``, in order, on the pool's threads when it has them.

        Each item runs in a copy of the caller's context (its ``contextvars``: the kernels' context,
        ``kernels.context``). The first exception raised by ``work`` propagates, as in a loop
        (the other items still run). A call from a pool's own threads runs inline, so nested
        calls cannot deadlock.
        """
        items = list(items)
        if self._executor is None or len(items) <= 1 or getattr(_inside, "flag", False):
            return [work(item) for item in items]
        calls = [(contextvars.copy_context(), item) for item in items]
        return list(self._executor.map(lambda call: call[0].run(work, call[1]), calls))

    def __repr__(self) -> str:
        return f"ImagePool(threads={self.threads})"


@functools.lru_cache(maxsize=None)
def shared_pool(threads: int) -> ImagePool:
    """The process's pool of ``threads`` threads (made on first use)."""
    return ImagePool(threads)


#: Images one by one, in the caller: the library's default (``Pipeline``).
ONE_BY_ONE = shared_pool(1)


def _mark_inside() -> None:
    _inside.flag = True
