"""The peers of the benchmark, and the measurements that run in a subprocess each.

Every peer does the same work on the same images, from job JSON to response: base64 JPEG in,
decode, the reference operations, JPEG encode, base64 data URI out.

================  ===========================================================================
peer              what it runs
================  ===========================================================================
pillow            the tutorial's Pillow worker (``benchmarks.pillow_reference.process_bytes``),
                  one image after another, as the tutorial does (one core)
pillow-threads    the same function on a thread pool of ``os.cpu_count()`` threads (Pillow
                  releases the GIL in decode, resize, filter and encode): what a plain Pillow
                  worker gets from every core. Not the tutorial; shown for context
pyvips            libvips with the closest operations: ``resize(kernel="lanczos3")``, a 3x3
                  integer ``conv`` with Pillow's SHARPEN kernel, one ``linear()`` for
                  brightness and contrast (about the image's mean luma, as Pillow's Contrast),
                  ``jpegsave_buffer(Q=85)``; one image after another, libvips' own threads
                  (``VIPS_CONCURRENCY``, default: the core count) inside each
ours-<device>     this project: one batch job through ``gpu_worker.handler.run_sync``, result
                  cache off, on the given device
ours-cuda-libjpeg the same on CUDA with CUDA_JPEG_CODEC=libjpeg (JPEG on host threads)
ours-cuda-hybrid  the same on CUDA with CUDA_JPEG_CODEC=hybrid (nvjpeg decodes, host threads encode)
================  ===========================================================================

Each measurement runs in a fresh Python process (``python -m benchmarks.peers TASK ...``), so
its peak resident memory (``ru_maxrss``) is its own, and no library's threads or caches are
warmed by another peer. The pyvips process never imports torch; the Pillow processes do, since
the Pillow calls they make are the operation registry's references (``gpu_worker.operations``,
whose modules import the kernels): their peak memory includes torch's libraries (about 0.5 GB),
which the Pillow worker itself would not load. The process writes
one JSON object to ``--out``.

Tasks: ``job`` (one peer on ``n`` images: warm-ups, then timed repeats), ``ops`` (operations
only, on images already decoded and, for us, already on the device), ``decode`` (decode-only
throughput), ``per-op`` (each operation alone, ours next to Pillow's, to find hotspots).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import resource
import statistics
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

#: The reference job's operations and output, as the job JSON spells them.
OPERATIONS: list[dict[str, Any]] = [
    {"type": "resize", "params": {"width": 800, "filter": "lanczos"}},
    {"type": "filter", "params": {"name": "sharpen"}},
    {"type": "adjust", "params": {"brightness": 1.1, "contrast": 1.2}},
]
OUTPUT = {"format": "JPEG", "quality": 85}
OUT_WIDTH, OUT_HEIGHT = 800, 450  # 1920x1080 -> 800 wide: Pillow's int(1080 * 800 / 1920)

#: Pillow's ImageFilter.SHARPEN: size 3, scale 16, offset 0.
SHARPEN = ((-2, -2, -2), (-2, 32, -2), (-2, -2, -2))
SHARPEN_SCALE = 16

JOB_PEERS = ("pillow", "pillow-threads", "pyvips", "ours-cpu", "ours-cuda", "ours-cuda-libjpeg", "ours-cuda-hybrid")


def _quiet_torchvision() -> None:
    # torchvision 0.29 marks its image I/O deprecated in favour of TorchCodec; the worker keeps to
    # torchvision.io by design (GUIDE.md), so this one warning is expected and silenced here.
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                            category=DeprecationWarning)


def data_uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def from_data_uri(uri: str) -> bytes:
    return base64.b64decode(uri.split(",", 1)[1])


# ---------------------------------------------------------------------------------------------
# Peers: each is ``run(list of data URIs) -> (list of result data URIs, extra dict)``


def pillow_peer(threads: int = 1) -> Callable:
    from benchmarks.pillow_reference import process_bytes

    def one(uri: str) -> str:
        return data_uri(process_bytes(from_data_uri(uri), OPERATIONS, OUTPUT["format"], OUTPUT["quality"]))

    if threads <= 1:
        return lambda uris: ([one(u) for u in uris], {})
    pool = ThreadPoolExecutor(max_workers=threads)
    return lambda uris: (list(pool.map(one, uris)), {})


def pyvips_peer() -> Callable:
    import pyvips

    pyvips.cache_set_max(0)  # no operation cache: every repeat decodes and computes again
    kernel = pyvips.Image.new_from_array([list(row) for row in SHARPEN], scale=SHARPEN_SCALE)
    brightness, contrast = 1.1, 1.2

    def one(uri: str) -> str:
        image = pyvips.Image.new_from_buffer(from_data_uri(uri), "", access="sequential")
        image = image.resize(OUT_WIDTH / image.width, vscale=OUT_HEIGHT / image.height, kernel="lanczos3")
        # Pillow's SHARPEN: integer 3x3 convolution, divided by 16, rounded. libvips extends the
        # edges where Pillow copies the outer pixel ring: a 1 px difference at the border.
        image = image.conv(kernel, precision="integer").copy_memory()  # 800x450: 1 MB
        # Pillow's Brightness scales by b; its Contrast blends with the mean luma m of the
        # brightened image: out = m + c * (b * x - m). As one linear(): a = b * c, k = m * (1 - c),
        # with m taken as b times the mean luma (ITU-R 601, Pillow's convert("L")) of the
        # sharpened image. Pillow rounds to 8 bits between the two steps; this does not.
        stats = image.stats()
        luma = 0.299 * stats(4, 1)[0] + 0.587 * stats(4, 2)[0] + 0.114 * stats(4, 3)[0]
        mean = brightness * luma
        image = image.linear(brightness * contrast, mean * (1 - contrast)).cast("uchar")  # cast clips
        return data_uri(image.jpegsave_buffer(Q=OUTPUT["quality"]))

    return lambda uris: ([one(u) for u in uris], {})


def ours_peer(device: str, jpeg_codec: str = "nvjpeg") -> Callable:
    """This project through its RunPod handler: one batch job (or a single job for one image)."""
    os.environ["GPU_WORKER_DEVICE"] = device
    os.environ["CUDA_JPEG_CODEC"] = jpeg_codec
    os.environ["CACHE_MAX_BYTES"] = "0"  # no result cache: every repeat computes again
    os.environ.setdefault("RUNPOD_LOG_LEVEL", "ERROR")
    _quiet_torchvision()
    from gpu_worker.handler import run_sync
    from gpu_worker.runtime import get_runtime

    get_runtime()  # built now, with the worker's CPU set-up, as `python -m gpu_worker` has it
    if os.environ.get("BENCH_TORCH_THREADS"):  # to compare with torch's own threads (--contention)
        import torch

        torch.set_num_threads(int(os.environ["BENCH_TORCH_THREADS"]))

    counter = iter(range(1 << 30))

    def run(uris: list[str]) -> tuple[list[str], dict]:
        if len(uris) == 1:  # a single-image job: the input's root holds the image
            job_input = {"image": {"base64": uris[0]}, "operations": OPERATIONS, "output": OUTPUT}
        else:  # a batch job: operations and output given once, as the batch's defaults
            job_input = {"images": [{"image": {"base64": u}} for u in uris], "operations": OPERATIONS,
                         "output": OUTPUT}
        response = run_sync({"id": f"bench-{next(counter)}", "input": job_input})
        if not response.get("success"):
            raise RuntimeError(f"handler failed: {response.get('error')}")
        results = response["results"] if len(uris) > 1 else [response]
        failed = [r.get("error") for r in results if not r.get("success")]
        if failed:
            raise RuntimeError(f"{len(failed)} item(s) failed, first: {failed[0]}")
        if any(r["metadata"].get("cached") for r in results):
            raise RuntimeError("a result came from the cache; the benchmark must compute every image")
        return [r["processed_image"] for r in results], {"timings_ms": response["metadata"]["timings_ms"]}

    return run


def make_peer(name: str) -> Callable:
    if name == "pillow":
        return pillow_peer(1)
    if name == "pillow-threads":
        return pillow_peer(os.cpu_count() or 1)
    if name == "pyvips":
        return pyvips_peer()
    if name in ("ours-cuda-libjpeg", "ours-cuda-hybrid"):
        return ours_peer("cuda", name.rsplit("-", 1)[1])
    if name.startswith("ours-"):
        return ours_peer(name.split("-", 1)[1])
    raise ValueError(f"unknown peer {name!r}; known: {', '.join(JOB_PEERS)}")


# ---------------------------------------------------------------------------------------------
# Measuring


def rss_mb() -> float:
    """Resident memory now (MB)."""
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB).

    Linux's ``VmHWM`` (high-water mark of the resident set) belongs to the process image and starts
    again at ``exec``; ``ru_maxrss`` does not (it keeps the parent's peak across fork + exec), so it
    is only the fallback where /proc is missing.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def timed(work: Callable[[], Any], repeats: int, warmup: int, sync: Callable[[], None] = lambda: None,
          keep: Callable[[Any], Any] = lambda result: None) -> tuple[list[float], list[Any]]:
    """Run ``work`` ``warmup`` times untimed, then ``repeats`` times timed.

    Returns the wall seconds of each timed run and ``keep(result)`` of each (the last result in
    full as the last entry). Results are not held beyond that: holding every decoded batch made
    later repeats slower (fresh memory costs page faults, and more of it as the process grows).
    """
    for _ in range(warmup):
        work()
    sync()
    times, kept, result = [], [], None
    for _ in range(repeats):
        result = None  # let the previous result go before the next run allocates its own
        started = time.perf_counter()
        result = work()
        sync()
        times.append(time.perf_counter() - started)
        kept.append(keep(result))
    kept[-1] = result
    return times, kept


def pillow_decode_all(datas: list[bytes]) -> list:
    """Decode every JPEG with Pillow, keeping the images (as decode_jpeg does: both pay for fresh
    memory)."""
    from PIL import Image

    out = []
    for d in datas:
        with Image.open(io.BytesIO(d)) as im:
            im.load()
            out.append(im)
    return out


def summary(times: list[float], images: int) -> dict[str, Any]:
    median = statistics.median(times)
    return {
        "repeats": len(times),
        "times_s": [round(t, 5) for t in times],
        "median_s": round(median, 5),
        "min_s": round(min(times), 5),
        "images_per_s": round(images / median, 3),
        "ms_per_image": round(median * 1000 / images, 3),
    }


def _median_timings(extras: list[dict]) -> dict[str, float] | None:
    """Per-stage median of the handler's ``timings_ms`` over the repeats."""
    runs = [e["timings_ms"] for e in extras if "timings_ms" in e]
    if not runs:
        return None
    return {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}


def task_job(args) -> dict[str, Any]:
    """One peer on ``n`` images: ``warmup`` untimed jobs (a 16-image one when ``small_warmup``)."""
    from benchmarks.images import load_set

    datas = load_set(args.images, args.n)
    uris = [data_uri(d) for d in datas]
    run = make_peer(args.peer)
    base = rss_mb()  # after the imports and the inputs, before any image is processed
    cuda = args.peer.startswith("ours-cuda")
    if cuda:
        import torch

        sync = torch.cuda.synchronize
    else:
        sync = lambda: None  # noqa: E731
    if args.small_warmup:  # a big job is warmed up by a 16-image one (same shapes, same kernels)
        for _ in range(max(1, args.warmup)):
            run(uris[:16])
        warmup = 0
    else:
        warmup = args.warmup
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, results = timed(lambda: run(uris), args.repeats, warmup, sync, keep=lambda r: (None, r[1]))
    out = {"task": "job", "peer": args.peer, "n": args.n, "warmup": args.warmup,
           "small_warmup": bool(args.small_warmup), **summary(times, args.n)}
    outputs, _ = results[-1]
    if len(outputs) != args.n:
        raise RuntimeError(f"{args.peer} returned {len(outputs)} results for {args.n} images")
    out["first_output"] = outputs[0].split(",", 1)[1]  # compared with Pillow's by the parent
    timings = _median_timings([extra for _, extra in results])
    if timings:
        out["timings_ms"] = timings
    out["base_rss_mb"] = round(base, 1)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if cuda:
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 1e6, 1)
    if args.peer.startswith("ours-"):
        import torch

        from gpu_worker.runtime import get_runtime

        out["torch_threads"] = torch.get_num_threads()
        out["cpu_image_threads"] = get_runtime().runner.policy.pool.threads
    return out


# --- operations only --------------------------------------------------------------------------


def task_ops(args) -> dict[str, Any]:
    """The reference operations without codecs: ours on a (B, 3, 1080, 1920) tensor already on the
    device (the ``Pipeline`` API), Pillow and pyvips on images already decoded in memory."""
    import numpy as np
    from PIL import Image

    from benchmarks.images import load_set

    datas = load_set(args.images, args.n)
    pils = [Image.open(io.BytesIO(d)).convert("RGB") for d in datas]
    rows = []

    if args.peer == "pillow":
        from gpu_worker.operations import apply_reference

        times, _ = timed(lambda: [apply_reference(im, OPERATIONS) for im in pils], args.repeats, args.warmup)
        rows.append({"peer": "pillow", **summary(times, args.n)})
    elif args.peer == "pyvips":
        import pyvips

        pyvips.cache_set_max(0)
        arrays = [np.asarray(im) for im in pils]
        kernel = pyvips.Image.new_from_array([list(r) for r in SHARPEN], scale=SHARPEN_SCALE)

        def one(a):
            image = pyvips.Image.new_from_memory(a.tobytes(), a.shape[1], a.shape[0], 3, "uchar")
            image = image.resize(OUT_WIDTH / image.width, vscale=OUT_HEIGHT / image.height, kernel="lanczos3")
            image = image.conv(kernel, precision="integer").copy_memory()
            stats = image.stats()
            mean = 1.1 * (0.299 * stats(4, 1)[0] + 0.587 * stats(4, 2)[0] + 0.114 * stats(4, 3)[0])
            return image.linear(1.1 * 1.2, mean * (1 - 1.2)).cast("uchar").write_to_memory()

        times, _ = timed(lambda: [one(a) for a in arrays], args.repeats, args.warmup)
        rows.append({"peer": "pyvips", **summary(times, args.n)})
    else:
        import torch

        _quiet_torchvision()
        from gpu_worker import Pipeline

        device = torch.device(args.device)
        batch = torch.stack([torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1) for im in pils]).to(device)
        pipe = Pipeline(OPERATIONS, device=device)
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times, results = timed(lambda: pipe(batch), args.repeats, args.warmup, sync)
        assert tuple(results[-1].shape) == (args.n, 3, OUT_HEIGHT, OUT_WIDTH), results[-1].shape
        row = {"peer": f"ours-{device.type}", **summary(times, args.n), "torch_threads": torch.get_num_threads()}
        if device.type == "cuda":
            row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 1e6, 1)
        rows.append(row)
    return {"task": "ops", "n": args.n, "rows": rows, "peak_rss_mb": round(peak_rss_mb(), 1)}


# --- decode only ------------------------------------------------------------------------------


def task_decode(args) -> dict[str, Any]:
    """JPEG decode throughput: Pillow and pyvips one by one, torchvision's batched decode_jpeg."""
    from benchmarks.images import load_set

    datas = load_set(args.images, args.n)
    rows = []
    if args.peer == "pillow":
        times, _ = timed(lambda: pillow_decode_all(datas), args.repeats, args.warmup)
        rows.append({"peer": "pillow", "how": "Image.open + load, one by one", **summary(times, args.n)})
    elif args.peer == "pyvips":
        import pyvips

        pyvips.cache_set_max(0)
        times, _ = timed(lambda: [pyvips.Image.new_from_buffer(d, "").write_to_memory() for d in datas],
                         args.repeats, args.warmup)
        rows.append({"peer": "pyvips", "how": "new_from_buffer + write_to_memory, one by one",
                     **summary(times, args.n)})
    else:
        import torch

        _quiet_torchvision()
        import torchvision.io as tvio

        device = torch.device(args.device)
        tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        times, _ = timed(lambda: tvio.decode_jpeg(tensors, device=device), args.repeats, args.warmup, sync)
        rows.append({"peer": f"torchvision-{device.type}",
                     "how": f"decode_jpeg(list of {args.n}, device={device.type})",
                     **summary(times, args.n), "torch_threads": torch.get_num_threads()})
        if device.type == "cpu":  # and through the worker's own decode stage (probe + checks)
            from gpu_worker.codecs import decode_batch, probe

            infos = [probe(d) for d in datas]
            times, _ = timed(lambda: decode_batch(datas, device, infos), args.repeats, args.warmup, sync)
            rows.append({"peer": "ours-cpu", "how": "gpu_worker.codecs.decode_batch", **summary(times, args.n)})
    return {"task": "decode", "n": args.n, "rows": rows, "peak_rss_mb": round(peak_rss_mb(), 1)}


# --- each operation alone ---------------------------------------------------------------------

#: The operations timed alone on the 1080p sources (the job's input size).
PER_OP = (
    ("resize 1920x1080->800x450 (lanczos)", OPERATIONS[0]),
    ("sharpen @1080p", OPERATIONS[1]),
    ("adjust b1.1 c1.2 @1080p", OPERATIONS[2]),
)
CHAIN_LABELS = ("resize (in the job)", "sharpen @800x450 (in the job)", "adjust @800x450 (in the job)")


def task_per_op(args) -> dict[str, Any]:
    """Where the time goes, ours (CPU) next to Pillow, per image.

    Inputs are laid out exactly as the handler lays them out: decoded by ``decode_batch`` (a
    permuted HWC buffer per image), stacked with ``torch.stack`` for a batch, ``unsqueeze(0)`` for
    one image. Rows: each operation alone on 1080p; each step of the reference chain where it runs
    in the job (sharpen and adjust on the resized 800x450 image), timed step by step on the bound
    plan; and the JPEG codecs. Ours is timed on a batch of ``n`` and on the ``n`` images one at a
    time; Pillow one at a time.
    """
    import torch
    from PIL import Image

    _quiet_torchvision()
    import torchvision.io as tvio

    from benchmarks.images import load_set
    from gpu_worker.operations import apply_reference
    from gpu_worker import Pipeline
    from gpu_worker.codecs import decode_batch, encode, probe

    n = args.n
    datas = load_set(args.images, n)
    decoded = decode_batch(datas, "cpu", [probe(d) for d in datas])
    batch = torch.stack(decoded)
    singles = [image.unsqueeze(0) for image in decoded]
    pils = []
    for d in datas:
        with Image.open(io.BytesIO(d)) as im:
            pils.append(im.convert("RGB"))
    rows = []

    def median_per_image(work: Callable[[], Any]) -> float:
        times, _ = timed(work, args.repeats, args.warmup)
        return statistics.median(times) / n

    for label, op in PER_OP:
        pipe = Pipeline([op], device="cpu")
        rows.append(_op_row(label, median_per_image(lambda: pipe(batch)),
                            median_per_image(lambda: [pipe(x) for x in singles]),
                            median_per_image(lambda: [apply_reference(im, [op]) for im in pils])))

    # The reference chain, step by step: our bound plan's kernels, and Pillow's calls in order.
    steps = Pipeline(OPERATIONS, device="cpu").plan.bind(tuple(batch.shape[1:])).steps

    def ours_chain(inputs: list[torch.Tensor]) -> list[float]:
        spent = [0.0] * len(steps)
        for x in inputs:
            for k, step in enumerate(steps):
                started = time.perf_counter()
                x = step.kernel(x)
                spent[k] += time.perf_counter() - started
        return spent

    def pillow_chain() -> list[float]:
        spent = [0.0] * len(OPERATIONS)
        for im in pils:
            for k, op in enumerate(OPERATIONS):
                started = time.perf_counter()
                im = apply_reference(im, [op])
                spent[k] += time.perf_counter() - started
        return spent

    def per_step(work: Callable[[], list[float]]) -> list[float]:
        _, results = timed(work, args.repeats, args.warmup, keep=lambda r: r)
        return [statistics.median(r[k] for r in results) / n for k in range(len(results[0]))]

    chain_batch, chain_single, chain_pillow = per_step(lambda: ours_chain([batch])), \
        per_step(lambda: ours_chain(singles)), per_step(pillow_chain)
    for k, label in enumerate(CHAIN_LABELS):
        rows.append(_op_row(label, chain_batch[k], chain_single[k], chain_pillow[k]))

    # Codecs at the job's sizes: decode 1080p JPEG q90, encode 800x450 JPEG q85.
    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]

    rows.append(_op_row("decode JPEG 1080p (torchvision vs Pillow)",
                        median_per_image(lambda: tvio.decode_jpeg(tensors)),
                        median_per_image(lambda: [tvio.decode_jpeg(t) for t in tensors]),
                        median_per_image(lambda: pillow_decode_all(datas))))
    small = Pipeline([OPERATIONS[0]], device="cpu")(batch)
    small_pils = [im.resize((OUT_WIDTH, OUT_HEIGHT), Image.Resampling.LANCZOS) for im in pils]

    def pil_encode():
        for im in small_pils:
            im.save(io.BytesIO(), format="JPEG", quality=85)

    rows.append(_op_row("encode JPEG 800x450 q85 (torchvision vs Pillow)",
                        median_per_image(lambda: encode(small, "JPEG", 85)),
                        median_per_image(lambda: [encode(small[i : i + 1], "JPEG", 85) for i in range(n)]),
                        median_per_image(pil_encode)))
    return {"task": "per-op", "n": n, "rows": rows, "torch_threads": torch.get_num_threads(),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


#: Resizes beyond the reference job: (source width, height), (target width, height), filter.
RESIZE_CASES = (
    ((1920, 1080), (800, 450), "lanczos"),  # the reference job's
    ((4032, 3024), (800, 600), "lanczos"),  # a phone photo to a web width
    ((4032, 3024), (1000, 750), "lanczos"),
    ((1920, 1080), (777, 437), "lanczos"),  # a width with a large prime factor: many phases
    ((1920, 1080), (797, 448), "lanczos"),  # a prime width: the gathered layout
    ((1920, 1080), (1280, 720), "bicubic"),  # a mild downscale
    ((800, 450), (1920, 1080), "bilinear"),  # an upscale
)


def task_resize_sizes(args) -> dict[str, Any]:
    """``kernels.resize`` at other sizes against Pillow's ``Image.resize``, one image on one core
    each (as the worker runs an image: one torch thread), on a real photo scaled to the source."""
    import numpy as np
    import torch
    from PIL import Image

    from benchmarks.images import image
    from kernels import resize

    torch.set_num_threads(1)
    photo = image(0)
    rows = []
    for (sw, sh), (tw, th), filter in RESIZE_CASES:
        source = photo.resize((sw, sh), Image.Resampling.LANCZOS)
        tensor = torch.from_numpy(np.array(source)).permute(2, 0, 1).unsqueeze(0).contiguous()
        resample = getattr(Image.Resampling, filter.upper())
        ours, _ = timed(lambda: resize(tensor, (th, tw), filter), args.repeats, args.warmup)
        pillow, _ = timed(lambda: source.resize((tw, th), resample), args.repeats, args.warmup)
        same = np.array_equal(resize(tensor, (th, tw), filter)[0].permute(1, 2, 0).numpy(),
                              np.asarray(source.resize((tw, th), resample)))
        rows.append({"case": f"{sw}x{sh} -> {tw}x{th} {filter}", "ours_ms": round(statistics.median(ours) * 1000, 2),
                     "pillow_ms": round(statistics.median(pillow) * 1000, 2), "bit_exact": same})
    return {"task": "resize-sizes", "rows": rows, "torch_threads": 1}


def _op_row(label: str, ours_batch_s: float, ours_one_s: float, pillow_s: float) -> dict[str, Any]:
    return {
        "op": label,
        "ours_batch_ms": round(ours_batch_s * 1000, 3),
        "ours_single_ms": round(ours_one_s * 1000, 3),
        "pillow_ms": round(pillow_s * 1000, 3),
        "pillow_over_ours": round(pillow_s / ours_batch_s, 3),  # > 1: we are faster
    }


TASKS = {"job": task_job, "ops": task_ops, "decode": task_decode, "per-op": task_per_op,
         "resize-sizes": task_resize_sizes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--images", required=True, help="folder written by benchmarks.images.save_set")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--peer", default="pillow")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--small-warmup", action="store_true", help="warm up with a 16-image job")
    args = parser.parse_args(argv)
    result = TASKS[args.task](args)
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    sys.exit(main())
