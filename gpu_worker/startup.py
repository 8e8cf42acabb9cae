"""Heavy set-up done once when the worker starts: the runtime, a warm-up and the fitness check."""

from __future__ import annotations

import logging
import time

import torch

from gpu_worker.codecs import decode_batch, encode
from gpu_worker.config import Settings
from gpu_worker.plan import compile_plan
from gpu_worker.runtime import Runtime, build_runtime, set_runtime

log = logging.getLogger(__name__)

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
        torch.cuda.synchronize(runtime.device)
    return (time.perf_counter() - started) * 1000


def prepare_worker(settings: Settings) -> Runtime:
    """Build the runtime, warm it up, and register the SDK fitness check that re-runs the warm-up."""
    import runpod

    runtime = build_runtime(settings)
    set_runtime(runtime)
    log.info("warm-up on %s took %.0f ms", runtime.device, warm_up(runtime))

    @runpod.serverless.register_fitness_check
    def device_is_usable() -> None:
        warm_up(runtime)

    return runtime
