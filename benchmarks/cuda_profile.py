"""Where the reference operations spend their time on CUDA, step by step (needs a GPU).

    python -m benchmarks.cuda_profile [--n 16]

On ``n`` 1080p photos stacked on the GPU: each step of the reference chain timed alone with CUDA
events (median of 20 after warm-up), the resize passes as the eager tap loop against the same
taps as one ``torch.compile``'d gather-and-sum (:mod:`kernels.resize_cuda`; equality checked,
the first call's time reported), and the top kernels of the whole chain from ``torch.profiler``.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
from typing import Callable

import torch
import torchvision.io as tvio

from benchmarks import images
from benchmarks.peers import OPERATIONS
from gpu_worker.pipeline import Pipeline
from kernels import context as kernel_context, resize_cuda
from kernels.context import KernelContext

resize_module = importlib.import_module("kernels.resize")


def cuda_ms(work: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of ``work()`` on the GPU, timed with CUDA events."""
    for _ in range(warmup):
        work()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        work()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16)
    args = parser.parse_args()
    n = args.n
    datas = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in images.jpegs(n)]
    batch = torch.stack(tvio.decode_jpeg(datas, device="cuda"))
    steps = Pipeline(OPERATIONS, device="cuda").plan.bind(tuple(batch.shape[1:])).steps

    print(f"## CUDA, {n} x 1080p, ms per batch (per image)\n\n| what | ms | per image |\n|---|---|---|")

    def row(label: str, ms: float) -> None:
        print(f"| {label} | {ms:.3f} | {ms / n:.4f} |")

    x = batch
    inputs = []
    for step in steps:
        inputs.append(x)
        x = step.kernel(x)
    for step, x_in in zip(steps, inputs):
        row(f"step {step.name}", cuda_ms(lambda: step.kernel(x_in)))
    row("whole chain", cuda_ms(lambda: Pipeline(OPERATIONS, device="cuda")(batch)))

    # The resize passes: the eager tap loop against kernels.resize_cuda's compiled gather-sum.
    def compare_pass(label: str, images: torch.Tensor, out_size: int, dim: int) -> torch.Tensor:
        with kernel_context.using(KernelContext(compiled_resize=False)):
            eager = resize_module._taps_pass(images, out_size, "lanczos", dim)
            row(f"{label}, eager taps", cuda_ms(lambda: resize_module._taps_pass(images, out_size, "lanczos", dim)))
        started = time.perf_counter()
        compiled = resize_module._taps_pass(images, out_size, "lanczos", dim)
        torch.cuda.synchronize()
        print(f"| {label}, first compiled call | {time.perf_counter() - started:.1f} s | "
              f"equal: {torch.equal(compiled, eager)} |")
        row(f"{label}, compiled gather-sum", cuda_ms(lambda: resize_module._taps_pass(images, out_size, "lanczos", dim)))
        return eager

    resize_cuda._compiled.clear()  # the chain above compiled them: time a first compile here
    wide = compare_pass("resize width pass (1920->800)", batch, 800, 3)
    compare_pass("resize height pass (1080->450)", wide, 450, 2)
    # Another size and filter through the same compiled kernel: a recompile would show as seconds.
    other = batch[:, :, :720, :1280].contiguous()
    started = time.perf_counter()
    resize_module._taps_pass(other, 777, "bicubic", 3)
    torch.cuda.synchronize()
    print(f"| compiled width pass, new size and filter (first call) | {time.perf_counter() - started:.2f} s | |")

    pipe = Pipeline(OPERATIONS, device="cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            pipe(batch)
        torch.cuda.synchronize()
    print("\n" + prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=20, max_name_column_width=60))


if __name__ == "__main__":
    main()
