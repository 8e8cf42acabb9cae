"""The bulk client against the local endpoint, and the handler in-process on the same images.

``python -m benchmarks.client [--images 128] [--batch 16] [--concurrency 2] [--repeats 3]``

* **Client -> server**: ``python -m gpu_worker serve`` on 127.0.0.1 (CPU, the worker's defaults,
  MAX_CONCURRENCY = ``--concurrency``), warmed up by one job; then ``python -m gpu_worker.client
  process FOLDER --out NEW_FOLDER --endpoint bench --base-url ... --json`` in a child process. Its
  time is the summary's ``wall_s``: listing, reading, base64, ``/run``, polling, decoding the
  results and writing them with the manifest (the client's Python start and imports are not in it).
* **Handler in-process**: the same images as the same batch jobs (base64 built beforehand),
  ``--concurrency`` at a time on threads through ``gpu_worker.handler.run_sync`` in this process,
  after one warm-up job; nothing written.

The ratio in-process / client is the share of the in-process rate the whole client path keeps.
Images: the reference set (benchmarks/images.py, 1920x1080 JPEG q90); job: resize to 800 wide,
sharpen, brightness 1.1, contrast 1.2, JPEG q85; result cache off. The two run in turns,
``--repeats`` times, and the fastest of each counts. Results: benchmarks/results/client.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.images import save_set

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the server-in-a-subprocess helper lives with the tests

OPS = {"operations": [{"type": "resize", "params": {"width": 800}}, {"type": "filter", "params": {"name": "sharpen"}},
                      {"type": "adjust", "params": {"brightness": 1.1, "contrast": 1.2}}],
       "output": {"format": "JPEG", "quality": 85}}


def client_run(folder: Path, out: Path, ops: Path, base: str, batch: int, concurrency: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RUNPOD_API_KEY": "bench"}
    run = subprocess.run([sys.executable, "-m", "gpu_worker.client", "process", str(folder), "--ops", str(ops),
                          "--out", str(out), "--endpoint", "bench", "--base-url", f"{base}/v2", "--json",
                          "--no-progress", "--batch", str(batch), "--concurrency", str(concurrency)],
                         capture_output=True, text=True, env=env, timeout=1800)
    if run.returncode != 0:
        raise RuntimeError(f"client failed ({run.returncode}): {run.stderr[-2000:]}")
    return json.loads(run.stdout)


def inprocess_run(jobs: list[dict], concurrency: int) -> float:
    from gpu_worker.handler import run_sync

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        outputs = list(pool.map(lambda job: run_sync({"id": "bench", "input": job}), jobs))
    elapsed = time.perf_counter() - start
    bad = [o for o in outputs if o.get("metadata", {}).get("failed")]
    if bad:
        raise RuntimeError(f"in-process jobs failed: {bad[0]}")
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "client.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("GPU_WORKER_DEVICE", "cpu")
    os.environ["CACHE_MAX_BYTES"] = "0"
    os.environ["MAX_CONCURRENCY"] = str(args.concurrency)

    from local_endpoint import start_endpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = save_set(args.images, tmp / "images")
        ops = tmp / "ops.json"
        ops.write_text(json.dumps(OPS))
        files = sorted(folder.iterdir())
        bytes_in = sum(f.stat().st_size for f in files)
        jobs = [{"images": [{"image": {"base64": base64.b64encode(f.read_bytes()).decode()}}
                            for f in files[i:i + args.batch]], **OPS} for i in range(0, len(files), args.batch)]
        env = {k: os.environ[k] for k in ("GPU_WORKER_DEVICE", "CACHE_MAX_BYTES", "MAX_CONCURRENCY")}
        proc, base = start_endpoint(tmp / "serve.log", env=env)
        try:
            client_run(folder, tmp / "warm", ops, base, args.batch, args.concurrency)  # the server warmed up
            inprocess_run(jobs[:1], 1)  # this process' runtime built and warmed up
            client_s, inproc_s = [], []
            for repeat in range(args.repeats):
                summary = client_run(folder, tmp / f"out{repeat}", ops, base, args.batch, args.concurrency)
                assert summary["done"] == len(files), summary
                client_s.append(summary["wall_s"])
                inproc_s.append(inprocess_run(jobs, args.concurrency))
                print(f"repeat {repeat}: client -> server {client_s[-1]:.2f} s, in-process {inproc_s[-1]:.2f} s",
                      file=sys.stderr)
        finally:
            proc.stop()
    best_client, best_inproc = min(client_s), min(inproc_s)
    result = {"images": len(files), "bytes_in": bytes_in, "batch": args.batch, "concurrency": args.concurrency,
              "device": os.environ["GPU_WORKER_DEVICE"], "client_s": client_s, "inprocess_s": inproc_s,
              "client_images_per_s": round(len(files) / best_client, 2),
              "inprocess_images_per_s": round(len(files) / best_inproc, 2),
              "ratio_client_to_inprocess": round(best_inproc / best_client, 3),
              "cpus": os.cpu_count(), "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
