"""Kornia against Pillow: which Kornia functions could serve as Pillow-exact kernels.

For each candidate (flips, posterize, solarize, invert, equalize, median blur, warp_affine for
rotate and a general affine, colour conversions) the script compares Kornia's result with
Pillow's equivalent on real photos (scikit-image's colour photos at their own sizes, and the
benchmark's first 1080p image), in the modes where Pillow has the operation (its ``ImageOps``
lookup-table operations refuse RGBA), and times Pillow, a plain torch implementation and Kornia
on one 1920x1080 RGB image with one torch thread.

Kornia is fed the natural way: ``x.float() / 255`` in, ``(y * 255).round().clamp(0, 255)`` back to
uint8, or Kornia's own uint8 path where it has one (flips and ``invert`` with ``max_val=255`` work on
any dtype; ``rgb_to_grayscale`` has an integer path; ``median_blur`` takes uint8 and returns float32
on the same scale). Kornia's times include those conversions, since the worker holds uint8.

    python -m benchmarks.kornia_candidates [--repeats 5] [--only NAME]

"Max" is the largest difference in levels over all photos and channels; "> 1" is the share of
pixels (any channel) more than one level away. Hue (HSV) differences are taken around the circle.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

import kornia
from kornia.geometry.transform import hflip, vflip, warp_affine

from benchmarks import images as bench_images
from kernels import grayscale as torch_grayscale

try:  # the Pillow-exact rotate kernel (the geometry issue's first operation)
    from kernels import rotate as torch_rotate
except ImportError:  # pragma: no cover - older trees
    torch_rotate = None

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")
ROTATE_ANGLE = 17.0
#: An inverse affine (output -> input, Pillow's ``Image.transform(AFFINE)`` data): scale, shear, shift.
AFFINE = (1.15, 0.2, -40.0, -0.1, 0.9, 25.0)


# ---------------------------------------------------------------------------- images and helpers

def photos() -> list[Image.Image]:
    """The comparison set: four scikit-image photos (RGB) and the benchmark's 1080p image 0."""
    import skimage.data

    root = os.path.dirname(skimage.data.__file__)
    out = []
    for name in PHOTOS:
        with Image.open(os.path.join(root, name)) as im:
            out.append(im.convert("RGB"))
    out.append(bench_images.image(0))
    return out


def in_mode(im: Image.Image, mode: str) -> Image.Image:
    if mode == "RGBA":  # a real alpha plane: the photo's own luma, pushed to both extremes
        rgba = im.convert("RGBA")
        rgba.putalpha(im.convert("L").point(lambda v: 0 if v < 40 else 255 if v > 215 else v))
        return rgba
    return im.convert(mode)


def to_tensor(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_array(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).cpu().numpy()


def as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255


def as_uint8(y: torch.Tensor) -> torch.Tensor:
    return (y * 255).round().clamp(0, 255).to(torch.uint8)


def kornia_float(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A Kornia function on [0, 1] floats, wrapped to take and give uint8."""
    return lambda x: as_uint8(fn(as_float(x)))


# ---------------------------------------------------------------------------- plain torch versions

def torch_posterize(x: torch.Tensor, bits: int) -> torch.Tensor:
    return x & (256 - (1 << (8 - bits)))


def torch_solarize(x: torch.Tensor, threshold: int) -> torch.Tensor:
    return torch.where(x < threshold, x, 255 - x)


def torch_equalize(x: torch.Tensor) -> torch.Tensor:
    """``ImageOps.equalize``: per channel, Pillow's integer look-up table from the histogram."""
    b, c, h, w = x.shape
    planes = x.reshape(b * c, h * w)
    hist = torch.stack([torch.bincount(p, minlength=256) for p in planes])
    nonzero = hist > 0
    last = 255 - nonzero.flip(1).int().argmax(1)  # the highest level that occurs
    step = (hist.sum(1) - hist.gather(1, last[:, None])[:, 0]) // 255
    before = hist.cumsum(1) - hist  # pixels below each level
    lut = (step[:, None] // 2 + before) // step.clamp(min=1)[:, None]
    identity = (nonzero.sum(1) <= 1) | (step == 0)
    lut = torch.where(identity[:, None], torch.arange(256, device=x.device), lut).clamp(0, 255).to(torch.uint8)
    return torch.stack([torch.take(table, p.long()) for table, p in zip(lut, planes)]).reshape(b, c, h, w)


@functools.cache
def median_network(n: int) -> tuple[tuple[int, int], ...]:
    """Comparators (i, j) whose min goes to i and max to j that leave the median of ``n`` (odd)
    values at index ``n // 2``: Batcher's odd-even merge sort on the next power of two (the padding
    taken as +infinity, so its comparators are no-ops), pruned to those the median depends on."""
    size = 1 << (n - 1).bit_length()
    network = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        network.append((i + j, i + j + k))
            k //= 2
        p *= 2
    network = [(i, j) for i, j in network if j < n]  # (x, +inf) changes nothing
    needed, kept = {n // 2}, []
    for i, j in reversed(network):
        if i in needed or j in needed:
            kept.append((i, j))
            needed |= {i, j}
    return tuple(reversed(kept))


def torch_median(x: torch.Tensor, size: int) -> torch.Tensor:
    """``ImageFilter.MedianFilter(size)``: the middle value of each window, edges replicated;
    a pruned sorting network of uint8 minimum/maximum over the shifted windows."""
    r = size // 2
    _, _, h, w = x.shape
    rows = torch.arange(-r, h + r, device=x.device).clamp(0, h - 1)
    cols = torch.arange(-r, w + r, device=x.device).clamp(0, w - 1)
    padded = x[:, :, rows][:, :, :, cols]
    v = [padded[:, :, i:i + h, j:j + w] for i in range(size) for j in range(size)]
    for i, j in median_network(size * size):
        v[i], v[j] = torch.minimum(v[i], v[j]), torch.maximum(v[i], v[j])
    return v[size * size // 2].contiguous()


# ---------------------------------------------------------------------------- affine matrices

def rotate_matrix(width: int, height: int, angle: float) -> tuple[float, ...]:
    """Pillow's inverse matrix of ``Image.rotate(angle, expand=False)`` (output -> input)."""
    a = -math.radians(angle % 360.0)
    m = [round(math.cos(a), 15), round(math.sin(a), 15), 0.0, round(-math.sin(a), 15), round(math.cos(a), 15), 0.0]
    cx, cy = width / 2.0, height / 2.0
    m[2] = m[0] * -cx + m[1] * -cy + cx
    m[5] = m[3] * -cx + m[4] * -cy + cy
    return tuple(m)


def kornia_forward(inverse: tuple[float, ...]) -> torch.Tensor:
    """Pillow's inverse matrix on continuous coordinates (pixel centres at +0.5) as Kornia's
    forward matrix on pixel-centre coordinates (``align_corners=True``), shape (1, 2, 3)."""
    a, b, c, d, e, f = inverse
    inv = torch.tensor([[a, b, c], [d, e, f], [0, 0, 1]], dtype=torch.float64)
    shift = torch.eye(3, dtype=torch.float64)
    shift[:2, 2] = 0.5
    unshift = torch.eye(3, dtype=torch.float64)
    unshift[:2, 2] = -0.5
    inverse_centres = unshift @ inv @ shift  # output centre -> input centre
    return torch.linalg.inv(inverse_centres)[:2].float()[None]


def kornia_warp(inverse_for: Callable[[int, int], tuple[float, ...]], mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = kornia_forward(inverse_for(w, h)).to(x.device).expand(x.shape[0], 2, 3)
        return as_uint8(warp_affine(as_float(x), m, (h, w), mode=mode, padding_mode="zeros", align_corners=True))
    return run


# ---------------------------------------------------------------------------- colour conversions

def kornia_rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    hsv = kornia.color.rgb_to_hsv(as_float(x))
    h = (hsv[:, :1] / (2 * math.pi) * 255).round().remainder(256)
    return torch.cat([h, (hsv[:, 1:] * 255).round()], 1).clamp(0, 255).to(torch.uint8)


def kornia_hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    f = as_float(x)
    return as_uint8(kornia.color.hsv_to_rgb(torch.cat([f[:, :1] * (2 * math.pi), f[:, 1:]], 1)))


# ---------------------------------------------------------------------------- the candidates

@dataclass
class Candidate:
    name: str
    pillow: Callable[[Image.Image], Image.Image]
    kornia: Callable[[torch.Tensor], torch.Tensor]
    torch: Optional[Callable[[torch.Tensor], torch.Tensor]]
    modes: tuple[str, ...] = ("L", "RGB")
    #: the input as Pillow converts it first (e.g. an HSV image for hsv_to_rgb); None: the photo.
    source: Optional[Callable[[Image.Image], Image.Image]] = None
    circular: tuple[int, ...] = ()  # channels compared around the circle (hue)
    note: str = ""
    results: dict = field(default_factory=dict)


def candidates() -> list[Candidate]:
    k = kornia.enhance
    t255 = torch.tensor(255, dtype=torch.uint8)
    c = [
        Candidate("hflip (ImageOps.mirror)", ImageOps.mirror, hflip, lambda x: x.flip(-1), ("L", "RGB", "RGBA"),
                  note="Kornia's flip is torch.flip on any dtype"),
        Candidate("vflip (ImageOps.flip)", ImageOps.flip, vflip, lambda x: x.flip(-2), ("L", "RGB", "RGBA")),
        Candidate("invert, uint8 (max_val=255)", ImageOps.invert, lambda x: k.invert(x, t255), lambda x: 255 - x),
        Candidate("invert, float", ImageOps.invert, kornia_float(k.invert), lambda x: 255 - x),
        Candidate("posterize 3 bits", lambda im: ImageOps.posterize(im, 3), kornia_float(lambda f: k.posterize(f, 3)),
                  lambda x: torch_posterize(x, 3)),
        Candidate("posterize 6 bits", lambda im: ImageOps.posterize(im, 6), kornia_float(lambda f: k.posterize(f, 6)),
                  lambda x: torch_posterize(x, 6)),
        Candidate("solarize 128", lambda im: ImageOps.solarize(im, 128),
                  kornia_float(lambda f: k.solarize(f, 128 / 255)), lambda x: torch_solarize(x, 128)),
        Candidate("solarize 77", lambda im: ImageOps.solarize(im, 77),
                  kornia_float(lambda f: k.solarize(f, 77 / 255)), lambda x: torch_solarize(x, 77)),
        Candidate("equalize", ImageOps.equalize, kornia_float(k.equalize), torch_equalize),
        Candidate("median 3 (MedianFilter)", lambda im: im.filter(ImageFilter.MedianFilter(3)),
                  lambda x: kornia.filters.median_blur(x, 3, "replicate").round().to(torch.uint8),
                  lambda x: torch_median(x, 3), ("L", "RGB", "RGBA"), note="border 'replicate' is Pillow's"),
        Candidate("median 5 (MedianFilter)", lambda im: im.filter(ImageFilter.MedianFilter(5)),
                  lambda x: kornia.filters.median_blur(x, 5, "replicate").round().to(torch.uint8),
                  lambda x: torch_median(x, 5), ("L", "RGB", "RGBA")),
    ]
    for mode, resample in (("bilinear", Image.Resampling.BILINEAR), ("bicubic", Image.Resampling.BICUBIC)):
        rot = (lambda f: lambda x: torch_rotate(x, ROTATE_ANGLE, expand=False, filter=f))(mode) if torch_rotate else None
        c.append(Candidate(f"rotate {ROTATE_ANGLE:g}° {mode} (warp_affine)",
                           (lambda r: lambda im: im.rotate(ROTATE_ANGLE, resample=r))(resample),
                           kornia_warp(lambda w, h: rotate_matrix(w, h, ROTATE_ANGLE), mode), rot, ("L", "RGB", "RGBA")))
        c.append(Candidate(f"affine scale+shear {mode} (warp_affine)",
                           (lambda r: lambda im: im.transform(im.size, Image.Transform.AFFINE, AFFINE, resample=r))(resample),
                           kornia_warp(lambda w, h: AFFINE, mode), None, ("L", "RGB", "RGBA")))
    c += [
        Candidate("grayscale, uint8 path (convert L)", lambda im: im.convert("L"), kornia.color.rgb_to_grayscale,
                  torch_grayscale, ("RGB",), note="Kornia's uint8 path: OpenCV's weights"),
        Candidate("grayscale, float (convert L)", lambda im: im.convert("L"), kornia_float(kornia.color.rgb_to_grayscale),
                  torch_grayscale, ("RGB",)),
        Candidate("rgb_to_hsv (convert HSV)", lambda im: im.convert("HSV"), kornia_rgb_to_hsv, None, ("RGB",), circular=(0,)),
        Candidate("hsv_to_rgb (HSV convert RGB)", lambda im: im.convert("RGB"), kornia_hsv_to_rgb, None, ("RGB",),
                  source=lambda im: im.convert("HSV")),
        Candidate("rgb_to_ycbcr (convert YCbCr)", lambda im: im.convert("YCbCr"),
                  kornia_float(kornia.color.rgb_to_ycbcr), None, ("RGB",)),
        Candidate("ycbcr_to_rgb (YCbCr convert RGB)", lambda im: im.convert("RGB"),
                  kornia_float(kornia.color.ycbcr_to_rgb), None, ("RGB",), source=lambda im: im.convert("YCbCr")),
    ]
    return c


# ---------------------------------------------------------------------------- measuring

def compare(expected: np.ndarray, got: np.ndarray, circular: tuple[int, ...]) -> tuple[int, int, int]:
    """(max difference, pixels more than one level off, pixels)."""
    assert expected.shape == got.shape, (expected.shape, got.shape)
    d = np.abs(expected.astype(np.int16) - got.astype(np.int16))
    for ch in circular:
        d[..., ch] = np.minimum(d[..., ch], 256 - d[..., ch])
    per_pixel = d.max(axis=-1)
    return int(per_pixel.max(initial=0)), int((per_pixel > 1).sum()), per_pixel.size


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def measure(cands: list[Candidate], repeats: int) -> None:
    shots = photos()
    timing = bench_images.image(0)  # 1920x1080 RGB
    for cand in cands:
        for mode in cand.modes:
            worst, off, total = 0, 0, 0
            for photo in shots:
                im = in_mode(photo, mode)
                if cand.source is not None:
                    im = cand.source(im)
                expected = np.asarray(cand.pillow(im))
                got = to_array(cand.kornia(to_tensor(im)))
                if expected.ndim == 2:
                    expected = expected[:, :, None]
                m, o, n = compare(expected, got, cand.circular)
                worst, off, total = max(worst, m), off + o, total + n
            cand.results[mode] = (worst, 100.0 * off / total)
        im = timing if cand.source is None else cand.source(timing)
        x = to_tensor(im)
        cand.results["pillow_ms"] = best_ms(lambda: cand.pillow(im), repeats)
        cand.results["kornia_ms"] = best_ms(lambda: cand.kornia(x), repeats)
        cand.results["torch_ms"] = best_ms(lambda: cand.torch(x), repeats) if cand.torch else None
        print(f"  measured {cand.name}", flush=True)


def verdict(cand: Candidate) -> str:
    worst = max(v[0] for k, v in cand.results.items() if k in cand.modes)
    k_ms, t_ms = cand.results["kornia_ms"], cand.results["torch_ms"]
    if worst > 1:
        return f"no: {worst} levels off"
    if t_ms is None:
        return "within 1 level; no worker op"
    if k_ms > t_ms * 1.25 + 0.5:  # beyond the noise of a shared machine
        return f"no: {k_ms / t_ms:.1f}x the torch time"
    return "within 1 level, same speed: no gain"


def table(cands: list[Candidate]) -> str:
    lines = ["| candidate | mode | max diff | > 1 level | Pillow ms | plain torch ms | Kornia ms | verdict |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for cand in cands:
        r = cand.results
        t_ms = "–" if r["torch_ms"] is None else f"{r['torch_ms']:.1f}"
        for i, mode in enumerate(cand.modes):
            worst, share = r[mode]
            timing = (f"{r['pillow_ms']:.1f} | {t_ms} | {r['kornia_ms']:.1f} | {verdict(cand)}" if i == 0
                      else " |  |  | ")
            lines.append(f"| {cand.name if i == 0 else ''} | {mode} | {worst} | {share:.2f} % | {timing} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per candidate (the best is kept)")
    parser.add_argument("--only", default="", help="run only candidates whose name contains this")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cands = [c for c in candidates() if args.only in c.name]
    print(f"torch {torch.__version__}, kornia {kornia.__version__}, Pillow {Image.__version__}; one torch thread; "
          f"times: best of {args.repeats} on one 1920x1080 RGB image (the source's mode for conversions)", flush=True)
    measure(cands, args.repeats)
    print(table(cands))


if __name__ == "__main__":
    main()
