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

* **phased** (:class:`PhasedBand`), for most scales: when ``in / out = T / Q`` in lowest terms,
  output ``o + Q`` sits exactly ``T`` input pixels after output ``o``. Cut each period of Q
  outputs into phases of a few neighbours; the windows of one phase, period after period, are then
  one strided view of the image widened to float64, along either dimension: no copy and no
  transpose. 1920 -> 800 is 12/5 (one phase of 10 outputs per 24 inputs), 4032 -> 800 is 126/25
  (five phases of 5 outputs per 126 inputs).
* **gathered** (:class:`GatheredBand`), when a period would need too many phases (an output size
  with a large prime factor): the windows' rows are gathered with ``index_select`` (whole rows:
  contiguous copies) and widened; the horizontal pass transposes the image first and back after.

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
from .resize_weights import PRECISION_BITS, Span, pillow_coeffs
from .transpose import transposed

#: Input pixels one block's outputs are centred over, roughly: more outputs per block mean wider
#: windows (more multiplications by zero), fewer mean smaller, slower matrix products.
_BLOCK_SPAN = 24

#: Most outputs per block. An upscale's outputs have only a few taps each, and a block of 58
#: outputs (800 -> 1920 at ``_BLOCK_SPAN``) multiplies mostly zeros; blocks of 16 are faster there
#: and leave downscales as they are (BENCHMARKS.md, "Why the kernels' constants").
_MAX_PER_BLOCK = 16

#: Most phases the phased layout cuts a period into (each is one matmul per chunk); beyond, the
#: gathered layout is faster (BENCHMARKS.md, "Why the kernels' constants").
_MAX_PHASES = 64

#: Most float64 elements (2 MB) one chunk's input and sums hold. With the chunk loops compiled
#: (:func:`_without_the_gil`) 2**16 to 2**18 give the same speed and 2**19 is slower; run as
#: Python, smaller chunks mean more calls, which two threads serialise on the interpreter lock
#: (BENCHMARKS.md, "Why the kernels' constants").
_CHUNK_ELEMENTS = 1 << 18

#: Longest rows (elements) the height pass of :func:`_rows_pass` takes at once; longer rows are
#: cut into bands of columns. A chunk holds at least one block's window of rows in float64.
_MAX_ROW_LENGTH = 1 << 13


class GatheredBand(NamedTuple):
    """Block ``b`` reads input pixels ``index[b]`` (int64 ``(blocks, window)``; clamped, padding
    taps weigh 0) with ``weight[b]`` (float64 ``(blocks, per_block, window)``, times 2**-22)."""

    index: torch.Tensor
    weight: torch.Tensor


class Phase(NamedTuple):
    """One phase of a :class:`PhasedBand`: its block ``b`` computes outputs
    ``b * period_out + first_out + r`` (``r < per_block``) from input pixels
    ``offset + b * period_in + t`` (``t < window``; outside the image they weigh 0), with
    ``weight[b]`` (float64 ``(blocks, per_block, window)``, times 2**-22); ``weight_t`` is the same
    transposed, ``(blocks, window, per_block)``, contiguous."""

    first_out: int
    offset: int
    weight: torch.Tensor
    weight_t: torch.Tensor


class PhasedBand(NamedTuple):
    """A pass whose outputs repeat their input positions every ``period_out`` outputs, shifted by
    ``period_in`` input pixels, cut into phases of neighbouring outputs (see the module doc)."""

    period_out: int
    period_in: int
    phases: list[Phase]


def _block_weights(places: list[tuple[int, int, int]], xmins: list[int], weights: list[list[int]],
                   starts: list[int], shape: tuple[int, int, int]) -> torch.Tensor:
    """Pillow's weights laid out in blocks: ``places`` holds ``(block, row, output)``; the output's
    taps go to ``weight[block, row]`` from column ``xmins[output] - starts[block]``. Float64 of
    ``shape``, scaled by 2**-22."""
    _, per_block, window = shape
    positions: list[int] = []
    values: list[int] = []
    for block, row, j in places:
        first = (block * per_block + row) * window + xmins[j] - starts[block]
        positions.extend(range(first, first + len(weights[j])))
        values.extend(weights[j])
    weight = torch.zeros(math.prod(shape), dtype=torch.float64)
    weight[torch.tensor(positions, dtype=torch.int64)] = torch.tensor(values, dtype=torch.float64)
    return weight.view(shape) * 2.0**-PRECISION_BITS  # a power of two: exact


def _per_block(in_size: int, out_size: int) -> int:
    """Outputs per block: those centred over about ``_BLOCK_SPAN`` input pixels, at most
    ``_MAX_PER_BLOCK``. More mean wider windows (more multiplications by zero), fewer mean
    smaller, slower matrix products."""
    return max(1, min(out_size, _MAX_PER_BLOCK, round(_BLOCK_SPAN * out_size / in_size)))


@functools.lru_cache(maxsize=256)
def gathered_band(in_size: int, out_size: int, filter: str, span: Span | None = None) -> GatheredBand:
    """The gathered layout of a pass (any scale, any :class:`~kernels.resize_weights.Span`);
    cached per size pair, filter and span."""
    xmins, weights = pillow_coeffs(in_size, out_size, filter, span)
    per_block = _per_block(in_size, out_size)
    starts = [xmins[b] for b in range(0, out_size, per_block)]
    window = max(xmins[j] + len(weights[j]) - starts[j // per_block] for j in range(out_size))
    index = [[min(start + t, in_size - 1) for t in range(window)] for start in starts]
    places = [(j // per_block, j % per_block, j) for j in range(out_size)]
    weight = _block_weights(places, xmins, weights, starts, (len(starts), per_block, window))
    return GatheredBand(torch.tensor(index), weight)


@functools.lru_cache(maxsize=256)
def phased_band(in_size: int, out_size: int, filter: str) -> PhasedBand | None:
    """The phased layout of a pass, or None when a period would need over ``_MAX_PHASES`` phases.

    Pillow's windows are clamped at the image's edges and rounded, so each phase's shared window
    is widened to hold all its blocks' taps (``offset`` may be negative: the first windows start
    before the image).
    """
    g = math.gcd(in_size, out_size)
    period_out, period_in = out_size // g, in_size // g
    per_block = _per_block(in_size, out_size)
    if period_out < per_block:  # several periods make one block: one phase
        k = max(1, min(round(per_block / period_out), out_size // period_out))
        period_out, period_in, per_block = period_out * k, period_in * k, period_out * k
    if -(-period_out // per_block) > _MAX_PHASES:
        return None
    xmins, weights = pillow_coeffs(in_size, out_size, filter)
    by_phase: dict[int, list[tuple[int, int, int]]] = {}  # first_out -> (block, row, output)
    for o in range(out_size):
        block, place = divmod(o, period_out)
        first_out = place - place % per_block
        by_phase.setdefault(first_out, []).append((block, place - first_out, o))
    phases = []
    for first_out, outputs in by_phase.items():
        count = min(per_block, period_out - first_out)  # the period's last phase may be shorter
        offset = min(xmins[o] - b * period_in for b, _, o in outputs)
        end = max(xmins[o] + len(weights[o]) - b * period_in for b, _, o in outputs)
        blocks = outputs[-1][0] + 1
        starts = [offset + b * period_in for b in range(blocks)]
        weight = _block_weights(outputs, xmins, weights, starts, (blocks, count, end - offset))
        phases.append(Phase(first_out, offset, weight, weight.transpose(1, 2).contiguous()))
    return PhasedBand(period_out, period_in, phases)


def resample_pass(images: torch.Tensor, out_size: int, filter: str, dim: int,
                  span: Span | None = None) -> torch.Tensor:
    """One Pillow pass along ``dim`` (2: height, 3: width) of CPU uint8 ``(B, C, H, W)``.

    The input may have any strides: the phased layout reads each plane where it lies (a decoded
    JPEG is channels-last, and copying it to planes first cost more than the pass saves). The
    height pass of a channels-last image works on each image's ``(H, W * C)`` rows, which are
    contiguous there (every channel at once, whole rows gathered), and returns channels-last;
    otherwise the result is contiguous. With ``span`` (a resize box along ``dim``) the pass takes
    the gathered layout: a box's windows do not repeat by whole pixels.
    """
    batch, channels, height, width = images.shape
    shape = (height, out_size) if dim == 3 else (out_size, width)
    interleaved = images.permute(0, 2, 3, 1)  # (B, H, W, C)
    if dim == 2 and channels > 1 and interleaved.is_contiguous():
        rows = interleaved.reshape(batch, height, width * channels)
        out = _rows_pass(rows, out_size, filter, span)  # (B, out_size, W * C)
        return out.view(batch, out_size, width, channels).permute(0, 3, 1, 2)
    band = None if span is not None else phased_band(images.shape[dim], out_size, filter)
    if band is not None:
        planes = [plane for image in images for plane in image]  # (H, W) views, strides kept
        phased = _phased_width if dim == 3 else _phased_rows
        out = phased(planes, (height, width), out_size, band)
    else:
        planes = images.reshape(batch * channels, height, width)
        if dim == 3:
            out = _gathered_width(planes, out_size, gathered_band(width, out_size, filter, span))
        else:
            out = _gathered_rows(planes, out_size, gathered_band(height, out_size, filter, span))
    return out.view(batch, channels, *shape)


#: Elements of the input one band of :func:`_gathered_width` transposes at a time (8 MB: smaller
#: bands cost more in calls than they save; BENCHMARKS.md, "Memory per job"), and fewest rows in
#: a band.
_WIDTH_BAND_ELEMENTS = 1 << 23
_WIDTH_BAND_MIN_ROWS = 16


def _gathered_width(planes: torch.Tensor, out_size: int, band: GatheredBand) -> torch.Tensor:
    """The gathered pass along the width of ``(P, H, N)`` planes, in bands of rows: each band is
    transposed, resampled along its rows and transposed back into the output, so the transposed
    copies hold one band, not the image. Returns ``(P, H, out_size)`` uint8."""
    count, height, width = planes.shape
    out = torch.empty((count, height, out_size), dtype=torch.uint8)
    rows = max(_WIDTH_BAND_MIN_ROWS, _WIDTH_BAND_ELEMENTS // (count * width))
    for top in range(0, height, rows):
        part = _gathered_rows(transposed(planes[:, top : top + rows]), out_size, band)
        out[:, top : top + rows] = transposed(part)
    return out


def _rows_pass(planes: torch.Tensor, out_size: int, filter: str, span: Span | None = None) -> torch.Tensor:
    """The pass along dim 1 of ``(P, N, M)`` uint8 planes whose rows are contiguous;
    ``(P, out_size, M)`` uint8 out.

    Columns are independent in this pass: rows longer than :data:`_MAX_ROW_LENGTH` are done in
    bands of columns, so a chunk's float64 window stays small however wide the image is.
    """
    count, in_size, length = planes.shape
    band = None if span is not None else phased_band(in_size, out_size, filter)

    def run(columns: torch.Tensor) -> torch.Tensor:
        if band is not None:
            return _phased_rows(list(columns), tuple(columns.shape[1:]), out_size, band)
        return _gathered_rows(columns, out_size, gathered_band(in_size, out_size, filter, span))

    if length <= _MAX_ROW_LENGTH:
        return run(planes)
    out = torch.empty((count, out_size, length), dtype=torch.uint8)
    for start in range(0, length, _MAX_ROW_LENGTH):
        stop = min(start + _MAX_ROW_LENGTH, length)
        out[:, :, start:stop] = run(planes[:, :, start:stop])
    return out


def _round_into(out: torch.Tensor, sums: torch.Tensor) -> None:
    """``out`` (uint8) = Pillow's clip8 of ``sums`` (float64, times 2**-22 already): floor(x + 0.5)
    clipped to 0..255, as clamp then the uint8 cast's truncation. ``sums`` is overwritten."""
    out.copy_(sums.add_(0.5).clamp_(0, 255))


def _phased_width(planes: list[torch.Tensor], size: tuple[int, int], out_size: int,
                  band: PhasedBand) -> torch.Tensor:
    """The pass along the width of P planes ``(H, N)`` (any strides), windows as strided views.

    Per chunk of a plane's rows (:func:`_width_chunks`): widen them to float64 in a zero-padded
    buffer, then per phase one batched matmul ``windows (blocks, rows, window) @ weight_t (blocks,
    window, per_block)``. Returns ``(P, H, out_size)`` uint8.
    """
    height, in_size = size
    out = torch.empty((len(planes), height, out_size), dtype=torch.uint8)
    pad_left = max(0, -min(phase.offset for phase in band.phases))
    width = pad_left + max([in_size] + [phase.offset + (phase.weight.shape[0] - 1) * band.period_in
                                        + phase.weight.shape[2] for phase in band.phases])
    step = max(1, _CHUNK_ELEMENTS // (width + out_size))  # a chunk's input and sums, in float64
    chunks = [(p, r0) for p in range(len(planes)) for r0 in range(0, height, step)]
    run = _without_the_gil(_width_chunks)
    weights_t = [phase.weight_t for phase in band.phases]
    offsets = [pad_left + phase.offset for phase in band.phases]
    first_outs = [phase.first_out for phase in band.phases]
    map_pieces(lambda part: run(planes, part, out, weights_t, offsets, first_outs, band.period_in,
                                band.period_out, pad_left, width, step), split(chunks))
    return out


def _width_chunks(planes: List[torch.Tensor], chunks: List[Tuple[int, int]], out: torch.Tensor,
                  weights_t: List[torch.Tensor], offsets: List[int], first_outs: List[int],
                  period_in: int, period_out: int, pad_left: int, width: int, step: int) -> None:
    """The chunks ``(plane, first row)`` of :func:`_phased_width` (TorchScript-compatible).

    ``offsets`` are the phases' window offsets in the padded buffer; a phase's block ``b`` writes
    output columns ``b * period_out + first_out + r``.
    """
    height, in_size, out_size = planes[0].shape[0], planes[0].shape[1], out.shape[2]
    buffer = torch.zeros((step, width), dtype=torch.float64)  # the pads stay 0
    for chunk in chunks:
        p, r0 = chunk
        n = min(step, height - r0)
        buffer[:n, pad_left : pad_left + in_size].copy_(planes[p][r0 : r0 + n])
        rows = out[p, r0 : r0 + n]
        for j in range(len(weights_t)):
            weight_t = weights_t[j]
            blocks, window, per_block = weight_t.shape[0], weight_t.shape[1], weight_t.shape[2]
            windows = buffer.as_strided([blocks, n, window], [period_in, width, 1], offsets[j])
            sums = torch.bmm(windows, weight_t)  # (blocks, n, per_block)
            whole = _whole_blocks(out_size, first_outs[j], per_block, period_out, blocks)
            if whole > 0:
                columns = rows.as_strided([n, whole, per_block], [out_size, period_out, 1],
                                          rows.storage_offset() + first_outs[j])
                _round_into(columns, sums[:whole].transpose(0, 1))
            start = whole * period_out + first_outs[j]
            if whole < blocks and start < out_size:
                _round_into(rows[:, start:out_size], sums[whole, :, : out_size - start])


def _phased_rows(planes: list[torch.Tensor], size: tuple[int, int], out_size: int,
                 band: PhasedBand) -> torch.Tensor:
    """The pass along the height of P planes ``(N, M)`` (any strides), windows as strided views.

    Per chunk of periods of one plane (:func:`_rows_chunks`): widen the input rows the chunk's
    windows cover (a slab) to float64, then per phase one batched matmul ``weight (blocks,
    per_block, window) @ windows (blocks, window, M)``; rows outside the image are zeros.
    Returns ``(P, out_size, M)`` uint8.
    """
    _, length = size
    out = torch.empty((len(planes), out_size, length), dtype=torch.uint8)
    slab_offset = min(phase.offset for phase in band.phases)
    reach = max(phase.offset + phase.weight.shape[2] for phase in band.phases) - slab_offset
    step = max(1, _CHUNK_ELEMENTS // ((band.period_in + band.period_out) * length))  # slab and sums
    periods = band.phases[0].weight.shape[0]
    chunks = [(p, b0) for p in range(len(planes)) for b0 in range(0, periods, step)]
    run = _without_the_gil(_rows_chunks)
    weights = [phase.weight for phase in band.phases]
    offsets = [phase.offset - slab_offset for phase in band.phases]
    first_outs = [phase.first_out for phase in band.phases]
    map_pieces(lambda part: run(planes, part, out, weights, offsets, first_outs, band.period_in,
                                band.period_out, slab_offset, reach, step), split(chunks))
    return out


def _rows_chunks(planes: List[torch.Tensor], chunks: List[Tuple[int, int]], out: torch.Tensor,
                 weights: List[torch.Tensor], offsets: List[int], first_outs: List[int],
                 period_in: int, period_out: int, slab_offset: int, reach: int, step: int) -> None:
    """The chunks ``(plane, first period)`` of :func:`_phased_rows` (TorchScript-compatible).

    A chunk's slab starts at input row ``slab_offset + b0 * period_in``; ``offsets`` are the
    phases' window offsets within a period's part of it, ``reach`` how far a period's windows go.
    """
    in_size, length, out_size = planes[0].shape[0], planes[0].shape[1], out.shape[1]
    slab = torch.empty(((step - 1) * period_in + reach, length), dtype=torch.float64)
    for chunk in chunks:
        p, b0 = chunk
        first = slab_offset + b0 * period_in  # input row of the slab's row 0
        last = first + slab.shape[0]
        start, stop = max(first, 0), min(last, in_size)
        if start > first or stop < last:
            slab.zero_()
        slab[start - first : stop - first].copy_(planes[p][start:stop])
        plane_out = out[p]
        for j in range(len(weights)):
            weight = weights[j]
            blocks, per_block, window = weight.shape[0], weight.shape[1], weight.shape[2]
            n = min(step, blocks - b0)
            if n > 0:
                windows = slab.as_strided([n, window, length], [period_in * length, length, 1], offsets[j] * length)
                sums = torch.bmm(weight[b0 : b0 + n], windows)  # (n, per_block, M)
                first_out = b0 * period_out + first_outs[j]
                whole = _whole_blocks(out_size - b0 * period_out, first_outs[j], per_block, period_out, n)
                if whole > 0:
                    rows = plane_out.as_strided([whole, per_block, length], [period_out * length, length, 1],
                                                plane_out.storage_offset() + first_out * length)
                    _round_into(rows, sums[:whole])
                start_row = first_out + whole * period_out
                if whole < n and start_row < out_size:
                    _round_into(plane_out[start_row:out_size], sums[whole, : out_size - start_row])


def _whole_blocks(out_size: int, first_out: int, per_block: int, period_out: int, blocks: int) -> int:
    """How many of a phase's first ``blocks`` blocks have all their outputs below ``out_size``."""
    if out_size < first_out + per_block:
        return 0
    return min(blocks, (out_size - first_out - per_block) // period_out + 1)


_compile_lock = threading.Lock()  # one compile at a time: warning filters are process-wide


@functools.cache
def _without_the_gil(function):
    """``function`` compiled by TorchScript, or ``function`` itself where TorchScript is gone.

    Why: the worker resizes two images at once on two threads, and a resize is a few hundred torch
    calls; between calls each thread needs Python's interpreter lock, so two threads fell well
    short of twice one. TorchScript's interpreter runs the whole chunk loop without that lock, so
    two threads come close to twice one (BENCHMARKS.md, "Why the kernels' constants"). torch 2.11 and 2.14 mark
    ``torch.jit.script`` deprecated (a DeprecationWarning, then a FutureWarning: both silenced
    here); if a later torch drops it, the same code runs as Python, only slower on two threads.
    """
    try:
        with _compile_lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.14
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.11
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
