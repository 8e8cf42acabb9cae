"""The reference job at several CHUNK_IMAGES settings, side by side in one process.

    python -m benchmarks.chunks [--device cuda] [--n 64] [--chunks 0,8,16,32] [--repeats 5]

A batch job goes to the device in chunks, the next one decoding while the current one's operations
and encode run (``gpu_worker.overlap``). This runs the same ``n``-image reference job through
the job runner with each setting (0: one chunk, as ``MAX_STACK_PIXELS`` allows), the settings taking
turns repeat by repeat, and prints the median ms per image, the stage times of the median run and
the process's peak memory so far (GPU memory on CUDA, per setting).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import time

import torch

from benchmarks.images import jpegs
from benchmarks.peers import OPERATIONS, OUTPUT, data_uri
from gpu_worker.config import Settings
from gpu_worker.device import select_device
from gpu_worker.jobs import JobRunner
from gpu_worker.runtime import use_cpu_cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n", type=int, default=64, help="images per job")
    parser.add_argument("--chunks", default="0,8,16,32", help="CHUNK_IMAGES values")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = select_device(args.device)
    settings = dataclasses.replace(Settings(), gpu_worker_device=str(device), cache_max_bytes=0,
                                   upload_threshold_bytes=1 << 30)
    use_cpu_cores(device)  # as the worker does
    job = {"images": [{"image": {"base64": data_uri(d)}} for d in jpegs(args.n)], "operations": OPERATIONS,
           "output": OUTPUT}
    runners = {size: JobRunner(dataclasses.replace(settings, chunk_images=size), device)
               for size in (int(v) for v in args.chunks.split(","))}
    runs: dict[int, list[tuple[float, dict]]] = {size: [] for size in runners}
    peak_gpu_mb: dict[int, float] = {}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for size, runner in runners.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            started = time.perf_counter()
            response = runner.run(job)
            took_ms = (time.perf_counter() - started) * 1000
            if not response["success"] or response["metadata"]["failed"]:
                raise RuntimeError(f"CHUNK_IMAGES={size}: the job failed")
            if repeat:
                runs[size].append((took_ms, response["metadata"]["timings_ms"]))
            if device.type == "cuda":
                peak_gpu_mb[size] = max(peak_gpu_mb.get(size, 0.0), torch.cuda.max_memory_allocated(device) / 1e6)
    print(f"## {args.n}-image reference job on {device}, median of {args.repeats}\n")
    print("| CHUNK_IMAGES | ms per image | images/s | decode | ops | encode (ms per job, overlapping) | peak GPU MB |")
    print("|---|---|---|---|---|---|---|")
    for size, results in runs.items():
        _, timings = sorted(results, key=lambda r: r[0])[len(results) // 2]
        per_image = statistics.median(r[0] for r in results) / args.n
        peak = f"{peak_gpu_mb[size]:.0f}" if size in peak_gpu_mb else "—"
        print(f"| {size} | {per_image:.2f} | {1000 / per_image:.0f} | {timings['decode']:.1f} | {timings['ops']:.1f} | "
              f"{timings['encode']:.1f} | {peak} |")
    print(f"\npeak resident memory of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
