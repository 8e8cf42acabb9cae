"""Peak resident memory of one job, each job in a fresh interpreter.

    python -m benchmarks.memory_peak [--megapixels 50] [--cases rgb,analysis,rgba,...]
    python -m benchmarks.memory_peak --steps [--megapixels 50]

Writes a photo-like PNG (a real photo scaled up; RGBA with a real alpha plane) of about
``megapixels``, then per case starts a child process (``python -m benchmarks.memory_peak child
<json>``) that warms the worker up on a small image, reads its high-water mark of resident memory
(``ru_maxrss``), runs the job through :class:`gpu_worker.jobs.JobRunner` on the CPU as the worker
does (``use_cpu_cores``) and reads the mark again. The difference is the job's peak extra memory;
it is printed in MB and as a multiple of the decoded pixels' bytes (W x H x C), next to
:data:`gpu_worker.limits.JOB_MEMORY_FACTOR`. ``tests/test_memory_bound.py`` runs the same child.

``--steps`` measures decode, orientation, analysis, each operation and each encoder alone on the
decoded image instead (the high-water mark reset before each step through ``/proc/self/clear_refs``),
as a multiple of the decoded pixels' bytes: a step's result is part of its figure.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import gc
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

#: Cases: (channels of the source, job input beside "image").
CASES: dict[str, tuple[int, dict]] = {
    "rgb": (3, {"operations": [{"type": "resize", "params": {"width": 800}}]}),
    "analysis": (3, {"operations": [{"type": "resize", "params": {"width": 800}}], "analysis": "both"}),
    "rgba": (4, {"operations": [{"type": "resize", "params": {"width": 800}}], "output": {"format": "PNG"}}),
    "rgba-analysis": (4, {"operations": [{"type": "resize", "params": {"width": 800}}],
                          "output": {"format": "PNG"}, "analysis": "both"}),
    "tall-resize": (3, {"operations": [{"type": "resize", "params": {"height": 600}}]}),
    "rgba-upscale": (4, {"operations": [{"type": "crop", "params": {"left": 0, "top": 0, "right": 2000, "bottom": 2000}},
                                        {"type": "resize", "params": {"width": 7000, "filter": "bicubic"}}],
                         "output": {"format": "PNG"}}),
    "nearest": (3, {"operations": [{"type": "resize", "params": {"width": 801, "filter": "nearest"}}]}),
    "crop": (3, {"operations": [{"type": "crop", "params": {"left": 10, "top": 10, "right": 4000, "bottom": 3000}}]}),
    "blur": (3, {"operations": [{"type": "filter", "params": {"name": "blur"}}]}),
    "detail": (3, {"operations": [{"type": "filter", "params": {"name": "detail"}}]}),
    "smooth_more": (4, {"operations": [{"type": "filter", "params": {"name": "smooth_more"}}],
                        "output": {"format": "PNG"}}),
    "sharpen": (3, {"operations": [{"type": "filter", "params": {"name": "sharpen"}}]}),
    "find_edges": (3, {"operations": [{"type": "filter", "params": {"name": "find_edges"}}]}),
    "grayscale": (3, {"operations": [{"type": "filter", "params": {"name": "grayscale"}}]}),
    "adjust": (3, {"operations": [{"type": "adjust", "params": {"brightness": 1.2, "contrast": 1.1,
                                                                "saturation": 0.8}}]}),
    "brightness-contrast": (3, {"operations": [{"type": "adjust", "params": {"brightness": 1.2,
                                                                             "contrast": 1.1}}]}),
    "rgba-adjust": (4, {"operations": [{"type": "adjust", "params": {"brightness": 1.2, "contrast": 1.1,
                                                                     "saturation": 0.8}}],
                        "output": {"format": "PNG"}}),
    "png-out": (3, {"operations": [{"type": "crop", "params": {"left": 0, "top": 0, "right": 3000,
                                                               "bottom": 3000}}], "output": {"format": "PNG"}}),
    "webp-out": (4, {"operations": [{"type": "crop", "params": {"left": 0, "top": 0, "right": 3000,
                                                                "bottom": 3000}}], "output": {"format": "WEBP"}}),
    "jpeg-out-rgba": (4, {"operations": [{"type": "crop", "params": {"left": 0, "top": 0, "right": 3000,
                                                                     "bottom": 3000}}], "output": {"format": "JPEG"}}),
}


def make_png(path: str, size: tuple[int, int], channels: int) -> None:
    """A photo-like PNG of ``size`` (width, height): scikit-image's astronaut scaled up, with its
    camera photo as alpha for 4 channels. Fast zlib level: the file only has to be valid."""
    import skimage.data
    from PIL import Image

    photo = Image.fromarray(skimage.data.astronaut()).resize(size, Image.Resampling.BILINEAR)
    if channels == 4:
        alpha = Image.fromarray(skimage.data.camera()).resize(size, Image.Resampling.BILINEAR)
        photo.putalpha(alpha.point(lambda v: 0 if v < 40 else 255 if v > 215 else v))
    photo.save(path, "PNG", compress_level=1)


def _rss_mark() -> int:
    """The process's high-water mark of resident memory, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _release_free_memory() -> None:
    """Collect garbage and hand the allocator's free pages back to the system (glibc's
    ``malloc_trim``), so memory the next job reuses is counted as it is faulted in again."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _warm_job(job: dict) -> dict:
    """``job`` with sizes that fit a 300x200 image: the same operations otherwise."""
    warm = json.loads(json.dumps(job))
    for op in warm.get("operations", []):
        if op["type"] == "crop":
            op["params"] = {"left": 1, "top": 1, "right": 200, "bottom": 150}
        elif op["type"] == "resize":
            op["params"] = {**op["params"], "width": 150}
    return warm


def child(spec: dict) -> list[dict]:
    """Run each of ``spec["cases"]`` (``name``, ``path`` of the source, ``job``) through a
    :class:`JobRunner` on the CPU, set up as the worker sets itself up; returns each job's peak
    extra RSS over the resident memory before it.

    Every job runs once on a small image first (imports, TorchScript compiles, thread pools).
    With one case the baseline is the high-water mark after that warm-up. With several, before
    each job the free memory goes back to the system and the high-water mark is reset to the
    current RSS (``/proc/self/clear_refs``, Linux 4.0+; ``ru_maxrss`` follows it), so each case
    is measured alone in one process.
    """
    import numpy as np
    import torch
    from PIL import Image

    from gpu_worker.config import Settings
    from gpu_worker.jobs import JobRunner
    from gpu_worker.runtime import use_cpu_cores

    device = torch.device("cpu")
    settings = dataclasses.replace(Settings(), gpu_worker_device="cpu", cache_max_bytes=0,
                                   max_source_bytes=1 << 30, upload_threshold_bytes=1 << 31)
    use_cpu_cores(device)
    runner = JobRunner(settings, device)
    cases = spec["cases"]
    sources: dict[str, tuple[str, int, int]] = {}  # path -> (base64, decoded pixels' bytes, channels)
    for case in cases:
        if case["path"] not in sources:
            with open(case["path"], "rb") as f:
                data = base64.b64encode(f.read()).decode()
            with Image.open(case["path"]) as im:  # the header only: no pixels loaded here
                channels = len(im.getbands())
                sources[case["path"]] = (data, im.width * im.height * channels, channels)
        channels = sources[case["path"]][2]
        ramp = np.add.outer(np.arange(200), np.arange(300)).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(np.repeat(ramp[:, :, None], channels, axis=2).squeeze()).save(buf, "PNG")
        warm = runner.run({**_warm_job(case["job"]), "image": {"base64": base64.b64encode(buf.getvalue()).decode()}})
        assert warm["success"], warm
    results = []
    for case in cases:
        data, pixels_bytes, _ = sources[case["path"]]
        _release_free_memory()
        if len(cases) > 1:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        baseline = _rss_mark()
        started = time.perf_counter()
        response = runner.run({**case["job"], "image": {"base64": data}})
        seconds = time.perf_counter() - started
        peak = _rss_mark()
        results.append({"name": case["name"], "success": response["success"], "error": response.get("error"),
                        "seconds": seconds,
                        "baseline_mb": baseline / 1e6, "peak_mb": peak / 1e6, "extra_mb": (peak - baseline) / 1e6,
                        "pixels_bytes": pixels_bytes, "factor": (peak - baseline) / pixels_bytes})
        del response
    return results


#: Steps :func:`steps_child` measures one by one on the decoded image: (name, work on a
#: ``(1, C, H, W)`` tensor). Operations with their default parameters as the job runner binds them.
def _steps() -> list[tuple[str, object]]:
    from gpu_worker.analysis import analyze
    from gpu_worker.codecs import encode
    from gpu_worker.codecs.decode import apply_orientation
    from kernels import adjust, apply_filter, crop, grayscale, resize

    return [
        ("orientation 6", lambda x: apply_orientation(x[0], 6)),
        ("analysis", lambda x: analyze([x[0]], ["PNG"])),
        ("resize lanczos 800 wide", lambda x: resize(x, (max(1, x.shape[2] * 800 // x.shape[3]), 800))),
        ("resize bicubic 0.9x", lambda x: resize(x, (x.shape[2] * 9 // 10, x.shape[3] * 9 // 10), "bicubic")),
        ("resize nearest 0.9x", lambda x: resize(x, (x.shape[2] * 9 // 10, x.shape[3] * 9 // 10), "nearest")),
        ("crop past the edges", lambda x: crop(x, (-10, -10, x.shape[3] - 10, x.shape[2] - 10))),
        ("filter blur", lambda x: apply_filter(x, "blur")),
        ("filter detail", lambda x: apply_filter(x, "detail")),
        ("filter smooth_more", lambda x: apply_filter(x, "smooth_more")),
        ("filter sharpen", lambda x: apply_filter(x, "sharpen")),
        ("grayscale", lambda x: grayscale(x)),
        ("adjust brightness+contrast", lambda x: adjust(x, 1.2, 1.1)),
        ("adjust all three", lambda x: adjust(x, 1.2, 1.1, 0.8)),
        ("encode JPEG", lambda x: encode(x, "JPEG", 85)),
        ("encode PNG", lambda x: encode(x, "PNG")),
        ("encode WEBP (16383 rows at most)", lambda x: encode(x[:, :, :16383, :16383], "WEBP", 85)),
    ]


def _vm(field: str) -> int:
    """A ``/proc/self/status`` field (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> None:
    """Start the high-water mark VmHWM over from the current RSS (Linux 4.0+)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def steps_child(path: str) -> list[dict]:
    """Peak extra RSS of decode, then of each of :func:`_steps` on the decoded image, one at a time."""
    import torch

    from gpu_worker.codecs import decode, probe

    with open(path, "rb") as f:
        data = f.read()
    info = probe(data)
    for name, work in _steps():  # warm-up on a small image: imports, compiles, weight tables
        work(torch.zeros((1, info.channels, 40, 60), dtype=torch.uint8))
    gc.collect()
    rows = []

    def step(name: str, work):
        gc.collect()
        before = _vm("VmRSS")
        _reset_peak()
        result = work()
        rows.append({"step": name, "extra_mb": (_vm("VmHWM") - before) / 1e6})
        return result

    image = step("decode", lambda: decode(data, "cpu", info)).unsqueeze(0)
    pixels_bytes = image.numel()
    for name, work in _steps():
        step(name, lambda: work(image))
    for row in rows:
        row["factor"] = row["extra_mb"] * 1e6 / pixels_bytes
    return rows


def measure(cases: list[dict], timeout: float = 600) -> list[dict]:
    """Run :func:`child` on ``cases`` (``name``, ``path``, ``job``) in a fresh interpreter."""
    spec = json.dumps({"cases": cases})
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-m", "benchmarks.memory_peak", "child", spec], cwd=root,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"child exited {done.returncode}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return
    if len(sys.argv) > 2 and sys.argv[1] == "steps-child":
        print(json.dumps(steps_child(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, default=50)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--aspect", type=float, default=1.0, help="height / width of the source")
    parser.add_argument("--steps", action="store_true",
                        help="instead of jobs: each step alone on the decoded image (RGB, then RGBA)")
    args = parser.parse_args()
    from gpu_worker.limits import JOB_MEMORY_FACTOR

    width = int((args.megapixels * 1e6 / args.aspect) ** 0.5)
    height = int(width * args.aspect)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        print(f"source {width}x{height}; bound: {JOB_MEMORY_FACTOR} x decoded bytes")
        if args.steps:
            for channels in (3, 4):
                path = os.path.join(tmp, f"source{channels}.png")
                make_png(path, (width, height), channels)
                done = subprocess.run([sys.executable, "-m", "benchmarks.memory_peak", "steps-child", path],
                                      capture_output=True, text=True, check=True)
                for row in json.loads(done.stdout.strip().splitlines()[-1]):
                    print(f"{channels} channels  {row['step']:34s} extra {row['extra_mb']:7.0f} MB = "
                          f"{row['factor']:.2f} x decoded", flush=True)
            return
        for name in args.cases.split(","):
            channels, job = CASES[name]
            if channels not in paths:
                paths[channels] = os.path.join(tmp, f"source{channels}.png")
                make_png(paths[channels], (width, height), channels)
            r = measure([{"name": name, "path": paths[channels], "job": job}])[0]
            print(f"{name:16s} ok={r['success']!s:5s} before {r['baseline_mb']:7.0f} MB  peak {r['peak_mb']:7.0f} MB"
                  f"  extra {r['extra_mb']:7.0f} MB = {r['factor']:.2f} x {r['pixels_bytes'] / 1e6:.0f} MB"
                  + (f"  {r['error']}" if r["error"] else ""), flush=True)


if __name__ == "__main__":
    main()
