"""Pillow's resize passes on CUDA as one compiled kernel each (``torch.compile``, Triton).

The eager tap loop (:func:`kernels.resize._taps_pass`) launches a few kernels per tap and moves
every tap's int32 rows through device memory. The same sum written as one gather-multiply-sum
over the taps compiles into a kernel per pass that reads the input from cache and writes each
output once: several times faster than the eager loop on a GPU, bit-identical (the same int32
arithmetic; BENCHMARKS.md, "CUDA").

Compiled with ``dynamic=True``: one kernel serves every size, filter and batch. A new size pair
compiles nothing; Dynamo still compiles once more for a
size of 1 (one plane, one output row), which it specialises. The first call in a process compiles
(a few seconds per pass; BENCHMARKS.md, "CUDA"). :func:`warm_up` does
it at worker start, by default on a background thread: until it is done, calls return None and
the caller runs the eager loop, so the worker takes jobs without waiting for the compiler. Where
compiling fails (no Triton, no C compiler for Triton's launcher) a warning is logged once and
``compiled_pass`` returns None from then on, in the whole process. A caller that wants the eager
loop (the worker with ``CUDA_COMPILE=0``) says so in its kernel context
(``kernels.context.KernelContext.compiled_resize``).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings

import torch

from .context import current
from .resize_weights import HALF, PRECISION_BITS

log = logging.getLogger(__name__)

_failed = False  # compiling failed in this process: the eager loop from then on
_lock = threading.Lock()  # calls into Dynamo, one at a time (see compiled_pass)
_compiled: dict[int, object] = {}  # dim -> compiled function
_background: threading.Thread | None = None  # the warm-up's compile, when it runs in the background
_compiling = threading.Event()  # set while it runs: calls go to the eager loop meanwhile


def compile_failed() -> bool:
    """Whether compiling failed in this process (every call runs the eager loop since)."""
    return _failed


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
    None where it is turned off, cannot compile, or is being compiled in the background (the
    caller then runs the eager loop)."""
    if _failed or _compiling.is_set() or not current().compiled_resize:
        return None
    return _run(planes, index, weight, dim)


def _run(planes: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, dim: int) -> torch.Tensor | None:
    # One call at a time: Dynamo is not thread-safe (pytorch/pytorch#118260), and the worker's
    # concurrent jobs run their stacks on several threads. A call only checks its guards and
    # launches the kernel, so the lock is held for microseconds (seconds only while compiling).
    with _lock:
        if _failed:  # another thread's compile failed meanwhile
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
        raise  # the caller splits the batch (gpu_worker.stacking)
    except Exception as exc:  # noqa: BLE001 - any compiler failure: the eager loop still works
        log.warning("torch.compile failed for the resize passes, running them eagerly: %s: %s",
                    type(exc).__name__, str(exc)[:300])
        _give_up()
        return None
    _compiled[dim] = function
    return out


def warm_up(device: torch.device, background: bool = False) -> None:
    """Compile both passes on ``device`` (nothing to do when done already, or after a failure).

    ``background``: compile on a daemon thread and return at once; until it is done,
    :func:`compiled_pass` returns None (the eager loop runs). :func:`wait_until_compiled` waits.
    """
    global _background
    if _failed or {1, 2} <= set(_compiled) or _compiling.is_set():
        return
    if not background:
        _compile_both(device)
        return
    _compiling.set()  # before the thread starts: no call may wait on the lock it is about to hold
    _background = threading.Thread(target=_compile_in_background, args=(device,), name="resize-compile", daemon=True)
    _background.start()


def wait_until_compiled(timeout_s: float | None = None) -> bool:
    """Wait for a background compile started by :func:`warm_up`; True once none is running."""
    if _background is not None:
        _background.join(timeout_s)
    return not _compiling.is_set()


def _compile_in_background(device: torch.device) -> None:
    started = time.perf_counter()
    try:
        _compile_both(device)
    except Exception:  # noqa: BLE001 - the eager loop still works; say why the compile stopped
        log.exception("compiling the resize passes in the background failed; running them eagerly")
        _give_up()
    finally:
        _compiling.clear()
    if not _failed:
        log.info("resize passes compiled in %.1f s (in the background); jobs use them from now on",
                 time.perf_counter() - started)


def _give_up() -> None:
    """Compiling failed: every later call runs the eager loop."""
    global _failed
    _failed = True


def _compile_both(device: torch.device) -> None:
    """Compile both passes with sizes that are all different and above 1, so the kernels stay
    general (Dynamo specialises sizes 0 and 1 and merges sizes that are equal)."""
    planes = torch.zeros((2, 13, 29), dtype=torch.uint8, device=device)
    for dim, out_size in ((1, 5), (2, 7)):
        index = torch.zeros((3, out_size), dtype=torch.int64, device=device)
        weight = torch.zeros((3, out_size), dtype=torch.int32, device=device)
        _run(planes, index, weight, dim)
