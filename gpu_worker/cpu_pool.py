"""Image-level parallelism on the CPU: several images at once, each on one torch thread.

Why not torch's own intra-op threads: they split every kernel across the cores and wait for each
other at its end, so one descheduled thread stalls them all when another process is busy on a
core (BENCHMARKS.md, "a busy machine"). Whole images on separate threads never wait for each
other: a busy core slows only the images on it. The worker's runtime turns this on
(``gpu_worker.runtime.use_cpu_cores``); a library user who never calls :func:`use_threads` gets
a plain loop, with torch's threads left as they are.

Between torch calls a thread needs Python's interpreter lock, so many short calls scale badly
over threads; the resize, most of the work, runs its chunk loops compiled by TorchScript, without
the lock (``kernels/resize_cpu.py``). Nothing here touches CUDA: on a GPU the images of a batch
run stacked, as one kernel call, and the pool only encodes results on the host (PNG, WebP, and
JPEG unless nvjpeg encodes them) and decodes JPEG with CUDA_JPEG_CODEC=libjpeg.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_count = 1  # threads of _pool (1: no pool)
_lock = threading.Lock()
_inside = threading.local()  # set on the pool's own threads


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


def use_threads(count: int) -> None:
    """Work on ``count`` images at once from now on; 1 (or less) means one by one, in the caller.

    Replaces any earlier pool; work already submitted to it finishes.
    """
    global _pool, _count
    with _lock:
        old, _pool, _count = _pool, None, max(1, count)
        if count > 1:
            _pool = ThreadPoolExecutor(count, thread_name_prefix="cpu-image", initializer=_mark_inside)
    if old is not None:
        old.shutdown(wait=False)


def threads() -> int:
    """How many images :func:`map_images` works on at once."""
    return _count


def map_images(work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[work(item) for item in items]``, in order, on the pool's threads when there is one.

    The first exception raised by ``work`` propagates, as in a loop (the other items still run).
    A call from one of the pool's own threads runs inline, so nested calls cannot deadlock.
    """
    items = list(items)
    pool = _pool
    if pool is None or len(items) <= 1 or getattr(_inside, "flag", False):
        return [work(item) for item in items]
    return list(pool.map(work, items))


def _mark_inside() -> None:
    _inside.flag = True
