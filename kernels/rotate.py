"""Pillow's ``Image.rotate`` on ``(B, C, H, W)`` uint8 batches.

Pillow (src/PIL/Image.py ``rotate``, src/libImaging/Geometry.c) rotates in three ways, and so does
:func:`rotate`:

* an angle that is 0, 180, or 90/270 with ``expand`` or a square image (after ``angle % 360``) is
  a copy or an exact transpose: no resampling, no border;
* otherwise every output pixel centre ``(x + 0.5, y + 0.5)`` is mapped back to the source by an
  inverse affine matrix (float64, entries rounded to 15 decimals, as Pillow computes it):
  - ``nearest`` takes the source pixel ``floor`` of that point, in Pillow's 16.16 fixed point
    (``affine_fixed``) when every corner maps within 32768 pixels, else in float64;
  - ``bilinear`` (2x2) and ``bicubic`` (4x4, Pillow's transform cubic ``p1 + d(p2 + d(p3 + d p4))``,
    which is Keys' cubic with a = -1, not the a = -0.5 of ``resize``) interpolate in float64, in
    Geometry.c's order of operations, with the source edge clamped, then truncate to uint8
    (bicubic clamped to 0..255 first). LA and RGBA are interpolated premultiplied (Pillow
    converts to La/RGBa and back); the fill is premultiplied too, as
    ``ImageColor.getcolor(color, "RGBa")`` does.
  A pixel centre that maps outside ``[0, W) x [0, H)`` gets the fill colour.

The work runs in blocks of output rows, each over the columns that can map into the source, so
no float64 copy of a whole image is made; the sources are gathered as planes, every image of a
batch by the same indices.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from kernels._checks import check_images, has_alpha
from kernels.parallel import map_pieces, split
from kernels.resize import _premultiply, _unpremultiply
from kernels.transpose import transpose

#: Resampling filters ``rotate`` takes (Pillow's transform filters).
ROTATE_FILTERS = ("nearest", "bilinear", "bicubic")

#: Most output samples (B * C * rows * width) one block of the float64 interpolation holds, per
#: device type; about a dozen float64 temporaries of that size live at once.
_BLOCK_SAMPLES = {"cpu": 1 << 16}
_DEFAULT_BLOCK_SAMPLES = 1 << 23
#: Pillow's fixed-point nearest path holds coordinates within this many pixels (16.16 in an int).
_FIXED_LIMIT = 32768.0

Matrix = tuple[float, float, float, float, float, float]


def _plan(width: int, height: int, angle: float, expand: bool) -> tuple[str, tuple[int, int], Optional[Matrix]]:
    """How Pillow rotates a ``width`` x ``height`` image: ``(kind, (out_w, out_h), matrix)``.

    ``kind`` is ``"copy"``, ``"rot90"``, ``"rot180"``, ``"rot270"`` (matrix None) or ``"affine"``
    with the inverse matrix ``(a, b, c, d, e, f)``: output point ``(x, y)`` samples the source
    at ``(a x + b y + c, d x + e y + f)``. Mirrors ``Image.rotate`` (no centre, no translation).
    """
    angle = angle % 360.0
    if angle == 0:
        return "copy", (width, height), None
    if angle == 180:
        return "rot180", (width, height), None
    if angle in (90, 270) and (expand or width == height):
        return ("rot90" if angle == 90 else "rot270"), (height, width), None

    rad = -math.radians(angle)
    m = [round(math.cos(rad), 15), round(math.sin(rad), 15), 0.0,
         round(-math.sin(rad), 15), round(math.cos(rad), 15), 0.0]

    def transform(x: float, y: float) -> tuple[float, float]:
        return m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]

    cx, cy = width / 2, height / 2
    m[2], m[5] = transform(-cx, -cy)
    m[2] += cx
    m[5] += cy
    if expand:
        xs, ys = zip(*(transform(x, y) for x, y in ((0, 0), (width, 0), (width, height), (0, height))))
        new_w = math.ceil(max(xs)) - math.floor(min(xs))
        new_h = math.ceil(max(ys)) - math.floor(min(ys))
        m[2], m[5] = transform(-(new_w - width) / 2.0, -(new_h - height) / 2.0)
        width, height = new_w, new_h
    return "affine", (width, height), tuple(m)


def rotated_size(width: int, height: int, angle: float, expand: bool = True) -> tuple[int, int]:
    """The ``(width, height)`` of ``Image.rotate(angle, expand=expand)`` on a ``width`` x
    ``height`` image (degrees, counter-clockwise; any finite angle).

    >>> rotated_size(1920, 1080, 90), rotated_size(1920, 1080, 30), rotated_size(1920, 1080, 30, False)
    ((1080, 1920), (2204, 1896), (1920, 1080))
    """
    return _plan(width, height, float(angle), bool(expand))[1]


def mode_color(fill: Optional[Sequence[int]], channels: int) -> tuple[int, ...]:
    """A straight ``(r, g, b, a)`` colour as one value per channel of a ``channels``-channel
    image, as Pillow's ``ImageColor.getcolor(color, mode)`` gives it: L is the luma
    ``(19595 r + 38470 g + 7471 b + 0x8000) >> 16``, LA that and alpha, RGB drops alpha.
    None is transparent black. ValueError unless ``fill`` is 4 ints 0..255.

    >>> mode_color((255, 0, 0, 128), 1), mode_color((255, 0, 0, 128), 2), mode_color((9, 8, 7, 255), 3)
    ((76,), (76, 128), (9, 8, 7))
    """
    values = (0, 0, 0, 0) if fill is None else tuple(fill)
    if (len(values) != 4 or any(isinstance(v, bool) or not isinstance(v, int) for v in values)
            or any(not 0 <= v <= 255 for v in values)):
        raise ValueError(f"fill must be (r, g, b, a), four integers 0..255, got {fill!r}")
    r, g, b, a = values
    luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
    return {1: (luma,), 2: (luma, a), 3: (r, g, b), 4: (r, g, b, a)}[channels]


def _premultiplied_fill(fill: tuple[int, ...]) -> tuple[int, ...]:
    """``ImageColor.getcolor(color, "RGBa")`` (or ``"La"``): each colour ``round(c * a / 255)``."""
    alpha = fill[-1]
    return tuple(round(c * alpha / 255) for c in fill[:-1]) + (alpha,)


def _block_rows(samples_per_row: int, height: int, device: torch.device) -> int:
    limit = _BLOCK_SAMPLES.get(device.type, _DEFAULT_BLOCK_SAMPLES)
    return max(1, min(height, limit // max(1, samples_per_row)))


def _column_bounds(m: Matrix, width: int, height: int, out_w: int, out_h: int) -> list[tuple[int, int]]:
    """Per output row, the columns ``[lo, hi)`` whose pixel centres map into the source (with a
    2-pixel margin over what the float and fixed-point arithmetic can shift; the exact test is
    made per pixel later); ``(0, 0)`` where none do. Solved on the host, in float64."""
    yc = torch.arange(out_h, dtype=torch.float64) + 0.5
    lo = torch.full((out_h,), -math.inf, dtype=torch.float64)
    hi = torch.full((out_h,), math.inf, dtype=torch.float64)
    for a, b, size in ((m[0], yc * m[1] + m[2], width), (m[3], yc * m[4] + m[5], height)):
        # 0 <= a * u + b < size, for u = x + 0.5.
        if a == 0:
            outside = (b < -2) | (b > size + 2)
            lo = torch.where(outside, math.inf, lo)
        else:
            ends = ((-b) / a, (size - b) / a)
            lo = torch.maximum(lo, torch.minimum(*ends))
            hi = torch.minimum(hi, torch.maximum(*ends))
    first = (lo - 0.5).floor().sub_(2).clamp_(0, out_w)
    last = (hi - 0.5).ceil().add_(3).clamp_(0, out_w)
    return [(int(f), int(t)) if f < t else (0, 0) for f, t in zip(first.tolist(), last.tolist())]


def _nearest_coords(m: Matrix, rows: torch.Tensor, cols: torch.Tensor,
                    fixed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Source pixel ``(x, y)`` (int64, ``(len(rows), len(cols))``; out of range where outside)
    of each output pixel, as Pillow's nearest affine transform picks it."""
    if fixed:
        # affine_fixed: 16.16 fixed point, xx = a2 + y*a1 + x*a0, source = xx >> 16.
        a0, a1, a3, a4 = (math.floor(v * 65536.0 + 0.5) for v in (m[0], m[1], m[3], m[4]))
        a2 = math.floor((m[2] + m[0] * 0.5 + m[1] * 0.5) * 65536.0 + 0.5)
        a5 = math.floor((m[5] + m[3] * 0.5 + m[4] * 0.5) * 65536.0 + 0.5)
        xs = (rows * a1 + a2)[:, None] + cols * a0
        ys = (rows * a4 + a5)[:, None] + cols * a3
        return xs >> 16, ys >> 16
    # The float paths (ImagingScaleAffine, or AFFINE_TRANSFORM beyond the fixed-point range) step
    # the coordinates by repeated addition; here each is computed directly (identical where the
    # matrix is exact, as in the scale-only case; elsewhere within float64 rounding).
    rows_f, cols_f = rows.to(torch.float64), cols.to(torch.float64)
    xs = (m[2] + m[1] * 0.5 + m[0] * 0.5 + rows_f * m[1])[:, None] + cols_f * m[0]
    ys = (m[5] + m[4] * 0.5 + m[3] * 0.5 + rows_f * m[4])[:, None] + cols_f * m[3]
    return xs.floor().to(torch.int64), ys.floor().to(torch.int64)


def _cubic(v1: torch.Tensor, v2: torch.Tensor, v3: torch.Tensor, v4: torch.Tensor,
           d: torch.Tensor) -> torch.Tensor:
    """Geometry.c's ``BICUBIC`` in float64, its operations in its order (so its rounding):
    ``v2 + d (p2 + d (p3 + d p4))``, ``p2 = v3 - v1``, ``p3 = 2 (v1 - v2) + v3 - v4``,
    ``p4 = v2 - v1 - v3 + v4``. Integer inputs (int16) give exact ``p`` before the conversion."""
    p2 = v3 - v1
    p3 = (v1 - v2) * 2 + v3 - v4
    p4 = v2 - v1 - v3 + v4
    if p4.dtype != torch.float64:
        v2, p2, p3, p4 = (t.to(torch.float64) for t in (v2, p2, p3, p4))
    return p4.mul_(d).add_(p3).mul_(d).add_(p2).mul_(d).add_(v2)


def _interpolate(planes: torch.Tensor, width: int, height: int, xs: torch.Tensor, ys: torch.Tensor,
                 inside: torch.Tensor, filter: str) -> torch.Tensor:
    """Bilinear or bicubic samples of ``planes`` (uint8 ``(P, H * W + 1)``: the source planes, then
    the fill value) at float64 points ``xs``, ``ys`` (``(N,)``): float64 ``(P, N)`` before
    Pillow's conversion to uint8. The source edge is clamped; every tap of a point not
    ``inside`` reads the fill value, which the filters then return exactly."""
    xs, ys = xs - 0.5, ys - 0.5
    fx, fy = xs.floor(), ys.floor()
    dx, dy = xs.sub_(fx), ys.sub_(fy)
    fx, fy = fx.to(torch.int64), fy.to(torch.int64)
    taps, first = (2, 0) if filter == "bilinear" else (4, -1)
    outside = ~inside
    cols = [(fx + (first + k)).clamp_(0, width - 1).masked_fill_(outside, 0) for k in range(taps)]
    shape = (planes.shape[0], xs.shape[0])
    rows = []
    for k in range(taps):
        offset = (fy + (first + k)).clamp_(0, height - 1).mul_(width).masked_fill_(outside, width * height)
        if filter == "bilinear":
            v1, v2 = (torch.gather(planes, 1, (offset + col).expand(shape)).to(torch.float64) for col in cols)
            rows.append(v2.sub_(v1).mul_(dx).add_(v1))
        else:
            taps_k = (torch.gather(planes, 1, (offset + col).expand(shape)).to(torch.int16) for col in cols)
            rows.append(_cubic(*taps_k, dx))
    if filter == "bilinear":
        v1, v2 = rows
        return v2.sub_(v1).mul_(dy).add_(v1)
    return _cubic(*rows, dy)


def rotate(images: torch.Tensor, angle: float, expand: bool = True, filter: str = "bicubic",
           fill: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Rotate every image ``angle`` degrees counter-clockwise about its centre, as
    ``Image.rotate(angle, resample=filter, expand=expand, fillcolor=...)`` does.

    Args:
        images: uint8 ``(B, C, H, W)``, values 0..255, C in 1..4 (L, LA, RGB, RGBA; alpha last).
            B may be 0. Not modified.
        angle: degrees, counter-clockwise; any finite number (taken ``% 360``).
        expand: True: the output holds the whole rotated image (Pillow's size rule, see
            :func:`rotated_size`); False: the output keeps ``H x W`` and the corners are cut.
        filter: ``"nearest"``, ``"bilinear"`` or ``"bicubic"`` (:data:`ROTATE_FILTERS`).
        fill: the colour of the area outside the rotated image, straight ``(r, g, b, a)`` ints
            0..255, taken in the image's mode as Pillow's ``ImageColor.getcolor`` takes it
            (:func:`mode_color`: luma for L and LA, no alpha for L and RGB); None: transparent
            black. With bilinear/bicubic on LA/RGBA it is premultiplied and unpremultiplied with
            the image, as in Pillow, so a translucent fill may come back a level or so from the
            value given.

    Returns:
        A new uint8 ``(B, C, out_h, out_w)`` tensor on the input's device, ``(out_w, out_h) =
        rotated_size(W, H, angle, expand)``.

    Example:
        >>> x = torch.randint(0, 256, (2, 3, 1080, 1920), dtype=torch.uint8)
        >>> rotate(x, 30).shape, rotate(x, 90).shape, rotate(x, 30, expand=False).shape
        (torch.Size([2, 3, 1896, 2204]), torch.Size([2, 3, 1920, 1080]), torch.Size([2, 3, 1080, 1920]))
    """
    check_images(images)
    if filter not in ROTATE_FILTERS:
        raise ValueError(f"filter must be one of {', '.join(ROTATE_FILTERS)}; got {filter!r}")
    if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not math.isfinite(angle):
        raise ValueError(f"angle must be a finite number of degrees, got {angle!r}")
    batch, channels, h, w = images.shape
    fill = mode_color(fill, channels)
    kind, (out_w, out_h), m = _plan(w, h, float(angle), bool(expand))
    if kind == "copy":
        return images.clone()
    if kind == "rot180":
        return images.flip(2, 3)
    if kind in ("rot90", "rot270"):
        return transpose(images, "rotate_90" if kind == "rot90" else "rotate_270")

    premultiplied = filter != "nearest" and has_alpha(images)
    if batch == 0:
        return images.new_empty((batch, channels, out_h, out_w))
    source = _premultiply(images) if premultiplied else images
    out = _transform(source, m, out_w, out_h, filter, _premultiplied_fill(fill) if premultiplied else fill)
    return _unpremultiply(out) if premultiplied else out


def _sample_block(planes: torch.Tensor, m: Matrix, size: tuple[int, int], block: tuple[int, int, int, int],
                  filter: str, fixed: bool) -> torch.Tensor:
    """The output pixels of rows ``[top, bottom)`` x columns ``[c0, c1)`` (``block``) from
    ``planes`` (uint8 ``(P, H * W + 1)``, the last column the fill value; ``size = (W, H)``):
    uint8 ``(P, rows * columns)``."""
    (w, h), (top, bottom, c0, c1) = size, block
    device = planes.device
    rows = torch.arange(top, bottom, dtype=torch.int64, device=device)
    if filter == "nearest":
        xs, ys = _nearest_coords(m, rows, torch.arange(c0, c1, dtype=torch.int64, device=device), fixed)
        xs, ys = xs.reshape(-1), ys.reshape(-1)
        inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        index = ys.clamp_(0, h - 1).mul_(w).add_(xs.clamp_(0, w - 1)).masked_fill_(~inside, h * w)
        return torch.gather(planes, 1, index.expand(planes.shape[0], -1))
    # affine_transform: xin = a0 (x + 0.5) + a1 (y + 0.5) + a2, in float64.
    cols = torch.arange(c0, c1, dtype=torch.float64, device=device) + 0.5
    rows_f = rows.to(torch.float64) + 0.5
    xs = ((cols * m[0])[None, :] + (rows_f * m[1])[:, None] + m[2]).reshape(-1)
    ys = ((cols * m[3])[None, :] + (rows_f * m[4])[:, None] + m[5]).reshape(-1)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    sampled = _interpolate(planes, w, h, xs, ys, inside, filter)
    if filter == "bicubic":
        sampled = sampled.clamp_(0.0, 255.0)
    return sampled.to(torch.uint8)  # truncation toward zero, as the C cast


def _transform(source: torch.Tensor, m: Matrix, out_w: int, out_h: int, filter: str,
               fill: tuple[int, ...]) -> torch.Tensor:
    """Pillow's affine transform of every image of ``source`` (uint8 ``(B, C, H, W)``, B >= 1)
    onto ``out_h x out_w``: a new uint8 ``(B, C, out_h, out_w)``, ``fill`` (one value per
    channel) where the pixel centre maps outside the source."""
    batch, channels, h, w = source.shape
    device = source.device
    # The planes, (B * C, H * W + 1), contiguous (one uint8 copy), the last column the fill value:
    # a point outside the source gathers that column.
    planes = torch.empty((batch * channels, h * w + 1), dtype=torch.uint8, device=device)
    planes[:, : h * w].view(batch, channels, h, w).copy_(source)
    planes[:, h * w] = torch.tensor(fill * batch, dtype=torch.uint8, device=device)
    out = torch.empty((batch, channels, out_h, out_w), dtype=torch.uint8, device=device)
    for c, value in enumerate(fill):
        out[:, c].fill_(value)
    out_planes = out.view(batch * channels, out_h, out_w)
    fixed = filter == "nearest" and all(
        abs(x * m[0] + y * m[1] + m[2]) < _FIXED_LIMIT and abs(x * m[3] + y * m[4] + m[5]) < _FIXED_LIMIT
        for x, y in ((0, 0), (out_w, out_h), (0, out_h), (out_w, 0)))
    bounds = _column_bounds(m, w, h, out_w, out_h)
    step = _block_rows(batch * channels * out_w, out_h, device)
    blocks = []  # (top, bottom, first column, end column) of each block that meets the source
    for top in range(0, out_h, step):
        spans = [b for b in bounds[top : top + step] if b[1] > b[0]]
        if spans:
            blocks.append((top, min(top + step, out_h), min(b[0] for b in spans), max(b[1] for b in spans)))

    def run(piece: Sequence[tuple[int, int, int, int]]) -> None:
        for top, bottom, c0, c1 in piece:
            values = _sample_block(planes, m, (w, h), (top, bottom, c0, c1), filter, fixed)
            out_planes[:, top:bottom, c0:c1] = values.view(-1, bottom - top, c1 - c0)

    # The blocks write disjoint parts of the output: spread over the worker's image threads, if any.
    map_pieces(run, split(blocks))
    return out
