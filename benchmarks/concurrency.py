"""A burst of single-image jobs through the real worker loop against the same jobs in-process.

``python -m benchmarks.concurrency [--jobs 48] [--concurrency 1,4,16,64] [--device cpu] [--vary-params]``

* **Through the loop**: ``python -m gpu_worker`` (the RunPod SDK's job loop, with
  gpu_worker.sdk_patches installed) against the fake RunPod job queue of the tests
  (tests/fake_runpod.py, on 127.0.0.1, keeping connections open as RunPod's API does). The burst is queued all at once after a warm-up job; the
  makespan runs from the first job handed out to the last result posted.
* **In-process**: the same handler in a fresh process, set up as the worker sets itself up
  (``gpu_worker.startup.prepare_worker`` with the same settings), the same jobs, the same number
  at once (an asyncio semaphore of MAX_CONCURRENCY), after the same warm-up job; the makespan runs
  from the first job started to the last one returned.

Each job is the tutorial client's: one 1080p JPEG (base64), resize to 800 wide, sharpen,
brightness 1.1 and contrast 1.2, JPEG q85; the result cache is off. The ratio loop/in-process is
what the SDK's loop costs a RunPod user.

``--vary-params`` gives each job its own brightness and contrast (:func:`varied_operations`), as
users' jobs have: plans that differ only in per-sample parameters still stack
(gpu_worker.per_sample), so ``max stacked`` and ``mean stacked`` (the images in the kernel call
that made each result, from each job's ``stacked`` metadata) show what the cross-job batcher found
to stack. On the CPU the images of a stack still run one by one; the time stacking saves shows on
CUDA only (``--device cuda``).

At each concurrency both are set up first, then their bursts run in turns (loop, in-process,
loop, ...) ``--repeats`` times (default 3), and the fastest of each counts: on a shared machine
the slower bursts are mostly other processes' load, and taking turns gives both sides the same.

``--post-check`` measures that posting results does not hold the loop up: 8 jobs with 3 MB
results at MAX_CONCURRENCY=4 through the loop, with the fake queue taking each result post in at
once and then after ``--post-delay`` seconds (a slow link, default 1 s). If a post held its job's
slot the delay would add up per slot (2 s here) and the worker would never hold more than 4 jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the fake queue and process helpers live with the tests

from fake_runpod import FakeRunPodQueue  # noqa: E402
from worker_process import start_worker  # noqa: E402

OPERATIONS = [
    {"type": "resize", "params": {"width": 800}},
    {"type": "filter", "params": {"name": "sharpen"}},
    {"type": "adjust", "params": {"brightness": 1.1, "contrast": 1.2}},
]
CONCURRENCIES = (1, 4, 16, 64)
#: How the in-process child marks its replies on stdout.
_MARK = "BENCH "


def varied_operations(index: int) -> list[dict]:
    """:data:`OPERATIONS` with job ``index``'s own brightness and contrast (no two of 48 equal)."""
    adjust = {"brightness": round(1.0 + 0.01 * (index % 24), 2), "contrast": round(1.1 + 0.1 * (index // 24), 2)}
    return [*OPERATIONS[:-1], {"type": "adjust", "params": adjust}]


def make_jobs(count: int, output: dict | None = None, operations: list | None = None,
              vary_params: bool = False) -> list[dict]:
    """``count`` job inputs, each one distinct 1080p JPEG from benchmarks.images; with
    ``vary_params`` each with its own adjust factors (:func:`varied_operations`)."""
    from benchmarks.images import jpegs

    output = output or {"format": "JPEG", "quality": 85}
    operations = OPERATIONS if operations is None else operations
    return [{"image": {"base64": base64.b64encode(data).decode("ascii")},
             "operations": varied_operations(i) if vary_params else operations,
             "output": output} for i, data in enumerate(jpegs(count))]


def worker_env(concurrency: int, device: str) -> dict[str, str]:
    return {"GPU_WORKER_DEVICE": device, "CACHE_MAX_BYTES": "0", "MAX_CONCURRENCY": str(concurrency)}


# ---------------------------------------------------------------------------- through the loop
@contextlib.contextmanager
def loop_worker(concurrency: int, device: str, log_path: Path, warm_up: dict, post_delay_s: float = 0.0):
    """A fresh ``python -m gpu_worker`` on a fake queue, warmed up with one job; yields the queue."""
    with FakeRunPodQueue(post_delay_s=post_delay_s, keep_alive=True) as queue:
        worker = start_worker(module="gpu_worker", env=queue.env(**worker_env(concurrency, device)),
                              log_path=log_path)
        try:
            worker.wait_ready(lambda: len(queue.polls) > 0, timeout=180)
            queue.wait_for_results([queue.add_job(warm_up)], timeout=180)
            yield queue
        finally:
            worker.stop()


def through_loop(concurrency: int, jobs: list[dict], device: str, log_path: Path, repeats: int = 1,
                 post_delay_s: float = 0.0) -> dict:
    """Run ``jobs`` as a burst ``repeats`` times through one fresh worker, each from an idle
    worker; returns the measures of the fastest burst, with every burst's jobs/s."""
    with loop_worker(concurrency, device, log_path, jobs[0], post_delay_s) as queue:
        bursts = [_one_burst(queue, concurrency, jobs) for _ in range(repeats)]
    return _best(bursts)


def _best(bursts: list[dict]) -> dict:
    best = max(bursts, key=lambda b: b["jobs_per_s"])
    return {**best, "every_jobs_per_s": [b["jobs_per_s"] for b in bursts]}


def _one_burst(queue: FakeRunPodQueue, concurrency: int, jobs: list[dict]) -> dict:
    queue.wait_for_idle_worker(timeout=60)
    polls_before = len(queue.polls)
    cpu_before = time.process_time()  # this process: the fake queue's HTTP server, on the same cores
    ids = queue.add_jobs(jobs)
    records = queue.wait_for_results(ids, timeout=900)
    queue_cpu_s = time.process_time() - cpu_before
    polls = len(queue.polls) - polls_before
    outputs = [r.output for r in records.values()]
    _check(outputs, [r.error for r in records.values()])
    start = min(r.handed_out_at for r in records.values())
    end = max(r.result_at for r in records.values())
    return {**_measures(concurrency, outputs, end - start), "job_takes": polls, "most_held": _most_held(records),
            "queue_cpu_s": round(queue_cpu_s, 3)}


def _most_held(records: dict) -> int:
    """Most jobs the worker held at once: handed out, result not yet received (running or being
    posted). Where posting held a job's slot, this never exceeds MAX_CONCURRENCY."""
    events = sorted([(r.handed_out_at, 1) for r in records.values()] + [(r.result_at, -1) for r in records.values()])
    held = most = 0
    for _, step in events:
        held += step
        most = max(most, held)
    return most


def _check(outputs: list, errors: list) -> None:
    failed = [(o, e) for o, e in zip(outputs, errors) if e or not (o or {}).get("success")]
    if failed:
        raise RuntimeError(f"{len(failed)} job(s) failed, e.g. {failed[0][1] or failed[0][0]}")


def _measures(concurrency: int, outputs: list[dict], seconds: float) -> dict:
    stacked = [o["metadata"].get("stacked", 1) for o in outputs]
    return {
        "concurrency": concurrency,
        "jobs": len(outputs),
        "makespan_s": round(seconds, 3),
        "jobs_per_s": round(len(outputs) / seconds, 2),
        "mean_ops_ms": round(sum(o["metadata"]["timings_ms"]["ops"] for o in outputs) / len(outputs), 1),
        "max_stacked": max(stacked),
        "mean_stacked": round(sum(stacked) / len(stacked), 2),
        "result_bytes": max(len(o.get("processed_image", "")) for o in outputs),
    }


# ---------------------------------------------------------------------------- in-process
class InProcess:
    """The handler in a fresh process (:func:`_in_process_child`), set up as the worker sets
    itself up and warmed up with the first job; :meth:`burst` runs the jobs once more there."""

    def __init__(self, concurrency: int, jobs_file: Path, device: str):
        env = {k: v for k, v in {**os.environ, **worker_env(concurrency, device)}.items()
               if not k.startswith("RUNPOD_WEBHOOK")}
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.concurrency", "--in-process-child",
                                      str(jobs_file)], cwd=REPO, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._read()  # "ready", after set-up and warm-up

    def _read(self) -> dict:
        """The child's next ``BENCH {...}`` line (the SDK and the worker print other lines)."""
        for line in self.proc.stdout:
            if line.startswith(_MARK):
                return json.loads(line[len(_MARK):])
        raise RuntimeError(f"the in-process child exited with {self.proc.wait()}")

    def burst(self) -> dict:
        self.proc.stdin.write("burst\n")
        self.proc.stdin.flush()
        return self._read()

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _in_process_child(jobs_file: Path) -> None:
    """In this process: set up as ``python -m gpu_worker`` does, warm up with one job, say ready;
    then for each ``burst`` line on stdin run every job, MAX_CONCURRENCY at a time, through the
    async handler and print the measures as one JSON line."""
    from gpu_worker.config import load_settings
    from gpu_worker.handler import handler
    from gpu_worker.startup import prepare_worker

    settings = load_settings()
    prepare_worker(settings)
    jobs = json.loads(Path(jobs_file).read_text())

    async def burst() -> tuple[list[dict], float]:
        slots = asyncio.Semaphore(settings.max_concurrency)
        stamps: list[float] = []

        async def one(i: int, job_input: dict) -> dict:
            async with slots:
                stamps.append(time.time())
                output = await handler({"id": f"job-{i}", "input": job_input})
                stamps.append(time.time())
                return output

        outputs = await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs)))
        return outputs, max(stamps) - min(stamps)

    asyncio.run(handler({"id": "warm-up", "input": jobs[0]}))
    print(_MARK + json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        outputs, seconds = asyncio.run(burst())
        _check(outputs, [None] * len(outputs))
        print(_MARK + json.dumps(_measures(settings.max_concurrency, outputs, seconds)), flush=True)


# ---------------------------------------------------------------------------- the runs
def sweep(concurrencies: list[int], count: int, device: str, tmp: Path, repeats: int,
          vary_params: bool = False) -> list[dict]:
    """Loop and in-process at each concurrency: both set up, then their bursts in turns (loop,
    in-process, loop, ...), so that both meet the same load from other processes; the fastest
    of ``repeats`` bursts of each counts."""
    jobs = make_jobs(count, vary_params=vary_params)
    jobs_file = tmp / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    rows = []
    for concurrency in concurrencies:
        loop_bursts, local_bursts = [], []
        with loop_worker(concurrency, device, tmp / f"loop-c{concurrency}.log", jobs[0]) as queue, \
                InProcess(concurrency, jobs_file, device) as local:
            for _ in range(repeats):
                loop_bursts.append(_one_burst(queue, concurrency, jobs))
                local_bursts.append(local.burst())
        loop, local = _best(loop_bursts), _best(local_bursts)
        pairs = sorted(a["jobs_per_s"] / b["jobs_per_s"] for a, b in zip(loop_bursts, local_bursts))
        rows.append({"concurrency": concurrency, "loop": loop, "in_process": local,
                     "ratio": round(loop["jobs_per_s"] / local["jobs_per_s"], 2),
                     "pair_ratios": [round(r, 2) for r in pairs], "median_pair_ratio": round(pairs[len(pairs) // 2], 2)})
        print(f"  MAX_CONCURRENCY={concurrency}: loop {loop['every_jobs_per_s']} jobs/s, in-process "
              f"{local['every_jobs_per_s']} jobs/s; ratio of the fastest {rows[-1]['ratio']}, of each pair "
              f"{rows[-1]['pair_ratios']}", flush=True)
    return rows


def post_check(concurrency: int, count: int, delay_s: float, device: str, tmp: Path, repeats: int) -> dict:
    """Multi-megabyte results (each 1080p JPEG resized to 3840 wide, JPEG q100) through the loop,
    posts answered at once and after ``delay_s``: if posting held a job slot, the delay would add
    up per slot, and the worker would never hold more than ``concurrency`` jobs."""
    jobs = make_jobs(count, output={"format": "JPEG", "quality": 100},
                     operations=[{"type": "resize", "params": {"width": 3840}}])
    fast = through_loop(concurrency, jobs, device, tmp / "post-fast.log", repeats)
    slow = through_loop(concurrency, jobs, device, tmp / "post-slow.log", repeats, post_delay_s=delay_s)
    held = count / concurrency * delay_s  # what the delay would add if each post held its slot
    return {"concurrency": concurrency, "jobs": count, "post_delay_s": delay_s, "fast": fast, "slow": slow,
            "added_s": round(slow["makespan_s"] - fast["makespan_s"], 2),
            "added_if_posts_held_slots_s": round(held, 2)}


def print_report(report: dict) -> None:
    print(f"\n{'MAX_CONCURRENCY':>16} {'loop jobs/s':>12} {'in-process jobs/s':>18} {'ratio':>6} "
          f"{'median pair':>12} {'job-takes':>10} {'max stacked':>12} {'mean stacked':>13}")
    for row in report["sweep"]:
        print(f"{row['concurrency']:>16} {row['loop']['jobs_per_s']:>12.2f} {row['in_process']['jobs_per_s']:>18.2f} "
              f"{row['ratio']:>6.2f} {row['median_pair_ratio']:>12.2f} {row['loop']['job_takes']:>10} "
              f"{row['loop']['max_stacked']:>12} {row['loop']['mean_stacked']:>13}")
    print("(jobs/s: the fastest burst of each; ratio: of those; median pair: the median of the ratios "
          "of bursts run one after the other)")
    for row in report["sweep"]:
        loop = row["loop"]
        print(f"  MAX_CONCURRENCY={row['concurrency']}: the fake queue (this process, on the same cores; on "
              f"RunPod the queue is elsewhere) used {loop['queue_cpu_s']:.2f} CPU-s of the fastest loop burst's "
              f"{loop['makespan_s']:.2f} s")
    post = report.get("post_check")
    if post:
        print(f"\n{post['jobs']} jobs with {post['fast']['result_bytes'] / 1e6:.1f} MB results at MAX_CONCURRENCY="
              f"{post['concurrency']}: {post['fast']['makespan_s']:.2f} s with posts answered at once, "
              f"{post['slow']['makespan_s']:.2f} s with each post taking {post['post_delay_s']} s "
              f"({post['added_s']:+} s; +{post['added_if_posts_held_slots_s']} s if posts held the slots); "
              f"jobs held at once (running or being posted): {post['slow']['most_held']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=48)
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCIES)))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="bursts per measurement; the fastest counts")
    parser.add_argument("--post-check", action="store_true", help="also measure slow result posts")
    parser.add_argument("--vary-params", action="store_true",
                        help="each job its own brightness and contrast (they still stack: gpu_worker.per_sample)")
    parser.add_argument("--post-delay", type=float, default=1.0)
    parser.add_argument("--out", help="default: benchmarks/results/concurrency[-vary-params].json")
    parser.add_argument("--in-process-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process_child:
        _in_process_child(Path(args.in_process_child))
        return 0

    load = os.getloadavg()[0]
    report = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": f"{os.cpu_count()} cores",
              "device": args.device, "vary_params": args.vary_params, "load_before": round(load, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        report["sweep"] = sweep([int(c) for c in args.concurrency.split(",")], args.jobs, args.device, Path(tmp),
                                args.repeats, args.vary_params)
        if args.post_check:
            report["post_check"] = post_check(4, 8, args.post_delay, args.device, Path(tmp), args.repeats)
    report["load_after"] = round(os.getloadavg()[0], 2)
    print_report(report)
    print(f"load average (1 min) before {report['load_before']}, after {report['load_after']} on {report['machine']}")
    out = Path(args.out or REPO / "benchmarks" / "results" /
               ("concurrency-vary-params.json" if args.vary_params else "concurrency.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
