"""Pillow's resampling weights (``libImaging/Resample.c``), computed on the host.

The filters and ``precompute_coeffs`` are written in Python floats (IEEE doubles), with the same
operations in the same order as Pillow's C, so the 22-bit fixed-point weights are identical to
Pillow's; NEAREST's source indices repeat Pillow's accumulated coordinate. Used by
:mod:`kernels.resize` (any device) and :mod:`kernels.resize_cpu` (the CPU's matmul passes).
"""

from __future__ import annotations

import functools
import math
import struct
from typing import NamedTuple

import torch

# Pillow's fixed point: 32 bits = 8 for the value + 2 for overshoot + 22 for the weights.
PRECISION_BITS = 32 - 8 - 2
HALF = 1 << (PRECISION_BITS - 1)


def _box(x: float) -> float:
    # Pillow's box_filter: 1 on (-0.5, 0.5], support 0.5.
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _bicubic(x: float) -> float:
    # Keys' cubic convolution with a = -0.5, written in Pillow's operation order.
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    # Truncated sinc, a = 3. Pillow's interval is half-open: [-3, 3).
    if -3.0 <= x < 3.0:
        return _sinc(x) * _sinc(x / 3)
    return 0.0


#: filter name -> (function, support in input pixels at scale 1).
_FILTERS = {
    "box": (_box, 0.5),
    "bilinear": (_bilinear, 1.0),
    "bicubic": (_bicubic, 2.0),
    "lanczos": (_lanczos, 3.0),
}


class Span(NamedTuple):
    """The source interval one pass resamples, as Pillow's resize ``box`` gives it along one axis:
    ``[in0, in1)`` in pixels of an axis ``size`` long, both float32 values (Pillow parses the box as
    C floats), and ``first``, the input index the pass's input starts at (the caller may hand the
    pass only the pixels its taps read, ``first`` onwards)."""

    size: int
    in0: float
    in1: float
    first: int


def float32(value: float) -> float:
    """``value`` rounded to the nearest IEEE single (C's ``float``), as a Python float."""
    return struct.unpack("f", struct.pack("f", value))[0]


def span_length(in0: float, in1: float) -> float:
    """C's ``in1 - in0`` on two floats: the difference rounded to single precision."""
    return float32(in1 - in0)


def pillow_coeffs(in_size: int, out_size: int, filter: str,
                  span: Span | None = None) -> tuple[list[int], list[list[int]]]:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc``, for the whole axis of
    ``in_size`` pixels or, with ``span``, for its ``[in0, in1)`` interval (a resize ``box``).

    Returns ``(xmin, weights)``: for output pixel ``xx`` the taps are input pixels
    ``xmin[xx] + i`` for ``i < len(weights[xx])`` (counted from ``span.first`` with a span), with
    int weights in 22-bit fixed point.
    """
    func, base_support = _FILTERS[filter]
    if span is None:
        span = Span(in_size, 0.0, float(in_size), 0)
    in_size, in0, first = span.size, span.in0, span.first
    # (double)(in1 - in0) / outSize, the difference in single precision (exact for whole pixels).
    scale = span_length(in0, span.in1) / out_size
    filterscale = max(scale, 1.0)
    support = base_support * filterscale
    ss = 1.0 / filterscale
    xmins: list[int] = []
    weights: list[list[int]] = []
    for xx in range(out_size):
        center = in0 + (xx + 0.5) * scale
        # C's (int) cast truncates toward zero; max/min clamp like Pillow's bounds checks.
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        ks = [func((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for k in ks:  # sequential sum, as in C
            ww += k
        if ww != 0.0:
            ks = [k / ww for k in ks]
        # Round half away from zero into fixed point; int() truncates like C's cast.
        one = 1 << PRECISION_BITS
        fixed = [int(-0.5 + k * one) if k < 0 else int(0.5 + k * one) for k in ks]
        xmins.append(xmin - first)
        weights.append(fixed)
    return xmins, weights


@functools.lru_cache(maxsize=256)
def nearest_table(in_size: int, out_size: int, device: torch.device, span: Span | None = None) -> torch.Tensor:
    """Source index (int64, ``(out_size,)``) of each output pixel for Pillow's NEAREST resize.

    Pillow maps with an affine transform (``ImagingScaleAffine``): the coordinate starts at
    ``step * 0.5`` and is advanced by repeated double addition of ``step = in / out``, then
    truncated. The repeated addition (not ``(j + 0.5) * step``) is reproduced here because its
    rounding can move a coordinate across an integer.

    With ``span`` (a resize ``box``: Pillow's ``ImagingScaleAffine`` with ``a[0]`` the span's
    single-precision length over ``out_size`` and ``a[2] = in0``) the coordinate starts at
    ``in0 + step * 0.5``, and indices count from ``span.first``.
    """
    if span is None:
        span = Span(in_size, 0.0, float(in_size), 0)
    step = span_length(span.in0, span.in1) / out_size
    pos = span.in0 + step * 0.5
    index = []
    for _ in range(out_size):
        # COORD(): negative -> -1 (outside); positions are never negative here, and never reach
        # the axis' end (the last one is in1 - step/2 up to rounding), but clamp to be safe.
        index.append(min(max(int(pos), 0), span.size - 1) - span.first)
        pos += step
    return torch.tensor(index, dtype=torch.int64, device=device)
