"""Resize a batch exactly as Pillow's ``Image.resize`` does (Pillow 13, 8-bit modes).

Why not Kornia: its ``resize(antialias=True)`` blurs with a Gaussian and then interpolates, which
is not Pillow's filter (measured on a photo, 257x193 -> 100x75: up to 23 levels off with
bilinear). ``torch.nn.functional.interpolate(antialias=True)`` follows Pillow's rule for bilinear
and bicubic but rounds its weights differently (1 level off on a few pixels), has no Lanczos and
no premultiplied alpha. So this module rebuilds Pillow's convolution resampler
(``libImaging/Resample.c``) rule for rule:

* each output pixel ``xx`` has a window of input pixels centred on ``(xx + 0.5) * scale`` whose
  half-width is the filter's support times ``max(scale, 1)`` (the filter is stretched when
  downscaling, which is the antialiasing); the double weights are normalised per output pixel and
  then turned into 22-bit fixed point (rounded half away from zero);
* each pass is ``clip8((1 << 21) + sum(pixel * weight) >> 22)`` with Pillow's int32 sums, with
  uint8 in between (on CPU the sums are float64 matrix products, which hold them exactly, see
  :mod:`kernels.resize_cpu`; on CUDA one compiled int32 gather-and-sum kernel per pass, see
  :mod:`kernels.resize_cuda`; elsewhere an int32 loop over the taps); horizontal first, then
  vertical, except that Pillow 13 goes vertical first when the height shrinks by more than twice
  as many pixels as the width; a pass is skipped when its dimension does not change;
* LA and RGBA are resized premultiplied (Pillow's ``RGBA -> RGBa -> resize -> RGBA`` with its
  integer formulas), except with NEAREST;
* NEAREST is Pillow's nearest-neighbour affine scaling, including its accumulated coordinates.

The weight tables are computed on the host (:mod:`kernels.resize_weights`, Pillow's own
arithmetic in IEEE doubles, so the fixed-point weights are identical) once per size pair and
filter, and cached; the pixel path is batched torch on the input's device with no host syncs.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
from typing import Optional, Sequence

import torch

from . import resize_cpu, resize_cuda
from ._checks import check_images, has_alpha
from .resize_weights import HALF, PRECISION_BITS, Span, float32, nearest_table, pillow_coeffs, span_length

__all__ = ["RESAMPLING_FILTERS", "resize"]

#: Filters ``resize`` accepts, by Pillow's name (``Image.Resampling.<NAME>``), lower case.
RESAMPLING_FILTERS = ("nearest", "bilinear", "bicubic", "lanczos")


@functools.lru_cache(maxsize=256)
def _resample_table(
    in_size: int, out_size: int, filter: str, device: torch.device, span: Span | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tap indices (int64) and fixed-point weights (int32), both ``(K, out_size)`` on ``device``.

    Tap ``k`` of output pixel ``j`` reads input pixel ``index[k, j]`` with weight ``weight[k, j]``.
    Windows shorter than K (at the borders) are padded with weight 0 on a clamped index, so every
    output pixel sums exactly Pillow's taps. Cached: the same tensors come back for the same key.
    """
    xmins, weights = pillow_coeffs(in_size, out_size, filter, span)
    taps = max(len(w) for w in weights)
    index = [[min(xmin + k, in_size - 1) for xmin in xmins] for k in range(taps)]
    weight = [[w[k] if k < len(w) else 0 for w in weights] for k in range(taps)]
    return (
        torch.tensor(index, dtype=torch.int64, device=device),
        torch.tensor(weight, dtype=torch.int32, device=device),
    )


#: Most output elements one chunk of the tap loop works on (on CPU its int32 buffers stay in
#: cache; only tests run it there). Other devices do a pass in one chunk, where fewer, larger
#: kernel launches win.
_CPU_CHUNK_ELEMENTS = 1 << 17


def _resample_rows_taps(planes: torch.Tensor, out_size: int, filter: str, span: Span | None = None) -> torch.Tensor:
    """The pass on ``(P, N, M)`` uint8 planes as a loop over the K taps, accumulating in int32."""
    index, weight = _resample_table(planes.shape[1], out_size, filter, planes.device, span)
    count, _, length = planes.shape
    out = torch.empty((count, out_size, length), dtype=torch.uint8, device=planes.device)
    per_row = count * length
    if planes.device.type == "cpu":
        rows = max(1, min(out_size, _CPU_CHUNK_ELEMENTS // per_row))
    else:
        rows = out_size
    # Buffers for one chunk of output rows, allocated once; the first n rows' worth of each is a
    # contiguous (planes, n, M) view.
    acc_buf = torch.empty(rows * per_row, dtype=torch.int32, device=planes.device)
    tap32_buf = torch.empty(rows * per_row, dtype=torch.int32, device=planes.device)
    tap8_buf = torch.empty(rows * per_row, dtype=torch.uint8, device=planes.device)
    for start in range(0, out_size, rows):
        stop = min(start + rows, out_size)
        shape = (count, stop - start, length)
        acc = acc_buf[: shape[0] * shape[1] * length].view(shape)
        tap32 = tap32_buf[: acc.numel()].view(shape)
        tap8 = tap8_buf[: acc.numel()].view(shape)
        acc.fill_(HALF)
        # Loop over the K taps accumulating in int32 (exact, as Pillow): memory stays at one
        # output chunk instead of a (..., out, M, K) gather.
        for k in range(index.shape[0]):
            torch.index_select(planes, 1, index[k, start:stop], out=tap8)
            tap32.copy_(tap8)
            acc.addcmul_(tap32, weight[k, start:stop].view(-1, 1))
        # clip8: arithmetic shift (floor), then clamp to 0..255.
        acc >>= PRECISION_BITS
        out[:, start:stop].copy_(acc.clamp_(0, 255))
    return out


def _resample_pass(images: torch.Tensor, out_size: int, filter: str, dim: int,
                   span: Span | None = None) -> torch.Tensor:
    """One Pillow pass along ``dim`` (2: height, 3: width) of ``(B, C, H, W)``; uint8 out; with
    ``span``, of that interval of the axis (a resize box; ``images`` holds the axis from
    ``span.first`` on).

    On CPU, exact float64 matrix products (:mod:`kernels.resize_cpu`); elsewhere :func:`_taps_pass`.
    """
    if images.device.type == "cpu":
        return resize_cpu.resample_pass(images, out_size, filter, dim, span)
    return _taps_pass(images, out_size, filter, dim, span)


def _taps_pass(images: torch.Tensor, out_size: int, filter: str, dim: int, span: Span | None = None) -> torch.Tensor:
    """The pass as a loop over the taps in int32 on whole rows, on any device; on CUDA the same
    sum as one compiled kernel (:mod:`kernels.resize_cuda`) unless that is off or cannot compile.

    ``index_select`` along dim 2 copies contiguous rows; along the last dim it would go one byte
    at a time, so the width pass transposes first and back after.
    """
    batch, channels = images.shape[:2]
    if images.device.type == "cuda":  # one compiled kernel per pass where torch.compile works
        index, weight = _resample_table(images.shape[dim], out_size, filter, images.device, span)
        planes = images.reshape(batch * channels, *images.shape[2:])
        out = resize_cuda.compiled_pass(planes, index, weight, dim - 1)
        if out is not None:
            return out.view(batch, channels, *out.shape[1:])
    if dim == 3:
        images = images.transpose(2, 3).contiguous()
    planes = images.reshape(batch * channels, *images.shape[2:])
    out = _resample_rows_taps(planes, out_size, filter, span).view(batch, channels, out_size, -1)
    return out.transpose(2, 3).contiguous() if dim == 3 else out


#: Most elements one block of :func:`_premultiply` / :func:`_unpremultiply` widens to int32 at a
#: time on the CPU (1 MB); other devices take larger blocks (fewer kernel launches).
_ALPHA_BLOCK_ELEMENTS = 1 << 18
_CUDA_ALPHA_BLOCK_ELEMENTS = 1 << 24


def _row_blocks(images: torch.Tensor, width: int | None = None) -> list[slice]:
    """Slices of rows (dim 2) covering ``(B, C, H, W)`` in blocks of a bounded element count
    (rows of ``width`` elements per plane, default ``W``)."""
    b, c, h, w = images.shape
    w = w if width is None else width
    limit = _ALPHA_BLOCK_ELEMENTS if images.device.type == "cpu" else _CUDA_ALPHA_BLOCK_ELEMENTS
    rows = max(1, min(h, limit // max(1, b * c * w)))
    return [slice(top, top + rows) for top in range(0, h, rows)]


def _premultiply(images: torch.Tensor) -> torch.Tensor:
    """Pillow's RGBA -> RGBa (and LA -> La): colour = MULDIV255(colour, alpha), alpha kept.

    A new contiguous uint8 tensor; the int32 arithmetic runs in blocks of rows (:func:`_row_blocks`).
    """
    out = torch.empty(images.shape, dtype=torch.uint8, device=images.device)
    out[:, -1:] = images[:, -1:]
    for rows in _row_blocks(images):
        alpha = images[:, -1:, rows].to(torch.int32)
        t = images[:, :-1, rows].to(torch.int32).mul_(alpha).add_(128)
        out[:, :-1, rows] = t.add_(t >> 8).bitwise_right_shift_(8)
    return out


def _unpremultiply(images: torch.Tensor) -> torch.Tensor:
    """Pillow's RGBa -> RGBA (and La -> LA): colour = min(255, 255 * colour // alpha).

    Alpha 0 and 255 keep the colour as it is. The result is written in place, in blocks of rows
    (:func:`_row_blocks`), and returned.
    """
    for rows in _row_blocks(images):
        alpha = images[:, -1:, rows].to(torch.int32)
        colour = images[:, :-1, rows].to(torch.int32)
        divided = torch.div(colour * 255, alpha.clamp(min=1), rounding_mode="floor").clamp_(max=255)
        keep = (alpha == 0) | (alpha == 255)
        images[:, :-1, rows] = torch.where(keep, colour, divided)
    return images


def _pass_order(in_h: int, in_w: int, out_h: int, out_w: int, spans=None) -> list[tuple[int, int]]:
    """The ``(dim, out_size)`` passes Pillow runs, in its order.

    A pass is skipped when its dimension keeps its size. Pillow 13 (python-pillow/Pillow#9549)
    runs the vertical pass first when the height shrinks by more than twice as many pixels as the
    width does (measured against Pillow 13 on both sides of that edge); otherwise horizontal first.
    The order matters because the intermediate image is rounded to uint8.
    """
    passes = []
    if (out_w != in_w) if spans is None else 3 in spans:
        passes.append((3, out_w))
    if (out_h != in_h) if spans is None else 2 in spans:
        passes.append((2, out_h))
    if len(passes) == 2 and out_h < in_h and in_h - out_h > 2 * (in_w - out_w):
        passes.reverse()
    return passes


def _check_size(size) -> tuple[int, int]:
    try:
        out_h, out_w = size
        values = (operator.index(out_h), operator.index(out_w))
    except (TypeError, ValueError):
        values = None
    if (
        values is None
        or any(isinstance(v, bool) for v in size)
        or values[0] < 1
        or values[1] < 1
    ):
        raise ValueError(
            f"size must be (out_height, out_width), two integers >= 1, got {size!r}"
        )
    return values


def _check_box(box, in_w: int, in_h: int) -> tuple[float, float, float, float]:
    """``box = (left, top, right, bottom)`` as Pillow parses it (four C floats), or ValueError
    unless it is a non-empty rectangle inside the image."""
    try:
        if len(box) != 4 or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in box):
            raise TypeError
        values = tuple(float32(float(v)) for v in box)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"box must be (left, top, right, bottom), four numbers, got {box!r}") from None
    left, top, right, bottom = values
    if not all(math.isfinite(v) for v in values) or not (0 <= left < right <= in_w and 0 <= top < bottom <= in_h):
        raise ValueError(f"box {box!r} must be a non-empty rectangle inside the {in_w}x{in_h} image "
                         f"(0 <= left < right <= width, 0 <= top < bottom <= height)")
    return values  # type: ignore[return-value]


@functools.lru_cache(maxsize=256)
def _axis(size: int, in0: float, in1: float, out_size: int, filter: str) -> Span:
    """The span of one axis' pass, ``first`` set to the first input pixel its taps read (cached:
    the coefficients are computed in Python)."""
    xmins, _ = pillow_coeffs(size, out_size, filter, Span(size, in0, in1, 0))
    return Span(size, in0, in1, xmins[0])


@functools.lru_cache(maxsize=256)
def _taps_end(span: Span, out_size: int, filter: str) -> int:
    """One past the last input pixel a pass over ``span`` reads (counted from 0)."""
    xmins, weights = pillow_coeffs(span.size, out_size, filter, span)
    return span.first + max(x + len(w) for x, w in zip(xmins, weights))


def resize(images: torch.Tensor, size: tuple[int, int], filter: str = "lanczos",
           box: Optional[Sequence[float]] = None) -> torch.Tensor:
    """Resize a batch to ``size`` with Pillow's ``Image.resize(size, resample, box)`` result.

    Args:
        images: uint8 ``(B, C, H, W)``, values 0..255, C in 1..4 (L, LA, RGB, RGBA; alpha is the
            last channel when C is even). B may be 0. Not modified.
        size: ``(out_height, out_width)`` in pixels, each >= 1. Note the order: Pillow's
            ``resize`` takes ``(width, height)``.
        filter: one of :data:`RESAMPLING_FILTERS` (``"nearest"``, ``"bilinear"``,
            ``"bicubic"``, ``"lanczos"``), Pillow's filter of the same name.
        box: the source region ``(left, top, right, bottom)`` in pixels, fractions allowed
            (rounded to single precision, as Pillow does), inside the image; None: the whole
            image. Pillow's rules with a box: its filter window is centred in the box but reads
            the image's pixels beyond it; a box of whole pixels the size of the output is a crop.

    Returns:
        A new uint8 ``(B, C, out_height, out_width)`` tensor on the input's device, equal to
        Pillow's result per image (LA and RGBA resized premultiplied, except with NEAREST).

    Example:
        >>> x = torch.randint(0, 256, (2, 3, 1080, 1920), dtype=torch.uint8)
        >>> resize(x, (450, 800)).shape, resize(x, (300, 400), box=(240.5, 0, 1680.5, 1080)).shape
        (torch.Size([2, 3, 450, 800]), torch.Size([2, 3, 300, 400]))
    """
    check_images(images)
    if filter not in RESAMPLING_FILTERS:
        raise ValueError(f"filter must be one of {', '.join(RESAMPLING_FILTERS)}; got {filter!r}")
    out_h, out_w = _check_size(size)
    batch, channels, in_h, in_w = images.shape
    whole = (0.0, 0.0, float(in_w), float(in_h))
    left, top, right, bottom = whole if box is None else _check_box(box, in_w, in_h)

    if batch == 0:
        return images.new_empty((0, channels, out_h, out_w))
    if (out_h, out_w) == (in_h, in_w) and (left, top, right, bottom) == whole:
        return images.clone()  # Pillow returns a copy (before any premultiplication)

    # Pillow's _resize: a box of whole pixels the output's size is a crop (after RGBA -> RGBa).
    if (left == int(left) and top == int(top) and span_length(left, right) == out_w
            and span_length(top, bottom) == out_h):
        x0, y0 = int(left), int(top)
        out = images[:, :, y0 : y0 + out_h, x0 : x0 + out_w]
        if filter != "nearest" and has_alpha(images):
            return _unpremultiply(_premultiply(out))  # the round trip through RGBa is not lossless
        return out.clone()

    if filter == "nearest":
        rows = nearest_table(in_h, out_h, images.device, Span(in_h, top, bottom, 0))
        cols = nearest_table(in_w, out_w, images.device, Span(in_w, left, right, 0))
        # gather with a stride-0 index beats index_select along the last dim on the CPU
        # (BENCHMARKS.md, "Why the kernels' constants").
        # Output rows in blocks: the picked rows (the intermediate) hold one block.
        out = images.new_empty((batch, channels, out_h, out_w))
        for block in _row_blocks(out, max(in_w, out_w)):
            picked = images.index_select(2, rows[block])
            out[:, :, block] = torch.gather(picked, 3, cols.expand(batch, channels, picked.shape[2], out_w))
        return out

    # A pass per axis Pillow resamples (ImagingResampleInner's need_horizontal/need_vertical:
    # note its comparison of the box's far edge with the output size); each reads only the
    # pixels its taps reach, so the image is cut to those first (Pillow's ybox_first..ybox_last).
    spans: dict[int, Span] = {}
    if out_w != in_w or left != 0 or right != out_w:
        spans[3] = _axis(in_w, left, right, out_w, filter)
    if out_h != in_h or top != 0 or bottom != out_h:
        spans[2] = _axis(in_h, top, bottom, out_h, filter)
    out = images
    if box is not None:
        for dim, span in spans.items():
            out = out.narrow(dim, span.first, _taps_end(span, out_w if dim == 3 else out_h, filter) - span.first)
    if has_alpha(images):
        out = _premultiply(out)
    for dim, out_size in _pass_order(in_h, in_w, out_h, out_w, spans):
        out = _resample_pass(out, out_size, filter, dim, None if box is None else spans[dim])
    if has_alpha(images):
        out = _unpremultiply(out)
    return out
