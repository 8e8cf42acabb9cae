"""Every registered operation on decoded 1080p photos, ours against Pillow and pyvips, one table.

    python -m benchmarks.operations [--n 16] [--repeats 3] [--only rotate,resize] [--device cpu]

For each operation in the registry (gpu_worker.operations) with parameters from :data:`PARAMS`
(else the entry's first example): ours on ``n`` RGB images stacked into one ``(n, 3, 1080, 1920)``
tensor (the ``Pipeline`` API, on the device asked for), Pillow's reference on the same images one
by one, and pyvips' closest operation (:data:`VIPS`; "—" where libvips has none) on the same
pixels in memory, each result written to memory so libvips computes it. Milliseconds per image,
median of ``--repeats``, after one warm-up. Ours on the CPU runs with the worker's thread set-up.

Adding an operation's row: one line in :data:`PARAMS` when its first example is not a fair 1080p
workload (a list of params dicts gives a row each, e.g. ``fit``'s modes), and one in :data:`VIPS`
when libvips has an equivalent.
"""

from __future__ import annotations

import argparse
import base64
import functools
import io
import logging
from typing import Any, Callable



@functools.cache
def watermark_file() -> bytes:
    """The overlay benchmark's watermark: a 320x180 RGBA WebP (quality 80: small enough to pass in
    a command line, as benchmarks/memory_peak.py passes jobs), a benchmark photo scaled down with a
    left-to-right alpha ramp (0 to 255), so that every blend path runs."""
    from PIL import Image

    from benchmarks.images import image

    mark = image(1).resize((320, 180), Image.Resampling.BILINEAR).convert("RGBA")
    mark.putalpha(Image.linear_gradient("L").rotate(90).resize((320, 180)))
    buffer = io.BytesIO()
    mark.save(buffer, "WEBP", quality=80)
    return buffer.getvalue()


#: Operation -> params for a 1080p benchmark (or a list of them: a row each), where the registry's
#: first example (sized for the tests' small photos) is not representative.
PARAMS: dict[str, dict[str, Any] | list[dict[str, Any]]] = {
    "resize": {"width": 800},
    "crop": {"left": 320, "top": 180, "right": 1600, "bottom": 900},
    "filter": {"name": "sharpen"},
    "adjust": {"brightness": 1.1, "contrast": 1.2},
    "rotate": {"angle": 30},
    "box_blur": {"radius": 5},
    "gaussian_blur": {"radius": 2},
    "rank_filter": {"kind": "median", "size": 5},
    "autocontrast": {"cutoff": 2},
    "pixelate": {"size": 16},
    "trim": {"threshold": 40},
    "overlay": {"image": {"base64": base64.b64encode(watermark_file()).decode()}, "margin": 20, "opacity": 0.5},
    "transpose": [{"method": "rotate_90"}, {"method": "rotate_180"}, {"method": "transpose"}],
    "pad": {"left": 40, "top": 40, "right": 40, "bottom": 40, "color": "#ffffff"},
    "fit": [{"width": 800, "height": 600, "mode": "crop"},
            {"width": 800, "height": 600, "mode": "cover"},
            {"width": 800, "height": 600, "mode": "contain"},
            {"width": 800, "height": 800, "mode": "pad", "background": "#ffffff"},
            {"width": 800, "height": 600, "gravity": "entropy"},
            {"width": 800, "height": 600, "gravity": "attention"}],
    # A 17-point table (the common .cube size) that rotates the channels: R <- G, G <- B, B <- R.
    "lut3d": {"size": 17,
              "table": [v / 16 for b in range(17) for g in range(17) for r in range(17) for v in (g, b, r)]},
}

SHARPEN = ((-2, -2, -2), (-2, 32, -2), (-2, -2, -2))

#: Operation -> ``(pyvips image, params) -> pyvips image``: libvips' closest equivalent.
VIPS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "resize": lambda im, p: im.resize(p["width"] / im.width, kernel="lanczos3"),
    "flip": lambda im, p: im.fliphor() if p["direction"] == "horizontal" else im.flipver(),
    "crop": lambda im, p: im.crop(p["left"], p["top"], p["right"] - p["left"], p["bottom"] - p["top"]),
    "filter": lambda im, p: im.conv(_vips_matrix(SHARPEN, 16), precision="integer"),
    "adjust": lambda im, p: (im * p.get("brightness", 1.0)).cast("uchar"),
    "rotate": lambda im, p: im.rotate(p["angle"], interpolate=_vips_interpolator("bicubic")),
    "box_blur": lambda im, p: im.convsep(_vips_matrix([[1] * (2 * int(p["radius"]) + 1)], 2 * int(p["radius"]) + 1),
                                         precision="integer"),
    "gaussian_blur": lambda im, p: im.gaussblur(p["radius"]),
    "unsharp_mask": lambda im, p: im.sharpen(sigma=p.get("radius", 2)),
    "convolve": lambda im, p: im.conv(_vips_matrix([p["kernel"][i : i + 3] for i in (0, 3, 6)], sum(p["kernel"])),
                                      precision="integer"),
    "rank_filter": lambda im, p: im.rank(p["size"], p["size"],
                                         {"min": 0, "median": p["size"] ** 2 // 2, "max": p["size"] ** 2 - 1}[p["kind"]]),
    "invert": lambda im, p: im.invert(),
    "posterize": lambda im, p: im.maplut(_vips_lut([i & (0xFF << (8 - p["bits"])) & 0xFF for i in range(256)])),
    "solarize": lambda im, p: im.maplut(_vips_lut([i if i < p.get("threshold", 128) else 255 - i for i in range(256)])),
    "gamma": lambda im, p: im.maplut(_vips_lut([int(255 * (v / 255) ** (1 / p["value"]) + 0.5) for v in range(256)])),
    "equalize": lambda im, p: im.hist_equal(),
    "colorize": lambda im, p: im.colourspace("b-w").maplut(_vips_colorize_lut(p)),
    "pixelate": lambda im, p: im.shrink(p["size"], p["size"]).zoom(p["size"], p["size"]),
    "pad": lambda im, p: im.embed(p["left"], p["top"], im.width + p["left"] + p["right"],
                                  im.height + p["top"] + p["bottom"], extend="background", background=[255, 255, 255]),
    "fit": lambda im, p: _vips_fit(im, p),
    "trim": lambda im, p: _vips_trim(im, p.get("threshold", 10)),
    "overlay": lambda im, p: _vips_overlay(im, p),
    "transpose": lambda im, p: _VIPS_TRANSPOSE[p["method"]](im),
}

#: ``Image.transpose`` methods in libvips' terms (its ``rot90`` turns clockwise).
_VIPS_TRANSPOSE: dict[str, Callable[[Any], Any]] = {
    "flip_left_right": lambda im: im.fliphor(), "flip_top_bottom": lambda im: im.flipver(),
    "rotate_90": lambda im: im.rot270(), "rotate_180": lambda im: im.rot180(), "rotate_270": lambda im: im.rot90(),
    "transpose": lambda im: im.rot90().fliphor(), "transverse": lambda im: im.rot270().fliphor(),
}


def _vips_trim(im, threshold: int):
    """``find_trim`` against the top-left pixel, then the crop (the whole image when it is all background)."""
    left, top, width, height = im.find_trim(threshold=threshold, background=im.getpoint(0, 0))
    return im.crop(left, top, width, height) if width and height else im


@functools.cache
def _vips_watermark(opacity: float):
    import pyvips

    mark = pyvips.Image.new_from_buffer(watermark_file(), "")
    return mark.extract_band(0, n=3).bandjoin((mark.extract_band(3) * opacity).cast("uchar"))


def _vips_overlay(im, p: dict[str, Any]):
    """``composite2`` ("over") of the watermark, its alpha times ``opacity``, where ours puts it."""
    from gpu_worker.operations.overlay import OverlayParams, position

    mark = _vips_watermark(p.get("opacity", 1.0))
    x, y = position(OverlayParams.model_validate(p), im.width, im.height, mark.width, mark.height)
    return im.composite2(mark, "over", x=x, y=y)


def _vips_fit(im, p: dict[str, Any]):
    """libvips' closest ``fit``: ``thumbnail_image`` (its own shrink, then Lanczos 3) with ``crop``
    (centre, or the smart crop's chooser) for crop; ``resize`` for cover; ``thumbnail_image`` then
    ``gravity`` (embed) for pad."""
    w, h, mode = p["width"], p["height"], p.get("mode", "crop")
    if mode == "cover":
        return im.resize(max(w / im.width, h / im.height), kernel="lanczos3")
    if mode == "crop":
        return im.thumbnail_image(w, height=h, crop={"center": "centre"}.get(p.get("gravity", "center"),
                                                                             p.get("gravity", "centre")))
    fitted = im.thumbnail_image(w, height=h)
    return fitted if mode == "contain" else fitted.gravity("centre", w, h, extend="background",
                                                           background=[255, 255, 255])


def _vips_lut(table, bands: int = 1):
    """A 256-entry uchar table (``bands`` interleaved bands) as a libvips image for ``maplut``."""
    import pyvips

    return pyvips.Image.new_from_memory(bytes(table), 256, 1, bands, "uchar")


def _vips_colorize_lut(p: dict[str, Any]):
    from gpu_worker.operations.colors import to_rgba
    from kernels.tone import colorize_table

    mid = to_rgba(p["mid"])[:3] if p.get("mid") else None
    tables = colorize_table(to_rgba(p["black"])[:3], to_rgba(p["white"])[:3], mid)
    return _vips_lut([v for rgb in zip(*tables) for v in rgb], bands=3)


def _vips_matrix(rows, scale):
    import pyvips

    return pyvips.Image.new_from_array([list(r) for r in rows], scale=scale)


def _vips_interpolator(name: str):
    import pyvips

    return pyvips.Interpolate.new(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated operation names")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import pyvips
    import torch

    from benchmarks.images import three_ways
    from gpu_worker.config import Settings
    from gpu_worker.device import select_device
    from gpu_worker.operations import REGISTRY
    from gpu_worker.runtime import worker_kernels

    pyvips.cache_set_max(0)
    logging.getLogger("pyvips").setLevel(logging.WARNING)  # it logs every thread pool at INFO
    device = select_device(args.device)
    with worker_kernels(Settings(), device):  # as in a job of the worker
        pils, batch, vips_images = three_ways(args.n, device)
        wanted = [name for name in args.only.split(",") if name] or list(REGISTRY)

        print(f"{args.n} x 1920x1080 RGB, ms per image, median of {args.repeats} "
              f"(ours on {device}, torch threads {torch.get_num_threads()})")
        print(f"{'operation':<12} {'params':<46} {'ours':>8} {'Pillow':>8} {'pyvips':>8}")
        for name in wanted:
            rows = PARAMS.get(name, REGISTRY[name].examples[0])
            for params in rows if isinstance(rows, list) else [rows]:
                _row(name, params, device, batch, pils, vips_images, args)


def _row(name, params, device, batch, pils, vips_images, args) -> None:
    """One table row: ``name`` with ``params``, ours, Pillow's and libvips'."""
    import torch

    from benchmarks.timing import median_ms
    from gpu_worker import Pipeline
    from gpu_worker.operations import apply_reference

    op = {"type": name, "params": params}
    pipe = Pipeline([op], device=device)
    try:
        pipe.output_size(batch.shape[-1], batch.shape[-2], batch.shape[1])
        inputs = batch
    except ValueError:  # a size that depends on the pixels (trim): one result tensor per image
        inputs = list(batch.unbind(0))

    def ours() -> None:
        pipe(inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    row = [median_ms(ours, args.repeats) / args.n,
           median_ms(lambda: [apply_reference(im, [op]) for im in pils], args.repeats) / args.n]
    vips = VIPS.get(name)
    row.append(median_ms(lambda: [vips(im, params).write_to_memory() for im in vips_images], args.repeats)
               / args.n if vips else None)
    cells = " ".join(f"{v:8.2f}" if v is not None else f"{'—':>8}" for v in row)
    print(f"{name:<12} {str(params)[:46]:<46} {cells}")


if __name__ == "__main__":
    main()
