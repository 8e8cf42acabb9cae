"""Run the benchmark suite: this worker next to a plain Pillow worker and libvips, in one run.

    python -m benchmarks.run [--quick | --full] [--device auto|cpu|cuda] [--out benchmarks/results]

The reference job: 1920x1080 JPEG photos (base64) -> resize to 800 wide (Lanczos) -> sharpen ->
brightness 1.1 and contrast 1.2 -> JPEG quality 85 (base64 data URI), on batches of 1, 16, 64 and
256 images (``--quick``: 1 and 16; ``--full``: more repeats at 256). Every peer runs in its own
subprocess on the same images (see ``benchmarks/peers.py``); the times are medians of repeats
taken after warm-up runs. Also measured: operations only (the ``Pipeline`` API on tensors already
on the device), decode-only throughput, and each operation alone next to Pillow's.

Writes ``<out>/latest.json``, ``<out>/latest.md`` (the tables) and ``<out>/throughput.png``, and
prints the tables; stopped by SIGTERM or Ctrl-C half way, it writes them with the rows measured so
far, marked as cut short, and exits with status 1. ``--device auto`` runs this project on the CPU,
and on CUDA too when ``torch.cuda.is_available()`` (with each JPEG codec: ``ours-cuda``,
``ours-cuda-libjpeg`` and ``ours-cuda-hybrid``); the peers always run on the CPU.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import io
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from benchmarks import images
from benchmarks.peers import OPERATIONS, OUTPUT

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "pillow"  # the peer the project's target is set against

#: (batch size, warm-up runs, timed repeats, warm up with a 16-image job instead of a full one)
PLANS = {
    "quick": [(1, 2, 7, False), (16, 1, 3, False)],
    "default": [(1, 3, 15, False), (16, 1, 5, False), (64, 1, 3, False), (256, 1, 2, True)],
    "full": [(1, 3, 25, False), (16, 2, 7, False), (64, 1, 5, False), (256, 1, 3, False)],
}
MICRO = {  # (images, warm-up, repeats) for the ops-only, decode-only and per-op tasks
    "quick": {"ops": (16, 1, 2), "decode": (16, 1, 3), "per-op": (4, 1, 2)},
    "default": {"ops": (16, 1, 3), "decode": (16, 1, 5), "per-op": (8, 1, 3)},
    "full": {"ops": (16, 1, 5), "decode": (64, 1, 5), "per-op": (16, 1, 5)},
}
CHILD_TIMEOUT_S = 900
#: A measurement during which other processes used more CPU than this (cores) is taken again once.
BUSY_CORES = 0.25
#: ... unless it took longer than this (seconds).
RETRY_MAX_S = 60


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["CACHE_MAX_BYTES"] = "0"  # no result cache in the worker: every repeat computes
    # 256 results inline are ~20 MB of base64, over the worker's 8 MB inline limit (results that
    # large go to a bucket in production). No bucket here: raise the limit so they come back inline.
    env["UPLOAD_THRESHOLD_BYTES"] = str(1 << 40)
    env.setdefault("RUNPOD_LOG_LEVEL", "ERROR")
    return env


def child(task: str, images_path: Path, env: dict[str, str] | None = None, **options: Any) -> dict[str, Any]:
    """Run ``python -m benchmarks.peers <task>`` in a fresh process (``env``: extra variables) and
    return its JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out_path = f.name
    cmd = [sys.executable, "-m", "benchmarks.peers", task, "--images", str(images_path), "--out", out_path]
    for key, value in options.items():
        if value is True:
            cmd.append(f"--{key.replace('_', '-')}")
        elif value not in (None, False):
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    started = time.perf_counter()
    cpu_before, ours_before = _system_busy(), _own_cpu()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env={**_child_env(), **(env or {})}, capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
        result = json.loads(Path(out_path).read_text())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {CHILD_TIMEOUT_S} s"}
    finally:
        Path(out_path).unlink(missing_ok=True)
    wall = time.perf_counter() - started
    result["process_s"] = round(wall, 2)
    (busy, steal), ours = _system_busy(), _own_cpu()
    # CPU used by everything else on the machine while this child ran, in cores (0 = quiet).
    result["other_load_cores"] = round(max(0.0, (busy - cpu_before[0]) - (ours - ours_before)) / wall, 2)
    result["steal_cores"] = round((steal - cpu_before[1]) / wall, 2)
    return result


def child_quietest(task: str, images_path: Path, attempts: int = 2, **options: Any) -> dict[str, Any]:
    """:func:`child`, run again (up to ``attempts`` in all) while other processes took more than
    BUSY_CORES of CPU during it; the run with the least foreign load is kept."""
    best = None
    for attempt in range(attempts):
        row = child(task, images_path, **options)
        if "error" in row:
            return row
        row["attempts"] = attempt + 1
        if best is None or row["other_load_cores"] < best["other_load_cores"]:
            best = row
        # Long runs are not repeated: on a busy machine they only get longer (see BENCHMARKS.md).
        if row["other_load_cores"] <= BUSY_CORES or row["process_s"] > RETRY_MAX_S or attempt + 1 == attempts:
            break
        print(f"[busy: others used {row['other_load_cores']} cores; again]", end=" ", flush=True, file=sys.stderr)
    return best


def _system_busy() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds stolen by the hypervisor) since boot."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0), getattr(t, "steal", 0.0)


def _own_cpu() -> float:
    """CPU seconds used by this process and its finished children."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# ---------------------------------------------------------------------------------------------
# Environment


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil

    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, Any]:
    import pyvips

    out = {name: _version(dist) for name, dist in (
        ("torch", "torch"), ("torchvision", "torchvision"), ("kornia", "kornia"), ("Pillow", "pillow"),
        ("pyvips", "pyvips"), ("numpy", "numpy"))}
    out["libvips"] = f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"
    from PIL import features

    out["Pillow libjpeg"] = f"{features.version('jpg')} (turbo: {features.check_feature('libjpeg_turbo')})"
    return out


def torch_info() -> dict[str, Any]:
    import torch

    info = {
        "intra_op_threads": torch.get_num_threads(),
        "inter_op_threads": torch.get_num_interop_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if info["cuda_available"]:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# ---------------------------------------------------------------------------------------------
# The suite


class Stopped(Exception):
    """SIGTERM arrived (from ``timeout``, say): stop measuring and write what was measured."""


def _stop(signum: int, frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


def run_suite(args, result: dict[str, Any]) -> None:
    """Run every measurement, filling ``result`` as it goes: when the run is stopped half way,
    ``result`` holds the rows measured so far (see :func:`finish`)."""
    mode = "quick" if args.quick else "full" if args.full else "default"
    tinfo = torch_info()
    devices = {"auto": ["cpu"] + (["cuda"] if tinfo["cuda_available"] else []), "cpu": ["cpu"],
               "cuda": ["cuda"]}[args.device]
    if "cuda" in devices and not tinfo["cuda_available"]:
        raise SystemExit("--device cuda: torch.cuda.is_available() is False on this machine")
    peers = ["pillow", "pillow-threads", "pyvips"] + [f"ours-{d}" for d in devices]
    if "cuda" in devices:  # JPEG encoded (hybrid) or decoded and encoded (libjpeg) on the host
        peers += ["ours-cuda-libjpeg", "ours-cuda-hybrid"]
    plan = PLANS[mode]
    if args.sizes:
        by_size = {n: entry for entry in PLANS["default"] + PLANS[mode] for n in [entry[0]]}
        plan = [by_size.get(n, (n, 1, 3, n > 64)) for n in args.sizes]
    micro = MICRO[mode]
    result.update({
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": mode,
        "machine": machine_info(),
        "versions": versions(),
        "torch": tinfo,
        "vips_concurrency": os.environ.get("VIPS_CONCURRENCY") or f"default ({os.cpu_count()})",
        "job": {"operations": OPERATIONS, "output": OUTPUT,
                "images": "1920x1080 JPEG q90 from scikit-image photos (benchmarks/images.py), base64 in"},
        "load_average_before": load_average(),
        "jobs": [],
    })
    largest = max([n for n, *_ in plan] + [m[0] for m in micro.values()])
    with tempfile.TemporaryDirectory(prefix="gpu-worker-bench-") as tmp:
        images_path = images.save_set(largest, Path(tmp) / "images")
        for n, warmup, repeats, small_warmup in plan:
            for peer in peers:
                _log(f"job  n={n:<4d} {peer:<15s}")
                row = child_quietest("job", images_path, peer=peer, n=n, warmup=warmup, repeats=repeats,
                                     small_warmup=small_warmup)
                row.setdefault("peer", peer)
                row.setdefault("n", n)
                result["jobs"].append(row)
                _log_done(row)
        # Ops only and decode only: the two CPU peers, then ours (or torchvision's decoder) per device.
        for task, key, ours in (("ops", "ops_only", "ours"), ("decode", "decode_only", "torchvision")):
            n, warmup, repeats = micro[task]
            result[key] = []
            for peer, device in [("pillow", "cpu"), ("pyvips", "cpu")] + [(ours, d) for d in devices]:
                _log(f"{task}-only n={n} {peer} {device}")
                row = child_quietest(task, images_path, peer=peer, device=device, n=n, warmup=warmup,
                                     repeats=repeats)
                result[key].append(row)
                _log_done(row)
        n, warmup, repeats = micro["per-op"]
        _log(f"per-op n={n} (CPU)")
        result["per_op_cpu"] = child_quietest("per-op", images_path, n=n, warmup=warmup, repeats=repeats)
        _log_done(result["per_op_cpu"])
        _log("resize at other sizes (CPU, one thread)")
        result["resize_sizes"] = child_quietest("resize-sizes", images_path, warmup=warmup, repeats=repeats)
        _log_done(result["resize_sizes"])
        if args.contention:
            contention_started = time.perf_counter()
            result["contention"] = contention(images_path, devices)
            result["contention_s"] = round(time.perf_counter() - contention_started, 1)


def finish(result: dict[str, Any], started: float) -> None:
    """Add the run's closing numbers and the comparisons between peers to ``result``."""
    result["load_average_after"] = load_average()
    result["runtime_s"] = round(time.perf_counter() - started, 1)
    _add_comparisons(result)


#: (label, peer, extra environment) measured with one core kept busy by another process.
CONTENTION_RUNS = (
    ("pillow", "pillow", {}),
    ("pyvips", "pyvips", {}),
    ("ours-cpu (the default: 2 images at once, 1 torch thread each)", "ours-cpu", {}),
    ("ours-cpu, 1 image at a time on 2 torch threads (CPU_THREADS=1)", "ours-cpu",
     {"CPU_THREADS": "1", "BENCH_TORCH_THREADS": "2"}),
)


def contention(images_path: Path, devices: list[str]) -> list[dict[str, Any]]:
    """The 16-image job while another process spins on one core (a co-tenant, or a second job of
    this worker): the same job, quiet and busy, per peer."""
    if "cpu" not in devices:
        return []
    rows = []
    for label, peer, env in CONTENTION_RUNS:
        _log(f"contention n=16 {label}: quiet")
        quiet = child("job", images_path, env=env, peer=peer, n=16, warmup=1, repeats=3)
        _log_done(quiet)
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            _log(f"contention n=16 {label}: one core busy")
            busy = child("job", images_path, env=env, peer=peer, n=16, warmup=1, repeats=3)
            _log_done(busy)
        finally:
            spinner.kill()
            spinner.wait()
        row = {"label": label, "peer": peer, "env": env}
        for name, run in (("quiet", quiet), ("busy", busy)):
            run.pop("first_output", None)
            row[name] = run
        if "error" not in quiet and "error" not in busy:
            row["slowdown"] = round(busy["median_s"] / quiet["median_s"], 2)
        rows.append(row)
    return rows


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", end=" ", flush=True, file=sys.stderr)


def _log_done(row: dict[str, Any]) -> None:
    if "error" in row:
        print(f"ERROR {row['error']}", file=sys.stderr, flush=True)
    else:
        what = f"{row['ms_per_image']:.1f} ms/image" if "ms_per_image" in row else "done"
        print(f"{what} ({row.get('process_s', 0):.0f} s, others used {row.get('other_load_cores', 0):.2f} cores)",
              file=sys.stderr, flush=True)


def _pixels(b64: str):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")).astype(np.int16)


def _add_comparisons(result: dict[str, Any]) -> None:
    """Per batch size: ratios of our throughput to each peer's, and each output's difference from
    the Pillow worker's output for the same (first) image."""
    by_n: dict[int, dict[str, dict]] = {}
    for row in result["jobs"]:
        if "error" not in row:
            by_n.setdefault(row["n"], {})[row["peer"]] = row
    result["ratios"] = {}
    for n, rows in by_n.items():
        reference = rows.get(BASELINE, {}).get("first_output")
        for peer, row in rows.items():
            output = row.pop("first_output", None)
            if reference and output:
                a, b = _pixels(reference), _pixels(output)
                if a.shape == b.shape:
                    diff = abs(a - b)
                    row["vs_pillow_output"] = {"max_abs": int(diff.max()), "mean_abs": round(float(diff.mean()), 3)}
                else:
                    row["vs_pillow_output"] = {"shape": list(b.shape)}
        for ours in [p for p in rows if p.startswith("ours-")]:
            result["ratios"].setdefault(ours, {})[str(n)] = {
                f"vs {peer}": round(rows[ours]["images_per_s"] / row["images_per_s"], 3)
                for peer, row in rows.items() if peer != ours
            }


# ---------------------------------------------------------------------------------------------
# Tables


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def tables(result: dict[str, Any]) -> str:
    lines = []
    ours_peers = sorted({r["peer"] for r in result["jobs"] if r["peer"].startswith("ours-")})
    lines.append("### Reference job, side by side\n")
    lines.append("resize to 800 wide (Lanczos) -> sharpen -> brightness 1.1, contrast 1.2 -> JPEG q85; "
                 "1920x1080 JPEG q90 inputs as base64, data URIs out. Median of the repeats after warm-up.\n")
    head = ["batch", "peer", "images/s", "ms/image", "repeats", "peak RSS MB"]
    head += [f"{o} speed ÷ this" for o in ours_peers] + ["vs Pillow output (max/mean abs)", "peak GPU MB",
                                                         "other load (cores)"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    by_n: dict[int, list] = {}
    for row in result["jobs"]:
        by_n.setdefault(row["n"], []).append(row)
    for n in sorted(by_n):
        rows = {r["peer"]: r for r in by_n[n]}
        for row in by_n[n]:
            if "error" in row:
                lines.append(f"| {n} | {row['peer']} | error: {row['error'][:80]} |" + " |" * (len(head) - 3))
                continue
            ratios = []
            for ours in ours_peers:
                mine = rows.get(ours)
                if mine is None or "error" in mine or ours == row["peer"]:
                    ratios.append("—")
                else:
                    ratios.append(f"{mine['images_per_s'] / row['images_per_s']:.2f}x")
            diff = row.get("vs_pillow_output", {})
            diff_s = f"{diff['max_abs']} / {diff['mean_abs']:.2f}" if "max_abs" in diff else "—"
            warm = f"{row['repeats']}" + (" (16-img warm-up)" if row.get("small_warmup") else "")
            lines.append("| " + " | ".join([str(n), row["peer"], _fmt(row["images_per_s"]), _fmt(row["ms_per_image"]),
                                            warm, _fmt(row.get("peak_rss_mb"), 0), *ratios, diff_s,
                                            _fmt(row.get("peak_gpu_mb"), 0), _fmt(row.get("other_load_cores"), 2)])
                         + " |")

    lines.append("\n### Our handler's stages (ms per image; the response's `timings_ms` / batch size)\n")
    lines.append("A batch job's next chunk decodes, and the previous chunk's host encodes run, beside the current "
                 "chunk's operations, so the stages can add up to more than the total: \"total - stages\" is then negative, the time the overlap saved.\n")
    stages = ["fetch", "decode", "ops", "encode", "upload"]
    lines.append("| batch | device | " + " | ".join(stages) + " | total - stages | total | ops share |")
    lines.append("|" + "---|" * (len(stages) + 5))
    for row in result["jobs"]:
        timings = row.get("timings_ms")
        if not timings:
            continue
        n = row["n"]
        known = sum(timings.get(s, 0.0) for s in stages)
        cells = [_fmt(timings.get(s, 0.0) / n, 2) for s in stages]
        other = (timings["total"] - known) / n
        share = timings.get("ops", 0.0) / timings["total"] * 100
        lines.append(f"| {n} | {row['peer'][5:]} | " + " | ".join(cells)
                     + f" | {other:.2f} | {timings['total'] / n:.2f} | {share:.0f}% |")

    lines.append("\n### Operations only (no codecs), 16 decoded 1080p images\n")
    lines.append("Ours: `Pipeline(operations)(batch)` on a `(16, 3, 1080, 1920)` uint8 tensor already on the device. "
                 "Pillow: `gpu_worker.operations.apply_reference` on decoded PIL images. pyvips: the same calls on memory images.\n")
    _table(lines, ["peer", "images/s", "ms/image", "peak GPU MB"], result.get("ops_only", []),
           lambda row: f"| {row['peer']} | {_fmt(row['images_per_s'])} | {_fmt(row['ms_per_image'])} | "
                       f"{_fmt(row.get('peak_gpu_mb'), 0)} |")

    lines.append("\n### Decode only: 1920x1080 JPEG q90\n")
    _table(lines, ["decoder", "how", "images/s", "ms/image"], result.get("decode_only", []),
           lambda row: f"| {row['peer']} | {row['how']} | {_fmt(row['images_per_s'])} | {_fmt(row['ms_per_image'])} |")

    if result.get("contention"):
        lines.append("\n### 16-image job with one core kept busy by another process (`--contention`)\n")
        lines.append("| peer | quiet ms/image | one core busy ms/image | slowdown |")
        lines.append("|---|---|---|---|")
        for row in result["contention"]:
            q, b = row["quiet"], row["busy"]
            lines.append(f"| {row['label']} | {_fmt(q.get('ms_per_image'))} | {_fmt(b.get('ms_per_image'))} | "
                         f"{_fmt(row.get('slowdown'), 2)}x |")

    per_op = result.get("per_op_cpu", {})
    k = per_op.get("n", "?")
    lines.append(f"\n### Where the time goes, CPU: ms per image, ours on a batch of {k} and on the {k} images "
                 "one at a time, Pillow one at a time\n")
    lines.append("Inputs laid out as the handler lays them out (decoded, then stacked). \"alone\": one operation on "
                 "the 1080p source; \"in the job\": each step of the reference chain, timed on the bound plan.\n")
    _table(lines, ["step", "ours, batch", "ours, 1 at a time", "Pillow", "Pillow time ÷ ours (batch)"], [per_op],
           lambda row: f"| {row['op']} | {_fmt(row['ours_batch_ms'], 2)} | {_fmt(row['ours_single_ms'], 2)} | "
                       f"{_fmt(row['pillow_ms'], 2)} | {row['pillow_over_ours']:.2f}x |")

    lines.append("\n### Resize at other sizes, CPU, one image on one core each (ms)\n")
    _table(lines, ["resize", "ours", "Pillow", "Pillow time ÷ ours", "same pixels"], [result.get("resize_sizes", {})],
           lambda row: f"| {row['case']} | {_fmt(row['ours_ms'], 2)} | {_fmt(row['pillow_ms'], 2)} | "
                       f"{row['pillow_ms'] / row['ours_ms']:.2f}x | {'yes' if row['bit_exact'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def _table(lines: list[str], columns: list[str], entries: list[dict[str, Any]],
           render: Callable[[dict[str, Any]], str]) -> None:
    """Append a markdown table to ``lines``: the header, then each entry's ``rows`` through
    ``render``, or one error row for an entry (a child process) that failed."""
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for entry in entries:
        if "error" in entry:
            lines.append(f"| error: {entry['error'][:80]} |" + " |" * (len(columns) - 1))
        lines.extend(render(row) for row in entry.get("rows", []))


def header(result: dict[str, Any]) -> str:
    m, v, t = result["machine"], result["versions"], result["torch"]
    rows = (result["jobs"] + result.get("ops_only", []) + result.get("decode_only", [])
            + [result.get("per_op_cpu", {}), result.get("resize_sizes", {})])
    busiest = max((r.get("other_load_cores", 0.0) for r in rows), default=0.0)
    warning = (f"WARNING: other processes used up to {busiest} cores during some measurements (see the 'other "
               f"load' column): those numbers are noisy; rerun on a quiet machine.\n") if busiest > BUSY_CORES else ""
    extra = f", of which --contention {result['contention_s']} s" if "contention_s" in result else ""
    ours = next((r for r in result["jobs"] if r.get("peer") == "ours-cpu" and "torch_threads" in r), None)
    policy = (f"; ours-cpu worked on {ours.get('cpu_image_threads', 1)} image(s) at once, "
              f"{ours['torch_threads']} torch thread(s) each") if ours else ""
    if "cut_short" in result:
        warning += f"CUT SHORT: this run was {result['cut_short']}; the tables hold what was measured before.\n"
    return warning + (f"{result['date']} ({result['mode']} run, {result['runtime_s']} s{extra}); {m['cpu']}, "
            f"{m['logical_cores']} logical cores, {m['ram_gb']} GB RAM; load average before "
            f"{result['load_average_before']}, after {result['load_average_after']}\n"
            f"torch {v['torch']} ({t['intra_op_threads']} intra-op threads), torchvision {v['torchvision']}, "
            f"kornia {v['kornia']}, Pillow {v['Pillow']} (libjpeg {v['Pillow libjpeg']}), pyvips {v['pyvips']} "
            f"(libvips {v['libvips']}, concurrency {result['vips_concurrency']}), numpy {v['numpy']}; "
            f"CUDA: {t.get('gpu', 'not available')}{policy}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark the worker against Pillow and libvips.")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true", help="batches of 1 and 16 only, fewer repeats (~1 min)")
    speed.add_argument("--full", action="store_true", help="more repeats, full warm-up at 256 (slow on 2 cores)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where this project runs (peers are CPU libraries); auto: CPU, and CUDA if present")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the results")
    parser.add_argument("--contention", action="store_true",
                        help="also run the 16-image job with one core kept busy by another process (~2 min)")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")],
                        help="batch sizes to run instead of the mode's, e.g. 1,16")
    args = parser.parse_args(argv)

    result: dict[str, Any] = {}
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _stop)
    try:
        run_suite(args, result)
    except (Stopped, KeyboardInterrupt) as exc:
        if not result.get("jobs"):
            raise
        result["cut_short"] = f"stopped by {str(exc) or 'Ctrl-C'} after {time.perf_counter() - started:.0f} s"
    finish(result, started)
    text = header(result) + "\n" + tables(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "latest.md").write_text(text)
    try:
        from benchmarks.plot import plot

        plot(result, out / "throughput.png")
    except Exception as exc:  # noqa: BLE001 - the numbers matter more than the picture
        print(f"plot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(text)
    print(f"wrote {out / 'latest.json'}, {out / 'latest.md'}, {out / 'throughput.png'} in {result['runtime_s']} s")
    if "cut_short" in result:
        sys.exit(f"the run was {result['cut_short']}: the tables hold what was measured before")


if __name__ == "__main__":
    main()
