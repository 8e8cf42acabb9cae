"""Heavy set-up done once when the worker starts: the runtime, a warm-up and the fitness check."""

from __future__ import annotations

import logging
import time

import torch

from gpu_worker import cpu_pool
from gpu_worker.codecs import decode_batch, encode
from gpu_worker.config import Settings
from gpu_worker.plan import compile_plan
from gpu_worker.runtime import Runtime, build_runtime, set_runtime
from kernels import parallel, resize_cuda

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The worker cannot start: its message names the problem (logged as one line)."""


#: The warm-up's one op: a resize, which builds weights and touches the kernels' code paths.
WARMUP_PLAN = [{"type": "resize", "params": {"width": 8}}]


def warm_up(runtime: Runtime) -> float:
    """Encode, decode, run one op on and re-encode a tiny image on the device; returns ms taken.

    Raises whatever the device raises: a worker whose device cannot do this must not take jobs.
    """
    started = time.perf_counter()
    tiny = torch.arange(3 * 16 * 16, dtype=torch.int64).remainder(251).to(torch.uint8).view(1, 3, 16, 16)
    jpeg = encode(tiny, "JPEG", 90)[0]
    decoded = decode_batch([jpeg], runtime.device)[0]
    if isinstance(decoded, Exception):
        raise decoded
    out = compile_plan(WARMUP_PLAN).bind(tuple(decoded.shape))(decoded.unsqueeze(0))
    encode(out, "JPEG", 85)
    if runtime.device.type == "cuda":
        # Compiles the resize passes (nothing when off or done), by default in the background.
        resize_cuda.warm_up(runtime.device, background=runtime.settings.cuda_compile == 1)
        torch.cuda.synchronize(runtime.device)
    return (time.perf_counter() - started) * 1000


def use_cpu_cores(settings: Settings, device: torch.device) -> None:
    """On the CPU, work on ``CPU_THREADS`` images at once (default: every core), each on one torch
    thread (:mod:`gpu_worker.cpu_pool`), and let the kernels spread a lone image over the same
    threads (:mod:`kernels.parallel`). Torch's own threads split each kernel across cores and
    wait for each other: with one core busy elsewhere the reference job took 3.5-6x longer
    (BENCHMARKS.md, "a busy machine"). On CUDA the same pool encodes what is encoded on the host
    (PNG, WebP, JPEG unless CUDA_JPEG_CODEC=nvjpeg) and decodes JPEG with CUDA_JPEG_CODEC=libjpeg.
    A worker-wide setting: the library (Pipeline) leaves torch's threads alone."""
    cpu_pool.use_threads(settings.cpu_threads or cpu_pool.available_cores())
    if device.type == "cpu":
        torch.set_num_threads(1)
        # A lone image (a single-image job) is spread over the same threads, piece by piece.
        parallel.set_piece_map(cpu_pool.map_images if cpu_pool.threads() > 1 else None)


def prepare_worker(settings: Settings) -> Runtime:
    """Build the runtime, warm it up, and register the SDK fitness check that re-runs the warm-up.

    Raises StartupError naming the problem when the runtime cannot be built (e.g. the device asked
    for does not exist) or the warm-up fails on the device: such a worker must not take jobs.
    """
    import runpod

    try:
        runtime = build_runtime(settings)
    except ValueError as exc:
        raise StartupError(f"cannot build the runtime: {exc} "
                           f"(GPU_WORKER_DEVICE={settings.gpu_worker_device!r})") from exc
    use_cpu_cores(settings, runtime.device)
    resize_cuda.set_enabled(bool(settings.cuda_compile))
    try:
        took_ms = warm_up(runtime)
    except Exception as exc:  # noqa: BLE001 - whatever the device raises, the worker cannot serve
        raise StartupError(f"warm-up on {runtime.device} failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
    set_runtime(runtime)
    log.info("warm-up on %s took %.0f ms", runtime.device, took_ms)

    @runpod.serverless.register_fitness_check
    def device_is_usable() -> None:
        warm_up(runtime)

    return runtime
