"""An animated GIF through resize + sharpen: the worker (every frame in one stack) against Pillow
frame by frame and pyvips (all pages at once, ``n=-1``).

    python -m benchmarks.animation [--frames 100] [--size 480x270] [--width 240] [--repeats 3]
                                   [--device cpu] [--out GIF,WEBP]

The source: ``--frames`` frames of ``--size``, a camera panning over a benchmark photo
(benchmarks.images), each quantized to 256 colours, 40 ms a frame, looping. The job: resize to
``--width`` wide (Lanczos) and Pillow's sharpen filter, every frame kept, written as each
``--out`` format (WebP quality 80). Each contender does the whole file, bytes in to bytes out:

- ours: the worker's job path (``JobRunner.run`` on base64, as a job arrives; the stage timings
  are the job's own);
- Pillow: ``seek(i)``, ``convert("RGBA")``, ``resize(LANCZOS)``, ``filter(SHARPEN)`` per frame,
  then one ``save(save_all=True)`` with the durations and loop (the reference's pixels);
- pyvips: ``new_from_buffer(n=-1)`` (the frames as one tall image), ``resize`` (Lanczos 3) and a
  3x3 integer convolution with Pillow's sharpen kernel, page height set, ``gifsave``/``webpsave``
  (libvips' own quantizer, libimagequant or quantizr, where it has one).

Milliseconds per file, median of ``--repeats`` after one warm-up; the machine's load is not
controlled, so compare the columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import logging

SHARPEN = ((-2, -2, -2), (-2, 32, -2), (-2, -2, -2))


def source_gif(frames: int, size: tuple[int, int]) -> bytes:
    """``frames`` crops of ``size`` panning across a benchmark photo, as one looping GIF."""
    from PIL import Image

    from benchmarks.images import _base

    base = _base("astronaut.png")
    w, h = size
    span_x, span_y = max(1, base.width - w), max(1, base.height - h)
    images = []
    for i in range(frames):
        left, top = (i * 13) % span_x, (i * 7) % span_y
        images.append(base.crop((left, top, left + w, top + h)).convert("P", palette=Image.Palette.ADAPTIVE))
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=40, loop=0)
    return buf.getvalue()


def pillow(data: bytes, width: int, fmt: str) -> bytes:
    """The animation frame by frame with Pillow, written as ``fmt``."""
    from PIL import Image, ImageFilter

    frames, durations = [], []
    with Image.open(io.BytesIO(data)) as im:
        loop = im.info.get("loop")
        for i in range(im.n_frames):
            im.seek(i)
            frame = im.convert("RGBA")
            durations.append(im.info.get("duration", 0))
            height = max(1, int(frame.height * width / frame.width))
            frames.append(frame.resize((width, height), Image.Resampling.LANCZOS).filter(ImageFilter.SHARPEN))
    if fmt == "GIF":
        frames = [f.convert("RGB") for f in frames]
    buf = io.BytesIO()
    params = {"quality": 80} if fmt == "WEBP" else {}
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=durations, loop=loop, **params)
    return buf.getvalue()


def vips(data: bytes, width: int, fmt: str) -> bytes:
    """The animation as libvips handles one: all pages as one tall image."""
    import pyvips

    im = pyvips.Image.new_from_buffer(data, "", n=-1)
    page = im.get("page-height")
    pages = im.height // page
    scale = width / im.width
    out = im.resize(scale, kernel="lanczos3")
    out = out.conv(pyvips.Image.new_from_array([list(r) for r in SHARPEN], scale=16), precision="integer")
    out = out.copy()
    out.set_type(pyvips.GValue.gint_type, "page-height", out.height // pages)
    return out.gifsave_buffer() if fmt == "GIF" else out.webpsave_buffer(Q=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", default="480x270")
    parser.add_argument("--width", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="GIF,WEBP")
    args = parser.parse_args()

    import pyvips
    import torch
    from PIL import Image

    from benchmarks.timing import median_ms
    from gpu_worker.config import Settings
    from gpu_worker.device import select_device
    from gpu_worker.jobs import JobRunner
    from gpu_worker.runtime import use_cpu_cores

    pyvips.cache_set_max(0)
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    device = select_device(args.device)
    settings = dataclasses.replace(Settings(), cache_max_bytes=0, max_animation_frames=max(256, args.frames))
    use_cpu_cores(device)
    runner = JobRunner(settings, device)
    w, h = (int(v) for v in args.size.lower().split("x"))
    data = source_gif(args.frames, (w, h))
    encoded = base64.b64encode(data).decode("ascii")
    operations = [{"type": "resize", "params": {"width": args.width}}, {"type": "filter", "params": {"name": "sharpen"}}]

    print(f"{args.frames} frames of {w}x{h} GIF ({len(data) / 1e6:.2f} MB) -> {args.width} wide + sharpen; "
          f"ms per file, median of {args.repeats} (ours on {device}, torch threads {torch.get_num_threads()})")
    print(f"{'out':<5} {'ours':>9} {'Pillow':>9} {'pyvips':>9}   ours' stages (last run), frames out, bytes ours / Pillow / pyvips")
    for fmt in [f.strip().upper() for f in args.out.split(",") if f.strip()]:
        job = {"image": {"base64": encoded}, "operations": operations, "output": {"format": fmt, "quality": 80}}
        last: dict = {}

        def ours() -> None:
            last["response"] = runner.run(job)
            assert last["response"]["success"], last["response"].get("error")

        ms_ours = median_ms(ours, args.repeats)
        ms_pillow = median_ms(lambda: pillow(data, args.width, fmt), args.repeats)
        ms_vips = median_ms(lambda: vips(data, args.width, fmt), args.repeats)
        meta = last["response"]["metadata"]
        with Image.open(io.BytesIO(base64.b64decode(last["response"]["processed_image"].split(",", 1)[1]))) as out:
            frames_out = out.n_frames
        stages = {k: round(v, 1) for k, v in meta["timings_ms"].items() if k in ("decode", "ops", "encode")}
        sizes = f"{meta['bytes']:,} / {len(pillow(data, args.width, fmt)):,} / {len(vips(data, args.width, fmt)):,}"
        print(f"{fmt:<5} {ms_ours:9.1f} {ms_pillow:9.1f} {ms_vips:9.1f}   {stages} {frames_out} frames, {sizes}")


if __name__ == "__main__":
    main()
