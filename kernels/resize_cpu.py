"""Pillow's resampling passes on the CPU, as exact float64 matrix products over blocks of outputs.

A pass maps N input pixels to ``out_size`` outputs along one dimension with Pillow's fixed-point
weights (:func:`kernels.resize_weights.pillow_coeffs`). Here the outputs are cut into blocks of
``per_block`` neighbours; a block's outputs read only a short window of the input, so the pass is
a batched matmul ``weights (blocks, per_block, window) @ windows (blocks, window, M)``.

Why a matmul is exact: every weight is an integer times ``2**-22`` and every pixel an integer
below 256, so each product and each partial sum is a multiple of ``2**-22`` far below ``2**31``
in magnitude (Pillow's own int32 accumulator cannot overflow either), and float64 (53-bit
significand) represents all of them exactly, in any summation order. The sum is therefore
Pillow's int32 sum times ``2**-22``, and ``floor(sum + 0.5)`` clipped to 0..255 is its
``clip8((sum + (1 << 21)) >> 22)``.

Two ways to get the windows:

* **strided** (:class:`StridedBand`), when the scale is a ratio of small integers (1920 -> 800
  is 12/5): block ``b``'s window then starts ``b * stride`` pixels after block 0's, so all windows
  are one strided view of the image widened to float64, along either dimension, with no copy and
  no transpose. 1080p -> 800x450 Lanczos on one thread: 15.4 ms (Pillow: 18.5 ms).
* **gathered** (:class:`GatheredBand`), any scale: the windows' rows are gathered with
  ``index_select`` (whole rows: contiguous copies) and widened; the horizontal pass transposes the
  image first and back after. 1080p -> 777x437: 22.5 ms (Pillow: 18.5 ms).

Work is cut into cache-sized chunks that write disjoint parts of the output; runs of chunks go to
:func:`kernels.parallel.map_pieces`.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from typing import List, NamedTuple, Tuple

import torch

from .parallel import map_pieces, split
from .resize_weights import PRECISION_BITS, pillow_coeffs

#: Input pixels one block's outputs are centred over, roughly: more outputs per block mean wider
#: windows (more multiplications by zero), fewer mean smaller, slower matrix products.
_BLOCK_SPAN = 24

#: Largest block and stride the strided layout accepts (beyond, its windows get wide).
_MAX_STRIDED = 64

#: Most input elements (as float64: 2 MB) one chunk holds. With the chunk loops compiled
#: (:func:`_without_the_gil`) 2**16 to 2**18 give the same speed (the reference resize: 15.5 ms on
#: one thread, 7.7-8.0 ms per image on two; 2**19 is slower); run as Python, smaller chunks mean
#: more calls, which two threads serialise on the interpreter lock (10.3 ms at 2**18, 12.3 at 2**17).
_CHUNK_ELEMENTS = 1 << 18


class GatheredBand(NamedTuple):
    """Block ``b`` reads input pixels ``index[b]`` (int64 ``(blocks, window)``; clamped, padding
    taps weigh 0) with ``weight[b]`` (float64 ``(blocks, per_block, window)``, times 2**-22)."""

    index: torch.Tensor
    weight: torch.Tensor


class StridedBand(NamedTuple):
    """Block ``b`` reads input pixels ``offset + b * stride + t`` for ``t < window`` (outside the
    image they weigh 0) with ``weight[b]`` (float64 ``(blocks, per_block, window)``, times
    2**-22; ``weight_t`` is the same transposed, ``(blocks, window, per_block)``, contiguous)."""

    per_block: int
    stride: int
    offset: int
    weight: torch.Tensor
    weight_t: torch.Tensor


def _block_weights(xmins: list[int], weights: list[list[int]], per_block: int, starts: list[int],
                   window: int) -> torch.Tensor:
    """Pillow's weights placed in blocks: output ``j`` is row ``j % per_block`` of block
    ``j // per_block``, its taps at ``xmins[j] - starts[block]``. Float64, scaled by 2**-22."""
    weight = torch.zeros((len(starts), per_block, window), dtype=torch.float64)
    for j, taps in enumerate(weights):
        block, row = divmod(j, per_block)
        first = xmins[j] - starts[block]
        weight[block, row, first : first + len(taps)] = torch.tensor(taps, dtype=torch.float64)
    return weight * 2.0**-PRECISION_BITS  # a power of two: exact


@functools.lru_cache(maxsize=256)
def gathered_band(in_size: int, out_size: int, filter: str) -> GatheredBand:
    """The gathered layout of a pass (any scale); cached per size pair and filter."""
    xmins, weights = pillow_coeffs(in_size, out_size, filter)
    per_block = max(1, min(out_size, round(_BLOCK_SPAN * out_size / in_size)))
    starts = [xmins[b] for b in range(0, out_size, per_block)]
    window = max(xmins[j] + len(weights[j]) - starts[j // per_block] for j in range(out_size))
    index = [[min(start + t, in_size - 1) for t in range(window)] for start in starts]
    return GatheredBand(torch.tensor(index), _block_weights(xmins, weights, per_block, starts, window))


@functools.lru_cache(maxsize=256)
def strided_band(in_size: int, out_size: int, filter: str) -> StridedBand | None:
    """The strided layout of a pass, or None when the scale is not a ratio of small integers.

    With ``in_size / out_size = stride / per_block`` in lowest terms times k, output ``j + per_block``
    sits exactly ``stride`` input pixels after output ``j``, so its window does too. Pillow's
    windows are clamped at the image's edges and rounded, so the shared window is widened to hold
    every block's taps (``offset`` may be negative: the first windows start before the image).
    """
    g = math.gcd(in_size, out_size)
    per_block, stride = out_size // g, in_size // g
    if per_block > _MAX_STRIDED or stride > _MAX_STRIDED:
        return None
    k = max(1, min(round(_BLOCK_SPAN / stride), _MAX_STRIDED // per_block))
    per_block, stride = per_block * k, stride * k
    xmins, weights = pillow_coeffs(in_size, out_size, filter)
    offset = min(xmins[j] - (j // per_block) * stride for j in range(out_size))
    end = max(xmins[j] + len(weights[j]) - (j // per_block) * stride for j in range(out_size))
    starts = [offset + b * stride for b in range(0, -(-out_size // per_block))]
    weight = _block_weights(xmins, weights, per_block, starts, end - offset)
    return StridedBand(per_block, stride, offset, weight, weight.transpose(1, 2).contiguous())


def resample_pass(images: torch.Tensor, out_size: int, filter: str, dim: int) -> torch.Tensor:
    """One Pillow pass along ``dim`` (2: height, 3: width) of CPU uint8 ``(B, C, H, W)``.

    The input may have any strides: the strided layout reads each plane where it lies (a decoded
    JPEG is channels-last, and copying it to planes first cost more than the pass saves).
    """
    batch, channels, height, width = images.shape
    band = strided_band(images.shape[dim], out_size, filter)
    if band is not None:
        planes = [plane for image in images for plane in image]  # (H, W) views, strides kept
        strided = _strided_width if dim == 3 else _strided_rows
        out = strided(planes, (height, width), out_size, band)
    else:
        planes = images.reshape(batch * channels, height, width)
        if dim == 3:
            out = _transposed(_gathered_rows(_transposed(planes), out_size, gathered_band(width, out_size, filter)))
        else:
            out = _gathered_rows(planes, out_size, gathered_band(height, out_size, filter))
    shape = (height, out_size) if dim == 3 else (out_size, width)
    return out.view(batch, channels, *shape)


def _round_into(out: torch.Tensor, sums: torch.Tensor) -> None:
    """``out`` (uint8) = Pillow's clip8 of ``sums`` (float64, times 2**-22 already): floor(x + 0.5)
    clipped to 0..255, as clamp then the uint8 cast's truncation. ``sums`` is overwritten."""
    out.copy_(sums.add_(0.5).clamp_(0, 255))


def _strided_width(planes: list[torch.Tensor], size: tuple[int, int], out_size: int,
                   band: StridedBand) -> torch.Tensor:
    """The pass along the width of P planes ``(H, N)`` (any strides), windows as a strided view.

    Per chunk of a plane's rows (:func:`_width_chunks`): widen them to float64 in a zero-padded
    buffer, then one batched matmul ``windows (blocks, rows, window) @ weight_t (blocks, window,
    per_block)``. Returns ``(P, H, out_size)`` uint8.
    """
    height, in_size = size
    blocks, window, _ = band.weight_t.shape
    out = torch.empty((len(planes), height, out_size), dtype=torch.uint8)
    pad_left = max(0, -band.offset)
    width = pad_left + max(in_size, band.offset + (blocks - 1) * band.stride + window)
    step = max(1, _CHUNK_ELEMENTS // width)
    chunks = [(p, r0) for p in range(len(planes)) for r0 in range(0, height, step)]
    run = _without_the_gil(_width_chunks)
    map_pieces(lambda part: run(planes, part, out, band.weight_t, band.stride, band.offset, pad_left, width, step),
               split(chunks))
    return out


def _width_chunks(planes: List[torch.Tensor], chunks: List[Tuple[int, int]], out: torch.Tensor,
                  weight_t: torch.Tensor, stride: int, offset: int, pad_left: int, width: int,
                  step: int) -> None:
    """The chunks ``(plane, first row)`` of :func:`_strided_width` (TorchScript-compatible)."""
    blocks, window, per_block = weight_t.shape[0], weight_t.shape[1], weight_t.shape[2]
    height, in_size, out_size = planes[0].shape[0], planes[0].shape[1], out.shape[2]
    whole = out_size // per_block  # blocks whose outputs all exist (the last may be cut short)
    buffer = torch.zeros((step, width), dtype=torch.float64)  # the pads stay 0
    for chunk in chunks:
        p, r0 = chunk
        n = min(step, height - r0)
        buffer[:n, pad_left : pad_left + in_size].copy_(planes[p][r0 : r0 + n])
        windows = buffer.as_strided([blocks, n, window], [stride, width, 1], pad_left + offset)
        sums = torch.bmm(windows, weight_t)  # (blocks, n, per_block)
        rows = out[p, r0 : r0 + n]
        if whole > 0:
            _round_into(rows[:, : whole * per_block].view(n, whole, per_block), sums[:whole].transpose(0, 1))
        if whole < blocks:
            _round_into(rows[:, whole * per_block :], sums[whole, :, : out_size - whole * per_block])


def _strided_rows(planes: list[torch.Tensor], size: tuple[int, int], out_size: int,
                  band: StridedBand) -> torch.Tensor:
    """The pass along the height of P planes ``(N, M)`` (any strides), windows as a strided view.

    Per chunk of blocks of one plane (:func:`_rows_chunks`): widen the input rows their windows
    cover (a slab) to float64, then one batched matmul ``weight (blocks, per_block, window) @
    windows (blocks, window, M)``; rows outside the image are zeros. Returns ``(P, out_size, M)``.
    """
    _, length = size
    blocks = band.weight.shape[0]
    out = torch.empty((len(planes), out_size, length), dtype=torch.uint8)
    step = max(1, _CHUNK_ELEMENTS // (band.stride * length))
    chunks = [(p, b0) for p in range(len(planes)) for b0 in range(0, blocks, step)]
    run = _without_the_gil(_rows_chunks)
    map_pieces(lambda part: run(planes, part, out, band.weight, band.stride, band.offset, step), split(chunks))
    return out


def _rows_chunks(planes: List[torch.Tensor], chunks: List[Tuple[int, int]], out: torch.Tensor,
                 weight: torch.Tensor, stride: int, offset: int, step: int) -> None:
    """The chunks ``(plane, first block)`` of :func:`_strided_rows` (TorchScript-compatible)."""
    blocks, per_block, window = weight.shape[0], weight.shape[1], weight.shape[2]
    in_size, length, out_size = planes[0].shape[0], planes[0].shape[1], out.shape[1]
    slab = torch.empty(((step - 1) * stride + window, length), dtype=torch.float64)
    for chunk in chunks:
        p, b0 = chunk
        n = min(step, blocks - b0)
        first = offset + b0 * stride  # input row of the slab's row 0
        last = first + (n - 1) * stride + window
        start, stop = max(first, 0), min(last, in_size)
        if start > first or stop < last:
            slab.zero_()
        slab[start - first : stop - first].copy_(planes[p][start:stop])
        windows = slab.as_strided([n, window, length], [stride * length, length, 1], 0)
        sums = torch.bmm(weight[b0 : b0 + n], windows)  # (n, per_block, M)
        end = min((b0 + n) * per_block, out_size)
        _round_into(out[p, b0 * per_block : end], sums.view(-1, length)[: end - b0 * per_block])


_compile_lock = threading.Lock()  # one compile at a time: warning filters are process-wide


@functools.cache
def _without_the_gil(function):
    """``function`` compiled by TorchScript, or ``function`` itself where TorchScript is gone.

    Why: the worker resizes two images at once on two threads, and a resize is a few hundred torch
    calls; between calls each thread needs Python's interpreter lock, which made two threads only
    1.6x one. TorchScript's interpreter runs the whole chunk loop without that lock (the width
    pass, 8 images: 10.0 ms each on one thread, 4.9 ms on two). torch 2.14 marks
    ``torch.jit.script`` deprecated (a FutureWarning, silenced here); if a later torch drops it,
    the same code runs as Python, only slower on two threads.
    """
    try:
        with _compile_lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.script(function)
    except Exception:  # noqa: BLE001 - TorchScript removed or broken: run the Python
        return function


def _gathered_rows(planes: torch.Tensor, out_size: int, band: GatheredBand) -> torch.Tensor:
    """The pass along dim 1 of ``(P, N, M)`` planes with gathered windows (any scale).

    Per chunk of planes and blocks: gather the blocks' input rows (whole rows: contiguous copies),
    widen them to float64, one batched matmul with the blocks' weights.
    """
    blocks, per_block, window = band.weight.shape
    count, _, length = planes.shape
    out = torch.empty((count, out_size, length), dtype=torch.uint8)
    per_block_elements = window * length
    plane_step = max(1, min(count, _CHUNK_ELEMENTS // per_block_elements))
    block_step = max(1, min(blocks, _CHUNK_ELEMENTS // (plane_step * per_block_elements)))
    chunks = [
        (p0, min(p0 + plane_step, count), b0, min(b0 + block_step, blocks))
        for p0 in range(0, count, plane_step)
        for b0 in range(0, blocks, block_step)
    ]

    def run(run_of_chunks) -> None:
        # Buffers for one chunk, allocated once per run (a fresh large tensor per chunk costs
        # page faults).
        gathered8 = torch.empty(plane_step * block_step * per_block_elements, dtype=torch.uint8)
        gathered = torch.empty(gathered8.numel(), dtype=torch.float64)
        for p0, p1, b0, b1 in run_of_chunks:
            shape = (p1 - p0, b1 - b0, window, length)
            rows8 = gathered8[: math.prod(shape)].view(shape[0], -1, length)
            torch.index_select(planes[p0:p1], 1, band.index[b0:b1].flatten(), out=rows8)
            rows = gathered[: rows8.numel()].view(shape)
            rows.copy_(rows8.view(shape))
            sums = torch.matmul(band.weight[b0:b1], rows)  # (planes, blocks, per_block, M)
            stop = min(b1 * per_block, out_size)
            _round_into(out[p0:p1, b0 * per_block : stop], sums.view(shape[0], -1, length)[:, : stop - b0 * per_block])

    map_pieces(run, split(chunks))
    return out


def _transposed(planes: torch.Tensor) -> torch.Tensor:
    """``planes.transpose(1, 2)`` of ``(P, H, W)``, contiguous, in column runs (map_pieces)."""
    count, height, width = planes.shape
    out = torch.empty((count, width, height), dtype=planes.dtype)
    step = -(-width // len(split(range(width))))

    def run(start: int) -> None:
        out[:, start : start + step].copy_(planes[:, :, start : start + step].transpose(1, 2))

    map_pieces(run, range(0, width, step))
    return out
