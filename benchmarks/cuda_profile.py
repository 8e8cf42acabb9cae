"""Where the reference operations spend their time on CUDA, step by step (needs a GPU).

    python -m benchmarks.cuda_profile [--n 16]

On ``n`` 1080p photos stacked on the GPU: each step of the reference chain timed alone with CUDA
events (median of 20 after warm-up), the resize passes as the eager tap loop against the same
taps as one ``torch.compile``'d gather-and-sum (equality checked, compile time reported), and the
top kernels of the whole chain from ``torch.profiler``.
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

    # The resize passes: eager tap loop against a compiled gather-and-sum of the same taps.
    planes = batch.reshape(n * 3, 1080, 1920)
    index, weight = resize_module._resample_table(1920, 800, "lanczos", batch.device)

    def gather_sum_cols(p: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        acc = (p[:, :, idx].to(torch.int32) * w[None, None]).sum(2) + resize_module.HALF
        return (acc >> resize_module.PRECISION_BITS).clamp(0, 255).to(torch.uint8)

    def gather_sum_rows(p: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        acc = (p[:, idx, :].to(torch.int32) * w[None, :, :, None]).sum(1) + resize_module.HALF
        return (acc >> resize_module.PRECISION_BITS).clamp(0, 255).to(torch.uint8)

    eager_w = resize_module._taps_pass(batch, 800, "lanczos", 3)
    row("resize width pass, eager taps (1920->800)", cuda_ms(lambda: resize_module._taps_pass(batch, 800, "lanczos", 3)))
    compiled_cols = torch.compile(gather_sum_cols, dynamic=True)
    started = time.perf_counter()
    got = compiled_cols(planes, index, weight)
    torch.cuda.synchronize()
    print(f"| compile width pass | {time.perf_counter() - started:.1f} s | equal: {torch.equal(got.view_as(eager_w), eager_w)} |")
    row("resize width pass, compiled gather-sum", cuda_ms(lambda: compiled_cols(planes, index, weight)))

    mid = eager_w.reshape(n * 3, 1080, 800)
    index_h, weight_h = resize_module._resample_table(1080, 450, "lanczos", batch.device)
    eager_h = resize_module._taps_pass(eager_w, 450, "lanczos", 2)
    row("resize height pass, eager taps (1080->450)", cuda_ms(lambda: resize_module._taps_pass(eager_w, 450, "lanczos", 2)))
    compiled_rows = torch.compile(gather_sum_rows, dynamic=True)
    started = time.perf_counter()
    got = compiled_rows(mid, index_h, weight_h)
    torch.cuda.synchronize()
    print(f"| compile height pass | {time.perf_counter() - started:.1f} s | equal: {torch.equal(got.view_as(eager_h), eager_h)} |")
    row("resize height pass, compiled gather-sum", cuda_ms(lambda: compiled_rows(mid, index_h, weight_h)))
    # Another size through the same compiled function: a recompile would show as seconds here.
    other = batch[:, :, :720, :1280].contiguous().reshape(n * 3, 720, 1280)
    index_o, weight_o = resize_module._resample_table(1280, 777, "bicubic", batch.device)
    started = time.perf_counter()
    compiled_cols(other, index_o, weight_o)
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
