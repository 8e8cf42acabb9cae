"""The one timing helper of the small benchmark scripts."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_ms(work: Callable[[], object], repeats: int) -> float:
    """Median wall-clock milliseconds of ``repeats`` calls of ``work``, after one warm-up call
    (weight tables, TorchScript, lazy imports)."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)
