"""Heavy set-up done once when the worker starts: the runtime, a warm-up and the fitness check."""

from __future__ import annotations

import logging
import time

import torch

from gpu_worker.codecs import decode_batch, encode
from gpu_worker.config import Settings
from gpu_worker.plan import compile_plan
from gpu_worker.runtime import Runtime, build_runtime, set_runtime
from kernels import context as kernel_context, resize_cuda

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
    with kernel_context.using(runtime.runner.policy.kernels):
        out = compile_plan(WARMUP_PLAN).bind(tuple(decoded.shape))(decoded.unsqueeze(0))
    encode(out, "JPEG", 85)
    if runtime.device.type == "cuda":
        if runtime.settings.cuda_compile:  # the resize passes (nothing when done), by default in the background
            resize_cuda.warm_up(runtime.device, background=runtime.settings.cuda_compile == 1)
        torch.cuda.synchronize(runtime.device)
    return (time.perf_counter() - started) * 1000


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
