"""Pillow's fixed convolution filters (``ImageFilter.BLUR``, ``SHARPEN``, ...) on uint8 batches.

The filters are declared as data, the way Pillow's ``ImageFilter.py`` declares them: a size, a
scale (divisor), an offset and the weights laid out as a grid, read exactly as in Pillow's source.

What Pillow does with them (``src/libImaging/Filter.c``, ``ImagingFilter3x3/5x5``, and
``_imaging.c``'s ``_filter``), which :func:`apply_filter` reproduces:

* Row 0 of the grid multiplies the row *below* the pixel (``y + 1``) and the last row the one above,
  while columns are not flipped: the kernel is applied as a cross-correlation with the grid flipped
  vertically. Only asymmetric grids notice (EMBOSS).
* ``value = sum(pixel * weight / scale) + offset``, then rounded half up and clamped to 0..255
  (``clip8(ss + 0.5)``: clamp, then truncate).
* The outer 1 px (3x3) or 2 px (5x5) of the image is copied from the source unchanged (no padding).
* An image narrower or shorter than the kernel comes back unchanged.
* Every band is filtered with the same kernel and offset, alpha included (RGBA and LA alike;
  ``Image.filter`` passes the whole multi-band image to the C filter).

How: the interior's sums are computed exactly in integers from shifted slices of the image (no
padding: Kornia's filter2d pads by reflection by default, which is not Pillow's copied border),
then divided by the scale; that rounds as Pillow does whenever the scale is odd or a power of two. DETAIL (scale 6) and SMOOTH_MORE (100)
have exact ties that only Pillow's float32 summation order decides, so for those two the sum is
computed elementwise in Pillow's order instead (:func:`_pillow_float_sums`). Both give Pillow's
result bit for bit (0 levels apart on the test photos).

A user's kernel (:func:`convolve`, ``ImageFilter.Kernel``) is the same data, with any real weights,
scale and offset, and takes the same path: Pillow's float32 arithmetic in Pillow's order (the
integer shortcut only for a kernel equal to a named filter's that has no ties).
"""

from __future__ import annotations

import math
import struct
from typing import NamedTuple

import torch

from kernels._checks import check_images


class FixedFilter(NamedTuple):
    """A kernel as Pillow's ``ImageFilter.Kernel`` holds it: ``weights`` is ``size`` rows of
    ``size`` numbers (integers for the built-in filters), as written, top row first."""

    size: int
    scale: float
    offset: float
    weights: tuple[tuple[float, ...], ...]

    @property
    def has_ties(self) -> bool:
        """Whether ``sum / scale + 0.5`` can land exactly on an integer Pillow's float32 misses.

        With an odd scale the exact value is at least ``1 / (2 * scale)`` from a rounding edge, far
        more than float32 error; with a power of two Pillow's float arithmetic is itself exact. Only
        an even scale that is not a power of two (DETAIL's 6, SMOOTH_MORE's 100) leaves exact ties
        that Pillow's float32 rounding error decides one way or the other.
        """
        return self.scale % 2 == 0 and self.scale & (self.scale - 1) != 0


# fmt: off
#: Name -> filter, copied from Pillow's ImageFilter.py (``filterargs``), grid as written there.
FILTER_TABLE: dict[str, FixedFilter] = {
    "blur": FixedFilter(5, 16, 0, (
        (1, 1, 1, 1, 1),
        (1, 0, 0, 0, 1),
        (1, 0, 0, 0, 1),
        (1, 0, 0, 0, 1),
        (1, 1, 1, 1, 1),
    )),
    "contour": FixedFilter(3, 1, 255, (
        (-1, -1, -1),
        (-1,  8, -1),
        (-1, -1, -1),
    )),
    "detail": FixedFilter(3, 6, 0, (
        ( 0, -1,  0),
        (-1, 10, -1),
        ( 0, -1,  0),
    )),
    "edge_enhance": FixedFilter(3, 2, 0, (
        (-1, -1, -1),
        (-1, 10, -1),
        (-1, -1, -1),
    )),
    "edge_enhance_more": FixedFilter(3, 1, 0, (
        (-1, -1, -1),
        (-1,  9, -1),
        (-1, -1, -1),
    )),
    "emboss": FixedFilter(3, 1, 128, (
        (-1, 0, 0),
        ( 0, 1, 0),
        ( 0, 0, 0),
    )),
    "find_edges": FixedFilter(3, 1, 0, (
        (-1, -1, -1),
        (-1,  8, -1),
        (-1, -1, -1),
    )),
    "sharpen": FixedFilter(3, 16, 0, (
        (-2, -2, -2),
        (-2, 32, -2),
        (-2, -2, -2),
    )),
    "smooth": FixedFilter(3, 13, 0, (
        (1, 1, 1),
        (1, 5, 1),
        (1, 1, 1),
    )),
    "smooth_more": FixedFilter(5, 100, 0, (
        (1, 1,  1, 1, 1),
        (1, 5,  5, 5, 1),
        (1, 5, 44, 5, 1),
        (1, 5,  5, 5, 1),
        (1, 1,  1, 1, 1),
    )),
}
# fmt: on

#: The filter names :func:`apply_filter` accepts.
FILTERS: tuple[str, ...] = tuple(FILTER_TABLE)

#: Kernels whose integer sums, divided once, round as Pillow's float32 does (the named filters
#: without ties); every other kernel, a user's included, is summed in Pillow's float order.
_INTEGER_EXACT = frozenset(spec for spec in FILTER_TABLE.values() if not spec.has_ties)


def _float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as C's ``float`` holds it."""
    return struct.unpack("f", struct.pack("f", value))[0]


def _pillow_float_sums(src: torch.Tensor, spec: FixedFilter) -> torch.Tensor:
    """``ss`` of the interior rows of a slab, computed in float32 in exactly the order Filter.c does.

    ``src`` is uint8 ``(P, rows + 2r, W)`` (``r`` the kernel's radius); the result is float32
    ``(P, rows, W - 2r)``, the sums of the slab's rows ``r .. rows + r - 1``. Filter.c:
    ``ss = offset + 0.5``, then for each grid row (grid row 0 against image row ``y + r``)
    ``ss += ((p0 * k0 + p1 * k1) + p2 * k2) ...`` with ``k = float(weight) / float(scale)``, each
    product and sum rounded to float32. Used only where ties make the order matter (see
    :attr:`FixedFilter.has_ties`); it costs one elementwise pass per non-zero weight. Products and
    sums are separate torch ops on purpose: a fused multiply-add (``addcmul``, or a compiler that
    contracts them) rounds once instead of twice and would no longer reproduce Pillow's x86 build.
    """
    k = spec.size
    r = k // 2
    h, w = src.shape[-2:]
    x = src.to(torch.float32)
    ss = None
    for i, weights in enumerate(spec.weights):
        row = None
        for j, weight in enumerate(weights):
            if weight == 0:  # adds an exact 0.0 in Pillow: skipping it changes nothing
                continue
            # Image row y + r - i, column x + j - r, for every interior (y, x).
            tap = x[..., 2 * r - i : h - i, j : w - 2 * r + j]
            term = tap * _float32(_float32(weight) / _float32(spec.scale))
            row = term if row is None else row.add_(term)
        if row is not None:
            ss = row.add_(_float32(_float32(spec.offset) + 0.5)) if ss is None else ss.add_(row)
    if ss is None:  # every weight 0: Pillow's ss is the offset (+ 0.5) alone
        ss = torch.full((x.shape[0], h - 2 * r, w - 2 * r), _float32(_float32(spec.offset) + 0.5), device=x.device)
    return ss


def _exact_sums(src: torch.Tensor, spec: FixedFilter) -> torch.Tensor:
    """Pillow's clip8 value of the interior rows of a slab, for filters without ties.

    ``src`` is uint8 ``(P, rows + 2r, W)``; returns float32 ``(P, rows, W - 2r)`` holding integers
    0..255. The sum of ``pixel * weight`` over the taps is computed exactly in integers (int16
    holds ``255 * sum(|weight|)`` for every table entry) as shifted slices, then divided by the
    scale in float32, which rounds as Pillow does for filters without ties (see
    :attr:`FixedFilter.has_ties`).
    """
    r = spec.size // 2
    rows, cols = src.shape[-2] - 2 * r, src.shape[-1] - 2 * r
    bound = 255 * sum(abs(weight) for row in spec.weights for weight in row)
    dtype = torch.int16 if bound <= torch.iinfo(torch.int16).max else torch.int32
    src = src.to(dtype)
    acc = None
    # Grid row i multiplies image row y + r - i (the vertical flip); column j, image column x + j - r.
    for i, grid_row in enumerate(spec.weights):
        for j, weight in enumerate(grid_row):
            if weight:
                tap = src[..., 2 * r - i : 2 * r - i + rows, j : j + cols]
                acc = tap * weight if acc is None else acc.add_(tap, alpha=weight)
    # Pillow's clip8(sum / scale + offset + 0.5): clamp to 0..255, then truncate.
    return acc.to(torch.float32).div_(spec.scale).add_(spec.offset + 0.5)


#: Elements per chunk on the CPU: a chunk's int16 planes stay in cache (2 MB), and chunks are
#: few. With one torch thread per image (the worker) each call's Python overhead counts, so larger
#: chunks are faster, and two threads contending for the interpreter make small chunks slower
#: still (BENCHMARKS.md, "Why the kernels' constants").
CPU_CHUNK_ELEMENTS = 1 << 20
#: Elements per chunk elsewhere (CUDA), over the whole batch: few, large kernel launches, while
#: the float32 temporaries stay a bounded size (a few hundred MB) however large the batch.
CHUNK_ELEMENTS = 1 << 24


def _filter_interior(images: torch.Tensor, spec: FixedFilter, out: torch.Tensor) -> None:
    """Write Pillow's filtered interior into ``out`` (a contiguous copy of ``images``), in chunks
    of rows: on the CPU one plane at a time in cache-sized chunks (a whole-batch pass per tap
    would stream the batch through memory once per weight), elsewhere the whole batch's rows.
    (Kornia's filter2d gives the same integer sums through a float convolution, but is slower than
    this on a CPU for 3x3 grids on photos (BENCHMARKS.md, "Why the kernels' constants"), and its
    result needs the same rounding afterwards.)
    """
    r = spec.size // 2
    b, c, h, w = images.shape
    rows = h - 2 * r
    planes = images.reshape(b * c, h, w)
    dst = out.view(b * c, h, w)
    if images.device.type == "cpu":
        step = max(1, CPU_CHUNK_ELEMENTS // w)
        pieces = [(slice(p, p + 1), top) for p in range(b * c) for top in range(0, rows, step)]
    else:
        step = max(1, CHUNK_ELEMENTS // (b * c * w))
        pieces = [(slice(None), top) for top in range(0, rows, step)]
    sums = _exact_sums if spec in _INTEGER_EXACT else _pillow_float_sums
    for plane, top in pieces:
        bottom = min(rows, top + step)
        value = sums(planes[plane, top : bottom + 2 * r], spec)
        # Pillow's clip8(ss): clamp to 0..255, then truncate (ss holds the +0.5 of rounding).
        dst[plane, r + top : r + bottom, r : w - r] = value.clamp_(0.0, 255.0)


def apply_filter(images: torch.Tensor, name: str) -> torch.Tensor:
    """Apply one of Pillow's fixed filters, as ``Image.filter(ImageFilter.<NAME>)`` does.

    Args:
        images: uint8 ``(B, C, H, W)``, C in 1..4 (L, LA, RGB, RGBA), values 0..255. Every channel
            is filtered, alpha included, as Pillow does.
        name: one of :data:`FILTERS` (``"blur"``, ``"contour"``, ``"detail"``, ``"edge_enhance"``,
            ``"edge_enhance_more"``, ``"emboss"``, ``"find_edges"``, ``"sharpen"``, ``"smooth"``,
            ``"smooth_more"``).

    Returns:
        A new uint8 ``(B, C, H, W)`` tensor on the input's device. The outer 1 px (3x3 kernels) or
        2 px (5x5: ``blur``, ``smooth_more``) is the source's; an image smaller than the kernel is
        returned unchanged (as a copy).

    Example:
        >>> x = torch.randint(0, 256, (2, 3, 64, 48), dtype=torch.uint8)
        >>> apply_filter(x, "sharpen").shape
        torch.Size([2, 3, 64, 48])
    """
    check_images(images)
    if not isinstance(name, str) or name not in FILTER_TABLE:
        raise ValueError(f"unknown filter {name!r}; expected one of {', '.join(FILTERS)}")
    return _apply(images, FILTER_TABLE[name])


def _apply(images: torch.Tensor, spec: FixedFilter) -> torch.Tensor:
    """Pillow's ``ImagingFilter`` with one kernel: the interior filtered, the border copied."""
    b, _, h, w = images.shape
    out = images.clone(memory_format=torch.contiguous_format)
    if b == 0 or h < spec.size or w < spec.size:
        return out

    _filter_interior(images, spec, out)
    return out


#: Kernel sizes :func:`convolve` accepts (Pillow's ``ImagingFilter`` has 3x3 and 5x5).
KERNEL_SIZES = (3, 5)


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def convolve(images: torch.Tensor, size: int, kernel, scale: float | None = None,
             offset: float = 0) -> torch.Tensor:
    """``Image.filter(ImageFilter.Kernel((size, size), kernel, scale, offset))``.

    Args:
        images: uint8 ``(B, C, H, W)``, C in 1..4; every channel is filtered, alpha included.
        size: 3 or 5.
        kernel: ``size * size`` finite numbers, row by row as Pillow takes them (the first row
            weighs the row *below* the pixel: Pillow flips the kernel vertically).
        scale: the divisor; None: the kernel's sum, or 1 where that is 0. Not 0.
        offset: added after dividing.

    Returns:
        A new uint8 ``(B, C, H, W)`` tensor on the input's device: each interior value is
        ``clip8(sum(pixel * (weight / scale)) + offset + 0.5)`` in Pillow's float32 order; the
        outer ``size // 2`` pixels are the source's, and an image smaller than the kernel is
        returned unchanged (as a copy).

    Example:
        >>> x = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
        >>> convolve(x, 3, [1, 2, 1, 2, 4, 2, 1, 2, 1]).shape
        torch.Size([1, 3, 16, 16])
    """
    check_images(images)
    if isinstance(size, bool) or size not in KERNEL_SIZES:
        raise ValueError(f"size must be 3 or 5, got {size!r}")
    weights = [_finite("kernel values", value) for value in kernel]
    if len(weights) != size * size:
        raise ValueError(f"a {size}x{size} kernel needs {size * size} values, got {len(weights)}")
    if scale is None:
        scale = sum(weights) or 1
    if _finite("scale", scale) == 0:
        raise ValueError("scale must not be 0")
    rows = tuple(tuple(weights[i : i + size]) for i in range(0, size * size, size))
    return _apply(images, FixedFilter(size, scale, _finite("offset", offset), rows))
