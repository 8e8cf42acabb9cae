"""A burst of jobs through the real worker loop, MAX_CONCURRENCY=1 against 4, in one run.

``python -m benchmarks.concurrency [--jobs 16] [--device cpu]`` starts ``python -m gpu_worker``
against the fake RunPod job queue of the tests (tests/fake_runpod.py, on 127.0.0.1), queues a burst
of reference jobs (one 1080p JPEG each: resize to 800 wide, sharpen, brightness 1.1 and contrast
1.2, JPEG q85) all at once, and measures the makespan: from the first job handed out to the last
result posted. Each concurrency runs in a fresh worker, after a warm-up job.

runpod 1.12 waits 1 s before asking for more work whenever all its slots are busy, so with one
slot a worker takes about one job per second however fast the job is: that, and not the kernels,
is most of what MAX_CONCURRENCY buys on short jobs. The printout says how much.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the fake queue and process helpers live with the tests

from fake_runpod import FakeRunPodQueue  # noqa: E402
from worker_process import start_worker  # noqa: E402

from benchmarks.images import jpegs  # noqa: E402

OPERATIONS = [
    {"type": "resize", "params": {"width": 800}},
    {"type": "filter", "params": {"name": "sharpen"}},
    {"type": "adjust", "params": {"brightness": 1.1, "contrast": 1.2}},
]


def burst(concurrency: int, jobs: list[dict], device: str, log_dir: Path) -> dict:
    """Run ``jobs`` through one fresh worker; returns makespan and latencies in seconds."""
    env = {"GPU_WORKER_DEVICE": device, "CACHE_MAX_BYTES": "0", "MAX_CONCURRENCY": str(concurrency)}
    with FakeRunPodQueue() as queue:
        worker = start_worker(module="gpu_worker", env=queue.env(**env), log_path=log_dir / f"c{concurrency}.log")
        try:
            worker.wait_ready(lambda: len(queue.polls) > 0, timeout=120)
            queue.wait_for_results([queue.add_job(jobs[0])], timeout=120)  # warm-up
            queue.wait_for_idle_worker(timeout=30)
            ids = queue.add_jobs(jobs)
            records = queue.wait_for_results(ids, timeout=600)
        finally:
            worker.stop()
    failed = [r for r in records.values() if r.failed]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs failed, e.g. {failed[0].result}")
    start = min(r.handed_out_at for r in records.values())
    end = max(r.result_at for r in records.values())
    stacked = [r.output["metadata"]["stacked"] for r in records.values()]
    return {
        "concurrency": concurrency,
        "jobs": len(jobs),
        "makespan_s": round(end - start, 3),
        "jobs_per_s": round(len(jobs) / (end - start), 3),
        "mean_ops_ms": round(sum(r.output["metadata"]["timings_ms"]["ops"] for r in records.values()) / len(jobs), 1),
        "max_stacked": max(stacked),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "concurrency.json"))
    args = parser.parse_args(argv)

    sources = jpegs(args.jobs)
    jobs = [{"image": {"base64": base64.b64encode(data).decode("ascii")}, "operations": OPERATIONS,
             "output": {"format": "JPEG", "quality": 85}} for data in sources]
    with tempfile.TemporaryDirectory() as tmp:
        results = [burst(c, jobs, args.device, Path(tmp)) for c in (1, 4)]
    one, four = results
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores",
        "device": args.device,
        "results": results,
        "speedup_4_over_1": round(one["makespan_s"] / four["makespan_s"], 2),
    }
    print(f"{'MAX_CONCURRENCY':>16} {'jobs':>5} {'makespan s':>11} {'jobs/s':>7} {'ops ms/job':>11} {'max stacked':>12}")
    for r in results:
        print(f"{r['concurrency']:>16} {r['jobs']:>5} {r['makespan_s']:>11.2f} {r['jobs_per_s']:>7.2f} "
              f"{r['mean_ops_ms']:>11.1f} {r['max_stacked']:>12}")
    print(f"MAX_CONCURRENCY=4 finishes the burst {report['speedup_4_over_1']}x sooner than 1")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
