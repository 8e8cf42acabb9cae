"""The Ray Data adapter (gpu_worker.ray) against the plain ``Pipeline`` loop, on one machine.

``python -m benchmarks.ray_data [--images 128] [--batch 64] [--repeats 2] [--device cpu|cuda]``

Both take the same files from one folder and give encoded files back (kept in memory, counted,
not written):

* **Pipeline loop**: in this process, ``--batch`` files at a time: read the bytes,
  ``gpu_worker.codecs.decode_batch`` (the worker's decoders), ``Pipeline.run_tensors`` (stacked),
  ``gpu_worker.codecs.encode`` per shape. Torch's own thread count (every core). This is what a
  user writes without Ray.
* **Ray Data**: ``ray.data.read_binary_files(folder).map_batches(ImageProcessor, batch_size=--batch,
  concurrency=A)`` on a local cluster (``ray.init(num_cpus=CORES)``), iterated to the end; each
  actor runs its batches as the worker's batch jobs (``CPU_THREADS`` = CORES / A images at once on
  the CPU). Two shapes: one actor with every core, and one actor per core. The time includes
  starting the actors (a fresh Python with torch and the worker's runtime each) and Ray's
  scheduling: what one ``Dataset`` run costs, so small ``--images`` favour the loop. That fixed
  cost is measured on its own as the same run over a folder of one image ("fixed_s"), and the
  rate without it is ``images / (seconds - fixed_s)`` ("steady_images_per_s").

Images: the reference set (benchmarks/images.py, 1920x1080 JPEG q90); operations: resize to 800
wide, sharpen, brightness 1.1, contrast 1.2; JPEG q85 out; result cache off. One untimed warm-up
of each, then ``--repeats`` turns of each; the fastest counts. Results:
benchmarks/results/ray_data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

OPERATIONS = [{"type": "resize", "params": {"width": 800}}, {"type": "filter", "params": {"name": "sharpen"}},
              {"type": "adjust", "params": {"brightness": 1.1, "contrast": 1.2}}]
OUTPUT = {"format": "JPEG", "quality": 85}
#: Share of Ray's logical CPUs the actors take (the reads get the rest).
ACTOR_CPU_SHARE = 0.9


def pipeline_loop(files: list[Path], batch: int, device: str) -> tuple[float, int, int]:
    """(seconds, images out, bytes out) of the plain loop over ``files``."""
    import torch

    from gpu_worker import Pipeline
    from gpu_worker.codecs import decode_batch, encode

    start = time.perf_counter()
    pipe = Pipeline(OPERATIONS, device=device)
    done = out_bytes = 0
    for i in range(0, len(files), batch):
        datas = [f.read_bytes() for f in files[i:i + batch]]
        decoded = decode_batch(datas, pipe.device)
        bad = [d for d in decoded if not isinstance(d, torch.Tensor)]
        if bad:
            raise RuntimeError(f"decode failed: {bad[0]}")
        results = pipe.run_tensors(decoded)
        by_shape: dict[tuple, list[torch.Tensor]] = {}
        for r in results:
            by_shape.setdefault(tuple(r.shape), []).append(r)
        for group in by_shape.values():
            encoded = encode(torch.stack(group), OUTPUT["format"], OUTPUT["quality"])
            done += len(encoded)
            out_bytes += sum(len(e) for e in encoded)
    return time.perf_counter() - start, done, out_bytes


def ray_run(folder: Path, batch: int, actors: int, cores: int, device: str) -> tuple[float, int, int]:
    """(seconds, images out, bytes out) of one Dataset run with ``actors`` actors."""
    import ray

    from gpu_worker.ray import ImageProcessor

    env = {"GPU_WORKER_DEVICE": device, "CPU_THREADS": str(max(1, cores // actors)), "CACHE_MAX_BYTES": "0"}
    # Ray's CPUs are logical: the actors take most of them (their threads are CPU_THREADS) and the
    # reads the rest, else actors holding every CPU would leave none for the reads that feed them.
    resources = {"num_gpus": 1} if device.startswith("cuda") else {"num_cpus": ACTOR_CPU_SHARE * cores / actors}
    start = time.perf_counter()
    ds = ray.data.read_binary_files(str(folder), num_cpus=(1 - ACTOR_CPU_SHARE) * cores).map_batches(
        ImageProcessor, fn_constructor_kwargs={"operations": OPERATIONS, "output": OUTPUT},
        batch_format="numpy", batch_size=batch, compute=ray.data.ActorPoolStrategy(size=actors),
        runtime_env={"env_vars": env}, **resources)
    done = out_bytes = 0
    for out in ds.iter_batches(batch_format="numpy", batch_size=None):
        errors = [e for e in out["error"] if e]
        if errors:
            raise RuntimeError(f"rows failed: {errors[0]}")
        done += len(out["image"])
        out_bytes += sum(len(image) for image in out["image"])
    return time.perf_counter() - start, done, out_bytes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64, help="images per batch (the loop's and map_batches')")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="ray.init(num_cpus=...)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (then one GPU per actor)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ray_data.json"))
    args = parser.parse_args(argv)
    os.environ["GPU_WORKER_DEVICE"] = args.device
    os.environ["CACHE_MAX_BYTES"] = "0"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster

    import ray

    from benchmarks.images import save_set

    shapes = [1] if args.device.startswith("cuda") else sorted({1, args.cores})
    runs: dict[str, list[float]] = {"pipeline_loop": []} | {f"ray_{a}_actor": [] for a in shapes}
    fixed: dict[str, list[float]] = {f"ray_{a}_actor": [] for a in shapes}
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_set(args.images, Path(tmp) / "images")
        one = save_set(1, Path(tmp) / "one")
        files = sorted(folder.iterdir())
        bytes_in = sum(f.stat().st_size for f in files)
        ray.init(num_cpus=args.cores, num_gpus=1 if args.device.startswith("cuda") else 0,
                 include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            pipeline_loop(files[:args.batch], args.batch, args.device)  # warm-up: imports, kernels
            for actors in shapes:
                ray_run(folder, args.batch, actors, args.cores, args.device)  # warm-up: Ray's workers
            for repeat in range(args.repeats):
                seconds, done, out_bytes = pipeline_loop(files, args.batch, args.device)
                assert done == len(files), (done, len(files))
                runs["pipeline_loop"].append(seconds)
                for actors in shapes:
                    seconds, done, ray_bytes = ray_run(folder, args.batch, actors, args.cores, args.device)
                    assert done == len(files), (done, len(files))
                    runs[f"ray_{actors}_actor"].append(seconds)
                    fixed[f"ray_{actors}_actor"].append(ray_run(one, args.batch, actors, args.cores, args.device)[0])
                print(f"repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()),
                      file=sys.stderr)
        finally:
            ray.shutdown()
    best = {name: min(times) for name, times in runs.items()}
    rates = {name: round(len(files) / s, 2) for name, s in best.items()}
    fixed_s = {name: min(times) for name, times in fixed.items()}
    steady = {name: round(len(files) / max(1e-9, best[name] - fixed_s[name]), 2) for name in fixed_s}
    result = {"images": len(files), "bytes_in": bytes_in, "bytes_out_loop": out_bytes, "bytes_out_ray": ray_bytes,
              "batch": args.batch, "device": args.device, "ray_num_cpus": args.cores, "seconds": runs,
              "images_per_s": rates, "fixed_s": fixed, "steady_images_per_s": steady,
              "ray_to_loop": {name: round(rates[name] / rates["pipeline_loop"], 3)
                              for name in rates if name != "pipeline_loop"},
              "steady_ray_to_loop": {name: round(steady[name] / rates["pipeline_loop"], 3) for name in steady},
              "ray_version": ray.__version__, "cpus": os.cpu_count(), "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
