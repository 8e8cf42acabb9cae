"""How long a fresh worker process takes to be ready, and its first jobs, per CUDA_COMPILE mode.

    python -m benchmarks.cold_start [--device cuda] [--n 16] [--modes 0,1,2]

Each mode runs in a new process that does what ``python -m gpu_worker`` does before it polls for
jobs (settings, runtime, warm-up: ``gpu_worker.startup.prepare_worker``), then runs reference jobs
of ``n`` 1080p JPEGs through the handler, one after another, for ``--jobs-s`` seconds. It reports,
in seconds from the moment the process was started: when the worker could take jobs, when the
first job finished, and (mode 1) when the background compile finished; and the first job's and the
last job's time. On the CPU there is nothing to compile and the modes are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from benchmarks.images import load_set, save_set
from benchmarks.peers import OPERATIONS, OUTPUT, data_uri


def child(folder: str, n: int, jobs_s: float, spawned: float) -> dict:
    """Runs in the fresh process: prepare the worker, then jobs until ``jobs_s`` have passed."""
    from gpu_worker.config import load_settings
    from gpu_worker.startup import prepare_worker

    runtime = prepare_worker(load_settings())
    ready = time.time()
    from gpu_worker.handler import run_sync
    from kernels import resize_cuda

    compiled: list[float] = []  # when a background compile finished (at once when none runs)
    threading.Thread(target=lambda: resize_cuda.wait_until_compiled() and compiled.append(time.time()),
                     daemon=True).start()

    job = {"images": [{"image": {"base64": data_uri(d)}} for d in load_set(folder, n)], "operations": OPERATIONS,
           "output": OUTPUT}
    jobs_ms, finished = [], []
    while not jobs_ms or time.time() - ready < jobs_s:
        started = time.perf_counter()
        response = run_sync({"id": f"cold-{len(jobs_ms)}", "input": job})
        if not response.get("success") or response["metadata"]["failed"]:
            raise RuntimeError(f"job failed: {json.dumps(response)[:300]}")
        jobs_ms.append((time.perf_counter() - started) * 1000)
        finished.append(time.time())
    return {"device": str(runtime.device), "ready_s": ready - spawned, "first_job_done_s": finished[0] - spawned,
            "compiled_s": compiled[0] - spawned if compiled else None, "first_job_ms": jobs_ms[0],
            "last_job_ms": jobs_ms[-1], "jobs": len(jobs_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n", type=int, default=16, help="images per job")
    parser.add_argument("--modes", default="0,1,2", help="CUDA_COMPILE values to start with")
    parser.add_argument("--jobs-s", type=float, default=20.0, help="seconds of jobs after the worker is ready")
    parser.add_argument("--child", nargs=3, metavar=("FOLDER", "N", "SPAWNED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, n, spawned = args.child
        print(json.dumps(child(folder, int(n), args.jobs_s, float(spawned))))
        return

    with tempfile.TemporaryDirectory() as folder:
        save_set(args.n, folder)
        print(f"| CUDA_COMPILE | device | ready to take jobs (s) | first job done (s) | compiled (s) | "
              f"first job (ms) | job after {args.jobs_s:.0f} s (ms) |\n|---|---|---|---|---|---|---|")
        for mode in args.modes.split(","):
            env = dict(os.environ, GPU_WORKER_DEVICE=args.device, CUDA_COMPILE=mode, CACHE_MAX_BYTES="0",
                       UPLOAD_THRESHOLD_BYTES=str(1 << 30), RUNPOD_LOG_LEVEL="ERROR")
            spawned = time.time()
            out = subprocess.run([sys.executable, "-m", "benchmarks.cold_start", "--jobs-s", str(args.jobs_s),
                                  "--child", folder, str(args.n), str(spawned)],
                                 env=env, capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            compiled = "—" if row["compiled_s"] is None or mode != "1" else f"{row['compiled_s']:.1f}"
            print(f"| {mode} | {row['device']} | {row['ready_s']:.1f} | {row['first_job_done_s']:.1f} | {compiled} | "
                  f"{row['first_job_ms']:.0f} | {row['last_job_ms']:.0f} ({row['jobs']} jobs) |", flush=True)


if __name__ == "__main__":
    main()
