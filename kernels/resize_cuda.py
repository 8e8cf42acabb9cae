"""Pillow's resize passes on CUDA as one compiled kernel each (``torch.compile``, Triton).

The eager tap loop (:func:`kernels.resize._taps_pass`) launches a few kernels per tap and moves
every tap's int32 rows through device memory. The same sum written as one gather-multiply-sum
over the taps compiles into a kernel per pass that reads the input from cache and writes each
output once. Measured on an H100, 16 x 1080p -> 800x450 Lanczos: the width pass 7.3 -> 1.7 ms,
the height pass 2.8 -> 0.8 ms, bit-identical (the same int32 arithmetic; BENCHMARKS.md).

Compiled with ``dynamic=True``: one kernel serves every size, filter and batch. A new size pair
compiled nothing (measured: 0.00 s on its first call); Dynamo still compiles once more for a
size of 1 (one plane, one output row), which it specialises. The first call in a process compiles
(about 4 s for the width pass, 2 s for the height pass on the H100 machine): :func:`warm_up` does
it at worker start. Where compiling fails (no Triton, no C compiler for Triton's launcher) a
warning is logged once and ``compiled_pass`` returns None, so the caller runs the eager loop.
"""

from __future__ import annotations

import logging
import threading
import warnings

import torch

from .resize_weights import HALF, PRECISION_BITS

log = logging.getLogger(__name__)

_enabled = True
_lock = threading.Lock()  # calls into Dynamo, one at a time (see compiled_pass)
_compiled: dict[int, object] = {}  # dim -> compiled function


def set_enabled(enabled: bool) -> None:
    """Use the compiled passes on CUDA (the default), or the eager tap loop."""
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    return _enabled


def gather_sum_rows(planes: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The pass along dim 1 of uint8 ``(P, N, M)`` planes: uint8 ``(P, out, M)``.

    ``index`` (int64) and ``weight`` (int32) are ``(K, out)``: tap ``k`` of output ``o`` reads
    row ``index[k, o]`` with fixed-point weight ``weight[k, o]``. Pillow's sum: int32, then
    ``clip8((1 << 21) + sum >> 22)``.
    """
    taps = planes[:, index, :].to(torch.int32) * weight[None, :, :, None]  # (P, K, out, M), fused away
    return ((taps.sum(1) + HALF) >> PRECISION_BITS).clamp(0, 255).to(torch.uint8)


def gather_sum_cols(planes: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The pass along dim 2 of uint8 ``(P, N, M)`` planes: uint8 ``(P, N, out)``; see
    :func:`gather_sum_rows`."""
    taps = planes[:, :, index].to(torch.int32) * weight[None, None]  # (P, N, K, out), fused away
    return ((taps.sum(2) + HALF) >> PRECISION_BITS).clamp(0, 255).to(torch.uint8)


def compiled_pass(planes: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, dim: int) -> torch.Tensor | None:
    """The pass along ``dim`` (1: rows, 2: columns) of CUDA ``planes`` by the compiled kernel, or
    None where it is turned off or cannot compile (the caller then runs the eager loop)."""
    if not _enabled:
        return None
    # One call at a time: Dynamo is not thread-safe (pytorch/pytorch#118260), and the worker's
    # concurrent jobs run their stacks on several threads. A call only checks its guards and
    # launches the kernel, so the lock is held for microseconds (seconds only while compiling).
    with _lock:
        if not _enabled:  # another thread's compile failed meanwhile
            return None
        function = _compiled.get(dim)
        if function is None:
            return _compile_and_run(planes, index, weight, dim)
        return function(planes, index, weight)


def _compile_and_run(planes: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, dim: int) -> torch.Tensor | None:
    try:
        with warnings.catch_warnings():  # the compiler's own deprecation notices are not ours
            warnings.simplefilter("ignore")
            function = torch.compile(gather_sum_rows if dim == 1 else gather_sum_cols, dynamic=True)
            out = function(planes, index, weight)
    except torch.cuda.OutOfMemoryError:
        raise  # the caller splits the batch (gpu_worker.batching)
    except Exception as exc:  # noqa: BLE001 - any compiler failure: the eager loop still works
        log.warning("torch.compile failed for the resize passes, running them eagerly: %s: %s",
                    type(exc).__name__, str(exc)[:300])
        set_enabled(False)
        return None
    _compiled[dim] = function
    return out


def warm_up(device: torch.device) -> None:
    """Compile both passes on ``device`` with sizes that are all different and above 1, so the
    kernels stay general (Dynamo specialises sizes 0 and 1 and merges sizes that are equal)."""
    planes = torch.zeros((2, 13, 29), dtype=torch.uint8, device=device)
    for dim, out_size in ((1, 5), (2, 7)):
        index = torch.zeros((3, out_size), dtype=torch.int64, device=device)
        weight = torch.zeros((3, out_size), dtype=torch.int32, device=device)
        compiled_pass(planes, index, weight, dim)
