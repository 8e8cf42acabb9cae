"""Two (or more) commits of the worker measured in turns, in one run: an A/B of the reference job.

    python -m benchmarks.ab --commits 8167ccc,HEAD [--sizes 1,16] [--rounds 8] [--repeats 3]
                            [--warmup 2] [--device cpu|cuda] [--out benchmarks/results/ab.json]

Each commit is extracted (``git archive``) into a temporary folder, and one long-lived child
process per commit (``benchmarks/ab_child.py``, run by this repository's ``.venv/bin/python`` with
that folder as working directory and first on ``PYTHONPATH``) imports that commit's handler and
warms up. Then rounds: in each round, for each batch size, every child in turn runs the reference
job (``benchmarks/peers.py``'s ``ours`` peer: 1920x1080 JPEG photos from ``benchmarks/images.py``,
base64 in, its OPERATIONS and OUTPUT) ``--repeats`` times, while the others wait on stdin. The
order rotates each round (with two commits: A B, then B A, ...), so no commit always goes first.
Every child reads the same job files, written once by this process.

Each measurement records how much CPU other processes used while it ran (in cores, as
``benchmarks.run`` does); a round in which they used more than ``BUSY_CORES``, over its turns at
one size together, is marked busy, and the summary is given again without the busy rounds and a SHA-256 of the
results' bytes: commits whose outputs differ are reported (information, not a failure).

Prints one markdown table per size (each commit's median ms per image over every round's repeats,
min, p25-p75, and its ratio to the first commit: of the medians, and per round, the median and
min-max of the rounds' ratios, a noise estimate) and writes every number to ``--out`` (JSON).
A child that exits, prints something that is not an answer, fails a job or times out stops the
run; stopped (an error, SIGTERM or Ctrl-C), it still writes what was measured, marked cut short,
and exits with status 1. The temporary folders are removed in every case.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from benchmarks.run import BUSY_CORES, Stopped, _child_env, _stop, _system_busy, load_average, machine_info, versions

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "ab_child.py"
#: Seconds a child may take to import its worker and warm up, and to answer one command.
START_TIMEOUT_S = 600
COMMAND_TIMEOUT_S = 300


class ChildFailed(Exception):
    """A child exited, answered something that is not an answer, failed a job or timed out."""


# ---------------------------------------------------------------------------------------------
# Commits and their trees


def resolve(commit: str) -> dict[str, str]:
    """``commit`` (any name git knows) -> its full hash and subject line."""
    try:
        full = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError:
        raise SystemExit(f"--commits: {commit!r} is not a commit in {ROOT}") from None
    subject = subprocess.run(["git", "log", "-1", "--format=%s", full], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    return {"name": commit, "hash": full, "subject": subject}


def extract(full_hash: str, folder: Path) -> None:
    """The commit's files (``git archive``) written into ``folder``."""
    folder.mkdir(parents=True)
    proc = subprocess.run(["git", "archive", "--format=tar", full_hash], cwd=ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:") as tar:
        tar.extractall(folder, filter="data")


def write_jobs(sizes: Iterable[int], folder: Path) -> Path:
    """``job-<n>.json`` for each size: the reference job's input on the first ``n`` test photos
    (one image: a single job; more: a batch job, operations and output given once)."""
    from benchmarks import images
    from benchmarks.peers import OPERATIONS, OUTPUT, data_uri

    sizes = sorted(set(sizes))
    uris = [data_uri(d) for d in images.jpegs(max(sizes))]
    folder.mkdir(parents=True)
    for n in sizes:
        if n == 1:
            job_input = {"image": {"base64": uris[0]}, "operations": OPERATIONS, "output": OUTPUT}
        else:
            job_input = {"images": [{"image": {"base64": u}} for u in uris[:n]], "operations": OPERATIONS,
                         "output": OUTPUT}
        (folder / f"job-{n}.json").write_text(json.dumps(job_input))
    return folder


# ---------------------------------------------------------------------------------------------
# One child per commit


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


class Child:
    """One commit's worker in a process of its own, answering one JSON line per command."""

    def __init__(self, label: str, tree: Path, jobs: Path, sizes: list[int], warmup: int, device: str | None,
                 stderr_path: Path):
        self.label = label
        env = _child_env()
        env["PYTHONPATH"] = str(tree)  # this commit's gpu_worker and kernels, nothing else
        if device:
            env["GPU_WORKER_DEVICE"] = device
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")
        # A session of its own: Ctrl-C reaches this process only, which then ends the children.
        self.proc = subprocess.Popen(
            [_python(), "-P", str(CHILD), str(jobs), ",".join(map(str, sizes)), str(warmup)],
            cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            start_new_session=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)  # EOF: the child closed its stdout (it exited)

    def stderr_tail(self, lines: int = 15) -> str:
        self._stderr.flush()
        text = self.stderr_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:]) or "(nothing on stderr)"

    def answer(self, timeout: float) -> dict[str, Any]:
        """The child's next JSON line; ChildFailed (with its stderr's tail) if none comes."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ChildFailed(f"{self.label}: no answer within {timeout:.0f} s\n{self.stderr_tail()}") from None
        if line is None:
            try:
                code = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                code = "unknown (still running)"
            raise ChildFailed(f"{self.label}: the child exited (status {code})\n{self.stderr_tail()}")
        try:
            answer = json.loads(line)
            if not isinstance(answer, dict):
                raise ValueError("not an object")
        except ValueError:
            raise ChildFailed(f"{self.label}: answered {line.strip()[:200]!r}, not a JSON object\n"
                              f"{self.stderr_tail()}") from None
        if "error" in answer:
            raise ChildFailed(f"{self.label}: {answer['error']}\n{self.stderr_tail()}")
        return answer

    def ask(self, size: int, repeats: int, timeout: float) -> dict[str, Any]:
        try:
            self.proc.stdin.write(json.dumps({"size": size, "repeats": repeats}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ChildFailed(f"{self.label}: the child is gone (status {self.proc.poll()})\n"
                              f"{self.stderr_tail()}") from None
        return self.answer(timeout)

    def cpu_s(self) -> float:
        import psutil

        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def close(self, wait: float = 10) -> None:
        """EOF on the child's stdin (its loop ends), killed if it has not exited ``wait`` s later."""
        try:
            self.proc.stdin.close()
        except OSError:  # it exited with a command still in the pipe
            pass
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        self.proc.stdout.close()
        self._stderr.close()


def measure(child: Child, size: int, repeats: int, timeout: float) -> dict[str, Any]:
    """One command: the child's answer, with the wall seconds and the other processes' CPU use."""
    import psutil

    me = psutil.Process()
    busy_before, child_before, own_before = _system_busy(), child.cpu_s(), sum(me.cpu_times()[:2])
    started = time.perf_counter()
    answer = child.ask(size, repeats, timeout)
    wall = time.perf_counter() - started
    (busy, steal), child_cpu, own = _system_busy(), child.cpu_s(), sum(me.cpu_times()[:2])
    others = (busy - busy_before[0]) - (child_cpu - child_before) - (own - own_before)
    answer["wall_s"] = round(wall, 4)
    answer["child_cores"] = round((child_cpu - child_before) / wall, 2)
    answer["other_cpu_s"] = round(others, 3)  # /proc/stat counts in ticks (10 ms): coarse for short turns
    answer["other_load_cores"] = round(max(0.0, others) / wall, 2)
    answer["steal_cores"] = round((steal - busy_before[1]) / wall, 2)
    return answer


# ---------------------------------------------------------------------------------------------
# Summary


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def summarize(measurements: list[dict[str, Any]], commits: int, sizes: list[int],
              quiet_only: bool = False) -> dict[int, list[dict[str, Any]]]:
    """Per size, per commit (by index, the first is the baseline): the median, min, p25, p75 and
    max ms per image over every round's repeats, and the ratio to the first commit: of the
    medians, and per round (the commit's median of that round over the first commit's), their
    median, min and max. ``quiet_only``: rounds with a busy measurement (``busy``) left out.

    ``measurements``: dicts with ``round``, ``size``, ``commit`` (index), ``ms_per_image`` (a list,
    one per repeat) and ``busy``.
    """
    busy_rounds = {(m["round"], m["size"]) for m in measurements if m.get("busy")} if quiet_only else set()
    out: dict[int, list[dict[str, Any]]] = {}
    for size in sizes:
        rows = [m for m in measurements if m["size"] == size and (m["round"], size) not in busy_rounds]
        per_round = {}  # (commit, round) -> median of that round's repeats
        for m in rows:
            per_round[m["commit"], m["round"]] = statistics.median(m["ms_per_image"])
        table = []
        base = [v for m in rows if m["commit"] == 0 for v in m["ms_per_image"]]
        for c in range(commits):
            values = [v for m in rows if m["commit"] == c for v in m["ms_per_image"]]
            if not values:
                table.append({"commit": c, "values": 0})
                continue
            p25, p75 = _quartiles(values)
            row = {"commit": c, "values": len(values), "rounds": len({m["round"] for m in rows if m["commit"] == c}),
                   "median": statistics.median(values), "min": min(values), "p25": p25, "p75": p75,
                   "max": max(values)}
            ratios = [per_round[c, r] / per_round[0, r] for (cc, r) in sorted(per_round)
                      if cc == c and (0, r) in per_round]
            if base and ratios:
                row["ratio_of_medians"] = row["median"] / statistics.median(base)
                row["round_ratio_median"] = statistics.median(ratios)
                row["round_ratio_min"] = min(ratios)
                row["round_ratio_max"] = max(ratios)
                row["round_ratios"] = ratios
            table.append(row)
        out[size] = table
    return out


def stage_medians(measurements: list[dict[str, Any]], commit: int, size: int) -> dict[str, float]:
    """The median of each stage of the handler's ``timings_ms`` over every repeat, per image."""
    runs = [t for m in measurements if m["commit"] == commit and m["size"] == size
            for t in m.get("timings_ms", []) if isinstance(t, dict)]
    keys = list(dict.fromkeys(k for t in runs for k in t))
    return {k: round(statistics.median(t[k] for t in runs if k in t) / size, 3) for k in keys}


def _label(commit: dict[str, str]) -> str:
    short = commit["hash"][:7]
    label = short if commit["name"] in (short, commit["hash"]) else f"{commit['name']} ({short})"
    return label + commit.get("copy", "")


def markdown(result: dict[str, Any]) -> str:
    commits = result["commits"]
    lines = []
    if "cut_short" in result:
        lines.append(f"CUT SHORT: {result['cut_short']}; the tables hold what was measured before.\n")
        if result.get("child_stderr_tail"):
            lines.append("The child's stderr ended with:\n\n```\n" + result["child_stderr_tail"] + "\n```\n")
    m = result["machine"]
    lines.append(f"{result['date']}: {len(result['rounds_done'])} of {result['rounds']} rounds, {result['repeats']} "
                 f"repeats per turn, {result['warmup']} warm-up jobs per size; {m['cpu']}, {m['logical_cores']} "
                 f"logical cores; load average before {result['load_average_before']}, after "
                 f"{result.get('load_average_after')}; {result.get('runtime_s')} s\n")
    for c in commits:
        child = c.get("child", {})
        threads = (f"{child.get('torch_threads', 'no')} torch thread(s)"
                   + (f", {child['cpu_image_threads']} image(s) at once" if "cpu_image_threads" in child else "")
                   if child else "did not start")
        lines.append(f"- `{c['hash']}` {_label(c)}: {c['subject'][:90]} [{threads}]")
    busy = result.get("busy_measurements", 0)
    if busy:
        lines.append(f"\nBUSY: {busy} of {len(result['measurements'])} measurements ran in rounds in which other "
                     f"processes used more than {BUSY_CORES} cores (at most {result['max_other_load_cores']}, over a "
                     f"round's turns at one size); the quiet-rounds tables leave those rounds out.")
    for key, title in (("summary", "every round"), ("summary_quiet", "quiet rounds only")):
        for size, table in result.get(key, {}).items():
            lines.append(f"\n### {size} image(s) per job, {title} (ms per image)\n")
            lines.append(f"| commit | median | min | p25-p75 | ÷ {_label(commits[0])} (medians) | "
                         f"per round ÷, median (min-max) | output |")
            lines.append("|---|---|---|---|---|---|---|")
            digests = result.get("outputs", {}).get(str(size), {})
            first = digests.get("0")
            for row in table:
                c = commits[row["commit"]]
                if not row["values"]:
                    lines.append(f"| {_label(c)} | – | – | – | – | – | – |")
                    continue
                mine = digests.get(str(row["commit"]))
                same = ("–" if mine is None else "baseline" if row["commit"] == 0
                        else "same bytes" if mine == first else "DIFFERENT")
                ratios = (f"{row['ratio_of_medians']:.3f} | {row['round_ratio_median']:.3f} "
                          f"({row['round_ratio_min']:.3f}-{row['round_ratio_max']:.3f})"
                          if "ratio_of_medians" in row else "– | –")
                lines.append(f"| {_label(c)} | {row['median']:.1f} | {row['min']:.1f} | "
                             f"{row['p25']:.1f}-{row['p75']:.1f} | {ratios} | {same} |")
    stages = {size: per_commit for size, per_commit in result.get("stages_ms_per_image", {}).items()
              if any(per_commit.values())}
    if stages:
        lines.append("\n### The handler's stages (`timings_ms` per image, median over every repeat)")
        for size, per_commit in stages.items():
            keys = list(dict.fromkeys(k for s in per_commit.values() for k in s))
            lines.append(f"\n| {size} image(s): commit | " + " | ".join(keys) + " |")
            lines.append("|---|" + "---|" * len(keys))
            for c, s in per_commit.items():
                lines.append(f"| {_label(commits[int(c)])} | " + " | ".join(
                    f"{s[k]:.1f}" if k in s else "–" for k in keys) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The run


def run_ab(args, result: dict[str, Any], tmp: Path, children: list[Child]) -> None:
    """Start the children, then measure round after round, filling ``result`` as it goes."""
    commits = result["commits"]
    jobs = write_jobs(args.sizes, tmp / "jobs")
    for i, c in enumerate(commits):
        tree = tmp / f"tree-{i}"
        extract(c["hash"], tree)
        _log(f"starting {_label(c)} (import and {args.warmup} warm-up job(s) per size)")
        child = Child(_label(c), tree, jobs, args.sizes, args.warmup, args.device, tmp / f"stderr-{i}.txt")
        children.append(child)
        started = time.perf_counter()
        info = child.answer(args.start_timeout)  # one at a time: the warm-ups do not compete
        for package in ("gpu_worker", "kernels"):
            if package in info and Path(info[package]).resolve() != (tree / package).resolve():
                raise ChildFailed(f"{child.label}: imported {package} from {info[package]}, not from {tree}")
        info["start_s"] = round(time.perf_counter() - started, 1)
        c["child"] = info
        _log_end(f"ready in {info['start_s']} s, {info.get('torch_threads', 'no')} torch thread(s)")
    for r in range(args.rounds):
        round_started = time.perf_counter()
        for size in args.sizes:
            order = [(r + k) % len(children) for k in range(len(children))]
            turns = []
            for i in order:
                answer = measure(children[i], size, args.repeats, args.timeout)
                answer.update({"round": r, "commit": i, "position": order.index(i)})
                turns.append(answer)
            # Busy or not is decided over the round's turns at this size together: one turn can be
            # shorter than 0.1 s, a few ticks of the CPU counters.
            load = max(0.0, sum(t["other_cpu_s"] for t in turns)) / sum(t["wall_s"] for t in turns)
            for t in turns:
                t["round_other_load_cores"] = round(load, 2)
                t["busy"] = load > BUSY_CORES
            result["measurements"] += turns  # only whole turns of every commit: a run cut short drops the rest
        result["rounds_done"].append(round(time.perf_counter() - round_started, 1))
        done = [m for m in result["measurements"] if m["round"] == r]
        medians = ", ".join(f"{_label(commits[m['commit']])} n={m['size']}: {statistics.median(m['ms_per_image']):.1f}"
                            for m in done)
        others = max(m["round_other_load_cores"] for m in done)
        _log(f"round {r + 1}/{args.rounds} ({result['rounds_done'][-1]} s): {medians} ms/image; others used "
             f"{others} cores{' BUSY' if others > BUSY_CORES else ''}")
        _log_end("")


def finish(result: dict[str, Any], sizes: list[int], started: float) -> None:
    """The summaries, the outputs' digests and the closing numbers, from the measurements."""
    ms = result["measurements"]
    n = len(result["commits"])
    result["load_average_after"] = load_average()
    result["runtime_s"] = round(time.perf_counter() - started, 1)
    result["summary"] = summarize(ms, n, sizes)
    result["busy_measurements"] = sum(1 for m in ms if m["busy"])
    result["max_other_load_cores"] = max((m["round_other_load_cores"] for m in ms), default=0.0)
    if result["busy_measurements"]:
        result["summary_quiet"] = summarize(ms, n, sizes, quiet_only=True)
    outputs: dict[str, dict[str, str]] = {}
    for m in ms:
        outputs.setdefault(str(m["size"]), {}).setdefault(str(m["commit"]), m["sha256"])
        if m["sha256"] != outputs[str(m["size"])][str(m["commit"])] or m.get("sha256_varies"):
            result.setdefault("outputs_vary_within_commit", []).append({"size": m["size"], "commit": m["commit"]})
    result["outputs"] = outputs
    result["outputs_same"] = {size: len(set(d.values())) == 1 for size, d in outputs.items()}
    result["stages_ms_per_image"] = {
        str(size): {str(c): stage_medians(ms, c, size) for c in range(n)} for size in sizes}


def _numbered(commits: list[dict[str, str]]) -> list[dict[str, str]]:
    """The second and later copies of one commit (an A/A run) told apart: ``copy`` " #2", ..."""
    seen: dict[str, int] = {}
    for c in commits:
        seen[c["hash"]] = seen.get(c["hash"], 0) + 1
        if seen[c["hash"]] > 1:
            c["copy"] = f" #{seen[c['hash']]}"
    return commits


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", end=" ", flush=True, file=sys.stderr)


def _log_end(message: str) -> None:
    print(message, flush=True, file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure commits of the worker in turns on the reference job.")
    parser.add_argument("--commits", required=True, type=lambda s: [c for c in s.split(",") if c],
                        help="two or more commits, the first the baseline: e.g. 8167ccc,HEAD (HEAD,HEAD: an A/A run)")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[1, 16],
                        help="images per job, e.g. 1,16 (default)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds; each runs every commit at every size (8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed jobs per commit, size and round (3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed jobs per size when a child starts (2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="GPU_WORKER_DEVICE for the children "
                        "(default: unset, the worker chooses)")
    parser.add_argument("--timeout", type=float, default=COMMAND_TIMEOUT_S, help="seconds per command (300)")
    parser.add_argument("--start-timeout", type=float, default=START_TIMEOUT_S,
                        help="seconds for a child's import and warm-up (600)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ab.json"), help="the JSON file")
    args = parser.parse_args(argv)
    if len(args.commits) < 2:
        parser.error("--commits: give at least two, comma-separated")
    if min(args.sizes) < 1 or args.rounds < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--sizes, --rounds and --repeats must be at least 1, --warmup at least 0")
    args.sizes = list(dict.fromkeys(args.sizes))

    started = time.perf_counter()
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commits": _numbered([resolve(c) for c in args.commits]),
        "sizes": args.sizes, "rounds": args.rounds, "repeats": args.repeats, "warmup": args.warmup,
        "device": args.device or "unset (the worker chooses)",
        "busy_cores": BUSY_CORES,
        "machine": machine_info(), "versions": versions(), "python": _python(),
        "job": ("benchmarks/peers.py OPERATIONS and OUTPUT on 1920x1080 JPEG q90 photos (benchmarks/images.py), "
                "base64 in"),
        "load_average_before": load_average(),
        "rounds_done": [], "measurements": [],
    }
    signal.signal(signal.SIGTERM, _stop)
    tmp = Path(tempfile.mkdtemp(prefix="gpu-worker-ab-"))
    children: list[Child] = []
    try:
        run_ab(args, result, tmp, children)
    except (Stopped, KeyboardInterrupt, ChildFailed) as exc:
        _log_end("")
        what = {Stopped: f"stopped by {exc}", KeyboardInterrupt: "stopped by Ctrl-C"}.get(type(exc))
        if what is None:  # ChildFailed: its first line says what, the rest is the child's stderr's tail
            what, _, tail = str(exc).partition("\n")
            result["child_stderr_tail"] = tail
        result["cut_short"] = f"{what}, after {time.perf_counter() - started:.0f} s"
    finally:
        for child in children:
            child.close()
        shutil.rmtree(tmp, ignore_errors=True)
    finish(result, args.sizes, started)
    text = markdown(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    print(f"wrote {out} in {result['runtime_s']} s")
    if "cut_short" in result:
        sys.exit(f"the run was cut short: {result['cut_short']}")


if __name__ == "__main__":
    main()
