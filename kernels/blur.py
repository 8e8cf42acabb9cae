"""Pillow's ``BoxBlur``, ``GaussianBlur`` and ``UnsharpMask`` on uint8 batches.

What Pillow does (``src/libImaging/BoxBlur.c``, ``UnsharpMask.c``), which these kernels reproduce
exactly (0 levels apart on the test photos):

* A box blur of radius ``R`` (a C ``float``) runs ``n`` horizontal passes, then ``n`` vertical
  ones; every pass rounds to uint8. A pass is the "extended box": with ``r = int(R)``,
  ``ww = (UINT32)(2**24 / (R * 2 + 1))`` (float32 division) and
  ``fw = (2**24 - (2r + 1) * ww) / 2`` (integers), each output is
  ``(ww * sum(p[x-r .. x+r]) + fw * (p[x-r-1] + p[x+r+1]) + 2**23) >> 24``, with the indices
  clamped to the line (edge pixels repeated). A radius of 0 in a direction skips that direction.
  ``BoxBlur(radius)`` is one pass (``n = 1``).
* ``GaussianBlur(radius)`` is three passes (``n = 3``) of the box radius Pillow derives from the
  standard deviation in float32 (``_gaussian_blur_radius``, :func:`gaussian_box_radius`).
* ``UnsharpMask(radius, percent, threshold)``: the Gaussian blur, then per value
  ``diff = in - blurred``; where ``abs(diff) > threshold`` the result is
  ``clip8(in + diff * percent / 100)`` (C integer division, truncating towards zero), else ``in``.
* Every band is filtered, alpha included (``BoxBlur``, ``GaussianBlur`` and ``UnsharpMask`` are
  ``MultibandFilter``: ``Image.filter`` hands the whole image to C, which blurs all four bytes).

How: a pass is a cumulative sum along the line (int32) of the edge-padded line, so the window
sum is a difference of two sums and the cost does not depend on the radius; the weighting and
rounding run in float64 on the CPU (exact: every value is an integer below 2**41; AVX2 has no
int64 multiply) and int64 elsewhere. The work goes in pieces of rows (horizontal passes) and
strips of columns (vertical passes), all ``n`` passes of a direction on one piece while it is in
cache, so no temporary is larger than a piece.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from kernels._checks import check_images, per_image
from kernels.parallel import map_pieces, split

#: Elements of one plane in one piece on the CPU (a piece's int32/float64 temporaries stay in a
#: few MB of cache), and of the whole batch elsewhere (CUDA: few, large launches, bounded memory).
CPU_PIECE_ELEMENTS = 1 << 16
PIECE_ELEMENTS = 1 << 23

_F32 = np.float32


def gaussian_box_radius(radius: float, passes: int = 3) -> float:
    """Pillow's ``_gaussian_blur_radius``: the extended box radius whose ``passes`` passes make a
    Gaussian of standard deviation ``radius``, computed in float32 (and double where C does)."""
    radius32 = _F32(radius)
    sigma2 = _F32(radius32 * radius32) / _F32(passes)
    big_l = _F32(math.sqrt(12.0 * float(sigma2) + 1.0))
    small_l = _F32(math.floor((float(big_l) - 1.0) / 2.0))
    a = (_F32(2) * small_l + _F32(1)) * (small_l * (small_l + _F32(1)) - _F32(3) * sigma2)
    a = a / (_F32(6) * (sigma2 - (small_l + _F32(1)) * (small_l + _F32(1))))
    return float(_F32(small_l + a))


def _weights(radius: float) -> tuple[int, int, int]:
    """``(r, ww, fw)`` of BoxBlur.c for a float32 radius."""
    radius32 = _F32(radius)
    r = int(radius32)
    ww = int(_F32(_F32(1 << 24) / (radius32 * _F32(2) + _F32(1))))
    fw = ((1 << 24) - (2 * r + 1) * ww) // 2
    return r, ww, fw


def _line_passes(x: torch.Tensor, dim: int, r: int, ww: int, fw: int, passes: int) -> torch.Tensor:
    """``passes`` extended-box passes of uint8 ``x`` along ``dim``; returns uint8 of ``x``'s shape.

    Pillow's ``ww * sum(p[x-r .. x+r]) + fw * (p[x-r-1] + p[x+r+1])`` is
    ``(ww - fw) * box(2r + 1) + fw * box(2r + 3)``, both box sums differences of one running sum
    ``S`` of the edge-padded line: a few passes of arithmetic, whatever the radius. Everything is
    scaled by ``2**-24`` and held in float64, where every value is a multiple of ``2**-24`` below
    ``2**20``: exact. Adding 0.5 and truncating (the conversion to uint8; the values are >= 0) is
    Pillow's ``(bulk + 2**23) >> 24``.
    """
    n = x.shape[dim]
    # Padded index k holds p[clamp(k - r - 2)], k in 0 .. n + 2r + 2, so that for output x
    # box(2r + 1) = S[x + 2r + 2] - S[x + 1] and box(2r + 3) = S[x + 2r + 3] - S[x].
    near, far = (ww - fw) * 2.0**-24, fw * 2.0**-24
    for _ in range(passes):
        first, last = x.narrow(dim, 0, 1), x.narrow(dim, n - 1, 1)
        ends = list(x.shape)
        ends[dim] = r + 2
        left = first.expand(ends)
        ends[dim] = r + 1
        padded = torch.cat([left, x, last.expand(ends)], dim)
        sums = padded.cumsum(dim, dtype=torch.float64)
        bulk = sums.narrow(dim, 2 * r + 2, n).sub(sums.narrow(dim, 1, n)).mul_(near)
        if fw:
            bulk.add_(sums.narrow(dim, 2 * r + 3, n).sub(sums.narrow(dim, 0, n)), alpha=far)
        x = bulk.add_(0.5).to(torch.uint8)
    return x


def _box_blur(images: torch.Tensor, radius: float, passes: int) -> torch.Tensor:
    """``passes`` horizontal then ``passes`` vertical extended-box passes of a float32 radius."""
    r, ww, fw = _weights(radius)
    out = images.clone(memory_format=torch.contiguous_format)
    b, c, h, w = images.shape
    if b == 0 or _F32(radius) == 0:
        return out
    planes = out.view(b * c, h, w)
    if images.device.type == "cpu":
        rows = max(1, CPU_PIECE_ELEMENTS // (w + 2 * r + 2))
        cols = max(1, CPU_PIECE_ELEMENTS // (h + 2 * r + 2))
        row_pieces = [(slice(p, p + 1), slice(t, t + rows)) for p in range(b * c) for t in range(0, h, rows)]
        col_pieces = [(slice(p, p + 1), slice(t, t + cols)) for p in range(b * c) for t in range(0, w, cols)]
    else:
        rows = max(1, PIECE_ELEMENTS // (b * c * (w + 2 * r + 2)))
        cols = max(1, PIECE_ELEMENTS // (b * c * (h + 2 * r + 2)))
        row_pieces = [(slice(None), slice(t, t + rows)) for t in range(0, h, rows)]
        col_pieces = [(slice(None), slice(t, t + cols)) for t in range(0, w, cols)]

    def horizontal(part):
        for plane, band in part:
            planes[plane, band] = _line_passes(planes[plane, band], 2, r, ww, fw, passes)

    def vertical(part):
        for plane, strip in part:
            planes[plane, :, strip] = _line_passes(planes[plane, :, strip], 1, r, ww, fw, passes)

    # Each piece writes only its own rows (then columns): the pieces may run at once.
    map_pieces(horizontal, split(row_pieces))
    map_pieces(vertical, split(col_pieces))
    return out


def _check_radius(radius: object, name: str = "radius") -> float:
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {radius!r}")
    return float(radius)


def box_blur(images: torch.Tensor, radius: float) -> torch.Tensor:
    """Pillow's ``Image.filter(ImageFilter.BoxBlur(radius))``.

    Args:
        images: uint8 ``(B, C, H, W)``, C in 1..4; every channel is blurred, alpha included.
        radius: >= 0, any real value (the fractional part weighs the two pixels just outside the
            box); 0 returns a copy.

    Returns:
        A new uint8 ``(B, C, H, W)`` tensor on the input's device.

    Example:
        >>> x = torch.randint(0, 256, (2, 3, 40, 30), dtype=torch.uint8)
        >>> box_blur(x, 2.5).shape
        torch.Size([2, 3, 40, 30])
    """
    check_images(images)
    return _box_blur(images, _check_radius(radius), 1)


def gaussian_blur(images: torch.Tensor, radius: float) -> torch.Tensor:
    """Pillow's ``Image.filter(ImageFilter.GaussianBlur(radius))``: three extended box blurs.

    Args:
        images: uint8 ``(B, C, H, W)``, C in 1..4; every channel is blurred, alpha included.
        radius: the standard deviation, >= 0; 0 returns a copy. The cost does not grow with it.

    Returns:
        A new uint8 ``(B, C, H, W)`` tensor on the input's device.
    """
    check_images(images)
    radius = _check_radius(radius)
    if radius == 0:
        return images.clone(memory_format=torch.contiguous_format)
    return _box_blur(images, gaussian_box_radius(radius), 3)


def _int_per_plane(name: str, value: object, images: torch.Tensor) -> int | torch.Tensor:
    """An integer argument as it is, or a per-image int ``(B,)`` tensor as int32 ``(B * C, 1, 1)``
    on the images' device (one row per plane of ``images.reshape(B * C, H, W)``)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            raise ValueError(f"{name} per image must be integers, got {value.dtype}")
        per_plane = per_image(name, value, images.shape[0]).to(torch.int32).repeat_interleave(images.shape[1])
        return per_plane.view(-1, 1, 1).to(images.device, non_blocking=True)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def unsharp_mask(images: torch.Tensor, radius: float = 2, percent: int | torch.Tensor = 150,
                 threshold: int | torch.Tensor = 3) -> torch.Tensor:
    """Pillow's ``Image.filter(ImageFilter.UnsharpMask(radius, percent, threshold))``.

    Args:
        images: uint8 ``(B, C, H, W)``, C in 1..4; every channel is sharpened, alpha included.
        radius: the Gaussian blur's standard deviation, >= 0.
        percent: the strength, an integer (150: add 1.5 times the difference to the blur).
        threshold: an integer; values within it of the blur are left as they are.
        (``percent`` and ``threshold`` may each be an int ``(B,)`` tensor instead, one per image:
        each image then gets the same int32 arithmetic with its own.)

    Returns:
        A new uint8 ``(B, C, H, W)`` tensor on the input's device.
    """
    check_images(images)
    radius = _check_radius(radius)
    b, c, h, w = images.shape
    percent = _int_per_plane("percent", percent, images)
    threshold = _int_per_plane("threshold", threshold, images)
    blurred = gaussian_blur(images, radius)  # a new tensor: the result is written into it
    src = images.reshape(b * c, h, w)
    dst = blurred.view(b * c, h, w)
    rows = max(1, (CPU_PIECE_ELEMENTS if images.device.type == "cpu" else PIECE_ELEMENTS) // max(1, b * c * w))
    for top in range(0, h, rows):
        band = slice(top, top + rows)
        x = src[:, band].to(torch.int32)
        diff = x - dst[:, band]
        sharp = diff.mul(percent).div_(100, rounding_mode="trunc").add_(x).clamp_(0, 255)
        dst[:, band] = torch.where(diff.abs_() > threshold, sharp, x)
    return blurred
