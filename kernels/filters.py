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

How: the interior is ``kornia.filters.filter2d`` with the integer grid ('valid' padding, since
Kornia's default reflect padding is not Pillow's copied border), divided by the scale afterwards;
that is exact whenever the scale is odd or a power of two. DETAIL (scale 6) and SMOOTH_MORE (100)
have exact ties that only Pillow's float32 summation order decides, so for those two the sum is
computed elementwise in Pillow's order instead (:func:`_pillow_float_sums`). Both give Pillow's
result bit for bit (0 levels apart on the test photos).
"""

from __future__ import annotations

import functools
import struct
from typing import NamedTuple

import kornia.filters
import torch

from kernels._checks import check_images


class FixedFilter(NamedTuple):
    """One of Pillow's built-in kernels: ``weights`` is ``size`` rows of ``size`` integers."""

    size: int
    scale: int
    offset: int
    weights: tuple[tuple[int, ...], ...]

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


@functools.lru_cache(maxsize=64)
def _correlation_kernel(name: str, device: torch.device) -> torch.Tensor:
    """The grid as a ``(1, k, k)`` float32 cross-correlation kernel: flipped vertically, not scaled.

    Cached per device: copying a host tensor to CUDA would otherwise wait for the stream on every
    call. Callers must not modify it.

    The weights stay integers (the division by ``scale`` comes after the sum): every product and
    partial sum is then an integer below 2**24, exact in float32 whatever order or algorithm the
    convolution uses, and exact in TF32 too (pixels need 8 bits, weights at most 6).
    """
    grid = torch.tensor(FILTER_TABLE[name].weights, dtype=torch.float32)
    return grid.flip(0).unsqueeze(0).to(device)


def _float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as C's ``float`` holds it."""
    return struct.unpack("f", struct.pack("f", value))[0]


def _pillow_float_sums(images: torch.Tensor, spec: FixedFilter) -> torch.Tensor:
    """``ss`` of the interior, computed in float32 in exactly the order Filter.c computes it.

    Filter.c: ``ss = offset + 0.5``, then for each grid row (grid row 0 against image row ``y + r``)
    ``ss += ((p0 * k0 + p1 * k1) + p2 * k2) ...`` with ``k = float(weight) / float(scale)``, each
    product and sum rounded to float32. Used only where ties make the order matter (see
    :attr:`FixedFilter.has_ties`); it costs one elementwise pass per non-zero weight. Products and
    sums are separate torch ops on purpose: a fused multiply-add (``addcmul``, or a compiler that
    contracts them) rounds once instead of twice and would no longer reproduce Pillow's x86 build.
    """
    k = spec.size
    r = k // 2
    _, _, h, w = images.shape
    x = images.to(torch.float32)
    ss = None
    for i, weights in enumerate(spec.weights):
        row = None
        for j, weight in enumerate(weights):
            if weight == 0:  # adds an exact 0.0 in Pillow: skipping it changes nothing
                continue
            # Image row y + r - i, column x + j - r, for every interior (y, x).
            tap = x[:, :, 2 * r - i : h - i, j : w - 2 * r + j]
            term = tap * _float32(_float32(weight) / _float32(spec.scale))
            row = term if row is None else row + term
        if row is not None:
            ss = row + _float32(spec.offset + 0.5) if ss is None else ss + row
    assert ss is not None  # every table entry has a non-zero weight
    return ss


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
    spec = FILTER_TABLE[name]
    b, _, h, w = images.shape
    out = images.clone()
    if b == 0 or h < spec.size or w < spec.size:
        return out

    if spec.has_ties:
        value = _pillow_float_sums(images, spec)
    else:
        # Kornia's filter2d is a cross-correlation (F.conv2d); 'valid' gives exactly the interior
        # Pillow computes, and the border stays the copied source. uint8 is promoted to float32
        # here (older Kornia releases would not do it for us).
        kernel = _correlation_kernel(name, images.device)
        sums = kornia.filters.filter2d(images.to(torch.float32), kernel, padding="valid")
        # The true sums are integers: rounding removes any error a fast convolution algorithm
        # (Winograd, FFT) may add, so every device gives the same result. Without ties, the exact
        # sum / scale rounds the way Pillow's float32 sum does.
        value = sums.round_().div_(spec.scale).add_(spec.offset + 0.5)
    # Pillow's clip8(ss): clamp to 0..255, then truncate (ss already holds the +0.5 of rounding).
    value = value.clamp_(0.0, 255.0).floor_()
    r = spec.size // 2
    out[:, :, r : h - r, r : w - r] = value.to(torch.uint8)
    return out
