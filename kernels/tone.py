"""Pillow's ``ImageOps`` tone operations, gamma and pixelate on uint8 batches.

Every tone operation here is a 256-entry table per image and colour channel, as in Pillow
(``ImageOps._lut`` -> ``Image.point``); alpha, where there is one, is passed through (Pillow
refuses LA and RGBA for these; the worker's meaning is Pillow's operation on the L or RGB image
with alpha put back). Where the table is a plain bit operation (``invert``: ``~x``, ``posterize``:
``x & mask``) the kernel does that instead; otherwise the table is gathered on the device:

* the tables of ``solarize``, ``gamma`` and ``colorize`` depend on the parameters only and are
  built on the host with Pillow's own Python arithmetic; those of ``equalize`` and
  ``autocontrast`` come from each image's own histogram (:func:`kernels.histograms`, counted in
  bounded blocks) and are computed on the device in integers (and, for ``autocontrast``'s
  ``int(ix * scale + offset)``, in float64 on the 256 entries only), with no host sync;
* the gather reads the image in bounded blocks. On the CPU, for planes of at least
  :data:`PAIR_MIN_PIXELS`, it maps two bytes at once through a 65,536-entry table of byte pairs
  built from the 256-entry one (half the gathers, 128 KB of table: in cache); elsewhere each byte
  plus its plane's offset indexes the batch's flat table. Both give the table's value exactly.

``posterize``, ``solarize`` and ``gamma`` take their parameter as one number for the batch or as
a ``(B,)`` tensor, one per image (each image then gets its own mask or table, in the same call);
``autocontrast`` its ``cutoff`` as a ``(B, 2)`` tensor of ``(low, high)`` per image.

``pixelate`` is Pillow's BOX resize to ``(h // size, w // size)`` (premultiplied alpha, as
Pillow's ``resize``; BOX weights from ``kernels.resize_weights``, each output pixel the sum of a
run of equally weighted input pixels), then NEAREST back to the image's size.
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Optional, Sequence

import torch

from kernels._checks import check_images, color_channels, has_alpha, per_image
from kernels.color import grayscale
from kernels.parallel import map_pieces, split
from kernels.resize import _pass_order, _premultiply, _resample_pass, _unpremultiply
from kernels.resize_weights import HALF, PRECISION_BITS, nearest_table, pillow_coeffs
from kernels.stats import histograms

__all__ = [
    "autocontrast",
    "autocontrast_cuts",
    "colorize",
    "colorize_table",
    "equalize",
    "gamma",
    "gamma_table",
    "invert",
    "pixelate",
    "posterize",
    "solarize",
]

#: Bytes of one block of the gather (per plane on the CPU's pair path, per batch elsewhere).
BLOCK_ELEMENTS = 1 << 18
#: The same on CUDA and other devices: fewer, larger kernel launches.
DEVICE_BLOCK_ELEMENTS = 1 << 24
#: Bytes of one block of the CPU's pair histogram (its 65,536 bins are counted per block).
HIST_BLOCK_ELEMENTS = 1 << 20
#: Smallest plane (pixels) the CPU maps through the table of byte pairs (building that table costs
#: about as much as gathering this many bytes one at a time).
PAIR_MIN_PIXELS = 1 << 15

_LITTLE_ENDIAN = sys.byteorder == "little"


# ----------------------------------------------------------------------------------------------
# Tables built on the host from the parameters alone (Pillow's Python arithmetic, exactly).


def solarize_table(threshold: int) -> list[int]:
    """``ImageOps.solarize``'s table: ``i`` below ``threshold``, else ``255 - i``."""
    return [i if i < threshold else 255 - i for i in range(256)]


def gamma_table(value: float) -> list[int]:
    """``int(255 * (v / 255) ** (1 / value) + 0.5)`` for ``v`` in 0..255 (clipped to 0..255, as
    ``Image.point`` clips), in Python floats.

    >>> gamma_table(2.0)[:4], gamma_table(1.0) == list(range(256))
    ([0, 16, 23, 28], True)
    """
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"gamma value must be a finite number > 0, got {value!r}")
    exponent = 1 / value
    return [min(255, max(0, int(255 * (v / 255) ** exponent + 0.5))) for v in range(256)]


def colorize_table(black: Sequence[int], white: Sequence[int],
                   mid: Optional[Sequence[int]] = None) -> list[list[int]]:
    """``ImageOps.colorize``'s tables (black point 0, mid point 127, white point 255) for RGB
    colours ``black``, ``white`` and optional ``mid``: three lists of 256 levels (R, G, B)."""
    tables = []
    for ch in range(3):
        b, w = black[ch], white[ch]
        if mid is None:
            table = [b + i * (w - b) // 255 for i in range(255)]
        else:
            m = mid[ch]
            table = [b + i * (m - b) // 127 for i in range(127)] + [m + i * (w - m) // 128 for i in range(128)]
        tables.append([min(255, max(0, v)) for v in table + [w]])
    return tables


def autocontrast_cuts(pixels: int, cutoff: float | Sequence[float]) -> tuple[int, int]:
    """The pixel counts ``ImageOps.autocontrast`` cuts from the low and the high end of a channel's
    histogram of ``pixels`` pixels: ``int(n * cutoff // 100)``, Python's float arithmetic."""
    low, high = (cutoff, cutoff) if isinstance(cutoff, (int, float)) else tuple(cutoff)
    return int(pixels * low // 100), int(pixels * high // 100)


@functools.lru_cache(maxsize=64)
def _table_tensor(table: tuple[tuple[int, ...], ...], device: torch.device) -> torch.Tensor:
    """A host table ``(K, 256)`` as uint8 on ``device``, cached."""
    return torch.tensor(table, dtype=torch.uint8, device=device)


# ----------------------------------------------------------------------------------------------
# Applying tables: ``out[b, k] = luts[b, k][src[b, k]]``.


def _pair_table(lut: torch.Tensor) -> torch.Tensor:
    """The 65,536-entry int16 table mapping two bytes at once: entry ``hi * 256 + lo`` holds
    ``lut[lo] | lut[hi] << 8`` (two little-endian bytes), from a uint8 ``(256,)`` table."""
    wide = lut.to(torch.int32)
    return (wide.view(256, 1) << 8 | wide.view(1, 256)).view(-1).to(torch.int16)


def _pair_tables(luts: torch.Tensor, b_count: int, k_count: int) -> dict[tuple[int, int], torch.Tensor]:
    """(image, channel) -> its :func:`_pair_table`, one per distinct table row (expanded rows
    share their storage, so one table serves them all)."""
    tables: dict[int, torch.Tensor] = {}
    found = {}
    for b in range(b_count):
        for k in range(k_count):
            row = luts[b if luts.shape[0] > 1 else 0, k]
            key = row.data_ptr()
            if key not in tables:
                tables[key] = _pair_table(row)
            found[b, k] = tables[key]
    return found


def _byte_pairs(block: torch.Tensor, src_buf: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The bytes of ``block`` (uint8, any strides) read two at a time as int32 indices 0..65535
    (little-endian: low byte first), in ``index``; read in place when ``block`` is contiguous,
    aligned and even, else through ``src_buf``, where an odd last byte is paired with 0."""
    n = block.numel()
    half = (n + 1) // 2
    if block.is_contiguous() and block.storage_offset() % 2 == 0 and n % 2 == 0:
        pairs = block.reshape(-1).view(torch.int16)
    else:
        src_buf[:n].view(block.shape).copy_(block)
        src_buf[n] = 0
        pairs = src_buf[: 2 * half].view(torch.int16)
    idx = index[:half]
    idx.copy_(pairs.view(torch.uint16))
    return idx


def _lut_pairs(src: torch.Tensor, luts: torch.Tensor, out: torch.Tensor,
               plane_tables: Optional[dict[tuple[int, int], torch.Tensor]] = None) -> None:
    """The CPU path of :func:`_lut_into`: each plane in blocks of rows, two bytes per gather."""
    b_count, k_count, h, w = src.shape
    if plane_tables is None:
        plane_tables = _pair_tables(luts, b_count, k_count)
    rows = max(1, min(h, BLOCK_ELEMENTS // w))
    pieces = [(b, k, r0) for b in range(b_count) for k in range(k_count) for r0 in range(0, h, rows)]
    capacity = rows * w + 1

    def run(run_of_pieces) -> None:
        src_buf = torch.empty(capacity + 1, dtype=torch.uint8)
        index = torch.empty(capacity // 2 + 1, dtype=torch.int32)
        dst_buf = torch.empty(capacity // 2 + 1, dtype=torch.int16)
        for b, k, r0 in run_of_pieces:
            block = src[b, k, r0 : r0 + rows]
            target = out[b, k, r0 : r0 + rows]
            n = block.numel()
            half = (n + 1) // 2
            idx = _byte_pairs(block, src_buf, index)  # an odd byte's partner is 0; its result is not kept
            flat = target.reshape(-1)  # out's planes are contiguous: a view
            if flat.storage_offset() % 2 == 0 and n % 2 == 0:
                torch.index_select(plane_tables[b, k], 0, idx, out=flat.view(torch.int16))
            else:
                torch.index_select(plane_tables[b, k], 0, idx, out=dst_buf[:half])
                flat.copy_(dst_buf[:half].view(torch.uint8)[:n])

    map_pieces(run, split(pieces))


def _uses_pairs(device: torch.device, pixels: int) -> bool:
    """Whether :func:`_lut_into` maps planes of ``pixels`` pixels two bytes at a time."""
    return device.type == "cpu" and _LITTLE_ENDIAN and pixels >= PAIR_MIN_PIXELS


def _lut_into(src: torch.Tensor, luts: torch.Tensor, out: torch.Tensor,
              plane_tables: Optional[dict[tuple[int, int], torch.Tensor]] = None) -> None:
    """``out[b, k] = luts[b, k][src[b, k]]`` (``luts`` ``(B, K, 256)`` or ``(1, K, 256)`` uint8).

    ``src`` is uint8 ``(B, K, h, W)`` with any strides (an expanded plane too); ``out`` the same
    shape, each of its planes contiguous (rows of a contiguous ``(B, C, H, W)`` tensor).
    """
    b_count, k_count, h, w = src.shape
    if b_count == 0:
        return
    if _uses_pairs(src.device, h * w):
        _lut_pairs(src, luts, out, plane_tables)
        return
    limit = BLOCK_ELEMENTS if src.device.type == "cpu" else DEVICE_BLOCK_ELEMENTS
    rows = max(1, min(h, limit // (b_count * k_count * w)))
    flat = luts.expand(b_count, k_count, 256).reshape(-1)
    # Each (image, channel) plane reads its own 256 entries of the flat table.
    offsets = (torch.arange(b_count * k_count, dtype=torch.int32, device=src.device) * 256).view(b_count, k_count, 1, 1)
    buffer = torch.empty(b_count * k_count * rows * w, dtype=torch.int32, device=src.device)
    for r0 in range(0, h, rows):
        block = src[:, :, r0 : r0 + rows]
        index = buffer[: block.numel()].view(block.shape)
        index.copy_(block).add_(offsets)
        out[:, :, r0 : r0 + rows] = flat.index_select(0, index.view(-1)).view(block.shape)


def _histograms_pairs(src: torch.Tensor) -> torch.Tensor:
    """The CPU path of :func:`_histograms`: each plane in blocks of rows, two bytes per count
    (65,536 bins of byte pairs, folded to 256 after), like :func:`_lut_pairs`."""
    b_count, k_count, h, w = src.shape
    rows = max(1, min(h, HIST_BLOCK_ELEMENTS // w))
    pieces = [(b, k, r0) for b in range(b_count) for k in range(k_count) for r0 in range(0, h, rows)]
    capacity = rows * w + 1

    def run(run_of_pieces) -> list[torch.Tensor]:
        src_buf = torch.empty(capacity + 1, dtype=torch.uint8)
        index = torch.empty(capacity // 2 + 1, dtype=torch.int32)
        found = []
        for b, k, r0 in run_of_pieces:
            block = src[b, k, r0 : r0 + rows]
            n = block.numel()
            idx = _byte_pairs(block, src_buf, index)  # an odd byte's partner 0: one count too many, taken off below
            counts = torch.bincount(idx, minlength=65536).view(256, 256)  # [hi byte, lo byte]
            levels = counts.sum(dim=0).add_(counts.sum(dim=1))
            if n % 2:
                levels[0] -= 1
            found.append(levels)
        return found

    hists = torch.zeros((b_count, k_count, 256), dtype=torch.int64)
    for (b, k, _), levels in zip(pieces, [c for part in map_pieces(run, split(pieces)) for c in part]):
        hists[b, k] += levels
    return hists


def _histograms(src: torch.Tensor) -> torch.Tensor:
    """256-bin histogram of each plane of uint8 ``(B, K, H, W)``: int64 ``(B, K, 256)``."""
    b_count, k_count, h, w = src.shape
    if b_count and _uses_pairs(src.device, h * w):
        return _histograms_pairs(src)
    return histograms(src)


def _new_like(images: torch.Tensor, channels: Optional[int] = None) -> torch.Tensor:
    b, c, h, w = images.shape
    return torch.empty((b, c if channels is None else channels, h, w), dtype=torch.uint8, device=images.device)


def apply_luts(images: torch.Tensor, luts: torch.Tensor) -> torch.Tensor:
    """Each colour channel through its table, alpha passed through.

    Args:
        images: uint8 ``(B, C, H, W)``.
        luts: uint8 ``(B, K, 256)`` or ``(1, K, 256)`` (the same tables for every image), K the
            colour channels (C without alpha), on the images' device.
    Returns:
        A new contiguous uint8 ``(B, C, H, W)`` tensor.
    """
    check_images(images)
    out = _new_like(images)
    colour = color_channels(images)
    _lut_into(colour, luts, out[:, : colour.shape[1]])
    if has_alpha(images):
        out[:, -1:] = images[:, -1:]
    return out


def _fixed_table(images: torch.Tensor, table: list[int]) -> torch.Tensor:
    """One host table for every colour channel of every image, as ``(1, K, 256)`` on the device."""
    k = color_channels(images).shape[1]
    return _table_tensor((tuple(table),), images.device).expand(1, k, 256)


def _tables(images: torch.Tensor, name: str, value, make, check) -> torch.Tensor:
    """The table ``make(value)`` for every colour channel: ``(1, K, 256)`` for one number, or for
    a ``(B,)`` tensor of values each image's own, ``(B, K, 256)`` (built on the host with the
    same Python arithmetic; ``check`` refuses a bad value)."""
    if not isinstance(value, torch.Tensor):
        return _fixed_table(images, make(check(value)))
    rows = [make(check(v)) for v in per_image(name, value, images.shape[0]).tolist()]
    k = color_channels(images).shape[1]
    tables = torch.tensor(rows, dtype=torch.uint8).view(-1, 1, 256)
    return tables.to(images.device, non_blocking=True).expand(-1, k, 256)


# ----------------------------------------------------------------------------------------------
# The operations.


def _bitwise(images: torch.Tensor, op) -> torch.Tensor:
    """``op(colour planes)`` (a uint8 bit operation) into a new tensor, alpha passed through."""
    check_images(images)
    out = _new_like(images)
    colour = color_channels(images)
    k = colour.shape[1]
    b, _, h, w = images.shape
    limit = BLOCK_ELEMENTS if images.device.type == "cpu" else DEVICE_BLOCK_ELEMENTS
    rows = max(1, min(h, limit // max(1, b * k * w)))
    for r0 in range(0, h, rows):
        op(colour[:, :, r0 : r0 + rows], out[:, :k, r0 : r0 + rows])
    if has_alpha(images):
        out[:, -1:] = images[:, -1:]
    return out


def invert(images: torch.Tensor) -> torch.Tensor:
    """``ImageOps.invert`` (``255 - v``) on the colour channels; alpha passed through.

    >>> invert(torch.tensor([[[[0, 200]]]], dtype=torch.uint8)).flatten().tolist()
    [255, 55]
    """
    return _bitwise(images, lambda x, out: torch.bitwise_not(x, out=out))


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer {low}..{high}, got {value!r}")
    return value


def _posterize_mask(bits: int) -> int:
    return (0xFF << (8 - _check_int("bits", bits, 1, 8))) & 0xFF


def posterize(images: torch.Tensor, bits: int | torch.Tensor) -> torch.Tensor:
    """``ImageOps.posterize``: keep the top ``bits`` (1..8) bits of each colour level; ``bits``
    one integer, or an int ``(B,)`` tensor, one per image.

    >>> posterize(torch.tensor([[[[255, 100]]]], dtype=torch.uint8), 2).flatten().tolist()
    [192, 64]
    """
    if not isinstance(bits, torch.Tensor):
        mask = _posterize_mask(bits)
        return _bitwise(images, lambda x, out: torch.bitwise_and(x, mask, out=out))
    if bits.is_floating_point():
        raise ValueError(f"bits per image must be integers, got {bits.dtype}")
    masks = [_posterize_mask(b) for b in per_image("bits", bits, images.shape[0]).tolist()]
    masks = torch.tensor(masks, dtype=torch.uint8).view(-1, 1, 1, 1).to(images.device, non_blocking=True)
    return _bitwise(images, lambda x, out: torch.bitwise_and(x, masks, out=out))


def solarize(images: torch.Tensor, threshold: int | torch.Tensor = 128) -> torch.Tensor:
    """``ImageOps.solarize``: levels at or above ``threshold`` (0..256) inverted; ``threshold``
    one integer, or an int ``(B,)`` tensor, one per image.

    >>> solarize(torch.tensor([[[[10, 200]]]], dtype=torch.uint8), 128).flatten().tolist()
    [10, 55]
    """
    if isinstance(threshold, torch.Tensor) and threshold.is_floating_point():
        raise ValueError(f"threshold per image must be integers, got {threshold.dtype}")
    return apply_luts(images, _tables(images, "threshold", threshold, solarize_table,
                                      lambda v: _check_int("threshold", v, 0, 256)))


def gamma(images: torch.Tensor, value: float | torch.Tensor) -> torch.Tensor:
    """Each colour level ``v`` through ``int(255 * (v / 255) ** (1 / value) + 0.5)``; alpha
    passed through. ``value`` > 1 brightens the mid-tones; one number, or a ``(B,)`` tensor, one
    per image.

    >>> gamma(torch.tensor([[[[0, 64, 255]]]], dtype=torch.uint8), 2.0).flatten().tolist()
    [0, 128, 255]
    """
    return apply_luts(images, _tables(images, "value", value, gamma_table, lambda v: v))


def equalize_luts(hists: torch.Tensor) -> torch.Tensor:
    """``ImageOps.equalize``'s table of each histogram, on the device: uint8 ``(..., 256)`` from
    int64 ``(..., 256)``.

    Per channel: with at most one level used, or ``step = (n - h[last used level]) // 255`` zero,
    the identity; else ``lut[i] = (step // 2 + sum(h[:i])) // step`` (clipped to 255 as
    ``Image.point`` clips).
    """
    levels = torch.arange(256, dtype=torch.int64, device=hists.device)
    used = hists > 0
    last = 255 - used.flip(-1).to(torch.uint8).argmax(dim=-1, keepdim=True)
    total = hists.sum(dim=-1, keepdim=True)
    step = (total - hists.gather(-1, last)) // 255
    identity = (used.sum(dim=-1, keepdim=True) <= 1) | (step == 0)
    below = hists.cumsum(dim=-1) - hists  # sum(h[:i])
    table = (step // 2 + below) // step.clamp(min=1)
    return torch.where(identity, levels, table.clamp(max=255)).to(torch.uint8)


def equalize(images: torch.Tensor) -> torch.Tensor:
    """``ImageOps.equalize`` of each image (each colour channel from its own histogram, as Pillow
    does per band); alpha passed through.

    >>> x = torch.tensor([0] * 255 + [10] * 255 + [20] * 10, dtype=torch.uint8).view(1, 1, 1, -1)
    >>> equalize(x).unique().tolist()
    [0, 128, 255]
    """
    check_images(images)
    return apply_luts(images, equalize_luts(_histograms(color_channels(images))))


def _luma_histograms(images: torch.Tensor) -> torch.Tensor:
    """Histogram of each image's ``convert("L")``: int64 ``(B, 1, 256)``, in blocks of rows."""
    if images.shape[1] < 3:
        return _histograms(images[:, :1])
    b, _, h, w = images.shape
    limit = BLOCK_ELEMENTS if images.device.type == "cpu" else DEVICE_BLOCK_ELEMENTS
    rows = max(1, min(h, limit // max(1, b * w)))
    counts = torch.zeros((b, 1, 256), dtype=torch.int64, device=images.device)
    for r0 in range(0, h, rows):
        counts += _histograms(grayscale(images[:, :3, r0 : r0 + rows]))
    return counts


def autocontrast_luts(hists: torch.Tensor, cut_low: int | torch.Tensor, cut_high: int | torch.Tensor) -> torch.Tensor:
    """``ImageOps.autocontrast``'s table of each histogram, on the device: uint8 ``(..., 256)``
    from int64 ``(..., 256)``, after cutting ``cut_low`` and ``cut_high`` pixels off the ends
    (ints, or int64 tensors that broadcast against ``(..., 1)``: one cut per histogram).

    Pillow's cut loops as closed forms: the low cut leaves ``min(h, max(0, cumsum(h) - cut))``
    per level, the high cut the same from the top on what is left. Then ``lo``/``hi`` are the
    first/last level left; with ``hi <= lo`` the identity, else ``int(ix * scale + offset)``
    clipped to 0..255, ``scale = 255.0 / (hi - lo)``, ``offset = -lo * scale``, in doubles on
    the 256 entries (C doubles, as Python's floats).
    """
    levels = torch.arange(256, dtype=torch.int64, device=hists.device)
    kept = torch.minimum(hists, (hists.cumsum(dim=-1) - cut_low).clamp(min=0))
    from_top = kept.flip(-1).cumsum(dim=-1).flip(-1)  # sum(kept[i:])
    kept = torch.minimum(kept, (from_top - cut_high).clamp(min=0))
    left = kept > 0
    any_left = left.any(dim=-1, keepdim=True)
    lo = left.to(torch.uint8).argmax(dim=-1, keepdim=True)
    hi = 255 - left.flip(-1).to(torch.uint8).argmax(dim=-1, keepdim=True)
    identity = ~any_left | (hi <= lo)
    # A true division (``255.0 / tensor`` is computed as ``255.0 * (1 / tensor)``: not Pillow's double).
    scale = torch.full(hi.shape, 255.0, dtype=torch.float64, device=hists.device).div_((hi - lo).clamp(min=1))
    offset = -lo.to(torch.float64) * scale
    mapped = (levels.to(torch.float64) * scale + offset).trunc().clamp(0, 255).to(torch.int64)
    return torch.where(identity, levels, mapped).to(torch.uint8)


def autocontrast(images: torch.Tensor, cutoff: float | Sequence[float] = 0,
                 preserve_tone: bool = False) -> torch.Tensor:
    """``ImageOps.autocontrast(im, cutoff, preserve_tone=...)`` of each image; alpha passed through.

    ``cutoff``: the percentage of pixels cut from each end of the histogram (0..49), or
    ``(low, high)``, or a ``(B, 2)`` tensor of ``(low, high)``, one row per image. Without
    ``preserve_tone`` each colour channel is stretched by its own histogram; with it every channel
    by the histogram of the image's ``convert("L")``.

    >>> autocontrast(torch.tensor([[[[50, 100, 150]]]], dtype=torch.uint8)).flatten().tolist()
    [0, 127, 255]
    """
    check_images(images)
    b, _, h, w = images.shape
    if isinstance(cutoff, torch.Tensor):  # each image's cuts, with the same Python arithmetic
        cuts = [autocontrast_cuts(h * w, tuple(row)) for row in per_image("cutoff", cutoff, b, 2).tolist()]
        cuts_tensor = torch.tensor(cuts, dtype=torch.int64).view(b, 2, 1, 1).to(images.device, non_blocking=True)
        cut_low, cut_high = cuts_tensor[:, 0], cuts_tensor[:, 1]
    else:
        cut_low, cut_high = autocontrast_cuts(h * w, cutoff)
    if preserve_tone:
        luts = autocontrast_luts(_luma_histograms(images), cut_low, cut_high)
        luts = luts.expand(-1, color_channels(images).shape[1], 256)
    else:
        luts = autocontrast_luts(_histograms(color_channels(images)), cut_low, cut_high)
    return apply_luts(images, luts)


def colorize(images: torch.Tensor, black: Sequence[int], white: Sequence[int],
             mid: Optional[Sequence[int]] = None) -> torch.Tensor:
    """``ImageOps.colorize(ImageOps.grayscale(im), black, white, mid)``: RGB out, the alpha of LA
    and RGBA kept (L -> RGB, LA -> RGBA, RGB -> RGB, RGBA -> RGBA).

    ``black``, ``white``, ``mid``: RGB colours, three ints 0..255 each (a fourth is ignored).

    >>> x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    >>> colorize(x, (10, 20, 30), (200, 100, 0))[0, :, 0].tolist()
    [[10, 200], [20, 100], [30, 0]]
    """
    check_images(images)
    for name, colour in (("black", black), ("white", white), ("mid", mid)):
        if colour is None and name == "mid":
            continue
        if (colour is None or len(colour) not in (3, 4)
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour)):
            raise ValueError(f"{name} must be 3 or 4 integers 0..255, got {colour!r}")
    tables = colorize_table(black, white, mid)
    luts = _table_tensor(tuple(tuple(t) for t in tables), images.device).unsqueeze(0)
    b, c, h, w = images.shape
    alpha = has_alpha(images)
    out = torch.empty((b, 4 if alpha else 3, h, w), dtype=torch.uint8, device=images.device)
    limit = BLOCK_ELEMENTS if images.device.type == "cpu" else DEVICE_BLOCK_ELEMENTS
    rows = max(1, min(h, limit // max(1, b * w)))
    # The pair tables once for all blocks (the same three for every image).
    tables = _pair_tables(luts, b, 3) if _uses_pairs(images.device, rows * w) else None
    for r0 in range(0, h, rows):
        grey = grayscale(color_channels(images)[:, :, r0 : r0 + rows])
        _lut_into(grey.expand(-1, 3, -1, -1), luts, out[:, :3, r0 : r0 + rows], tables)
    if alpha:
        out[:, 3:] = images[:, -1:]
    return out


@functools.lru_cache(maxsize=64)
def _box_windows(in_size: int, out_size: int, device: torch.device):
    """Pillow's BOX weights for ``in_size -> out_size`` as runs: each output pixel's nonzero taps
    are input pixels ``start[j]:stop[j]``, all of weight ``weight[j]`` (22-bit fixed point, as
    ``resize_weights.pillow_coeffs`` gives them). None if some window is not such a run."""
    xmins, weights = pillow_coeffs(in_size, out_size, "box")
    starts, stops, ks = [], [], []
    for xmin, taps in zip(xmins, weights):
        used = [i for i, v in enumerate(taps) if v]
        if not used or used[-1] - used[0] + 1 != len(used) or len({taps[i] for i in used}) != 1:
            return None
        starts.append(xmin + used[0])
        stops.append(xmin + used[-1] + 1)
        ks.append(taps[used[0]])
    as_tensor = functools.partial(torch.tensor, dtype=torch.int64, device=device)
    # Runs of one length m tiling the input (in_size == out_size * m): sums of a reshape.
    m = in_size // out_size
    tiled = in_size == out_size * m and starts == list(range(0, in_size, m)) and len(set(ks)) == 1
    return as_tensor(starts), as_tensor(stops), as_tensor(ks).to(torch.int32), m if tiled else None


def _box_pass(images: torch.Tensor, out_size: int, dim: int, windows) -> torch.Tensor:
    """One BOX pass along ``dim`` (2: height, 3: width) of uint8 ``(B, C, H, W)``: each output
    pixel is ``clip8((sum(run) * weight + 2**21) >> 22)`` (Resample.c's int32 sum, with every tap
    of the run weighing the same), the run's sum from an int32 cumulative sum, in blocks."""
    starts, stops, ks, tiled = windows
    b, c, h, w = images.shape
    shape = [b, c, h, w]
    shape[dim] = out_size
    out = torch.empty(shape, dtype=torch.uint8, device=images.device)
    other = 5 - dim  # the dimension the blocks cut
    length = images.shape[dim]
    limit = BLOCK_ELEMENTS if images.device.type == "cpu" else DEVICE_BLOCK_ELEMENTS
    step = max(1, min(images.shape[other], limit // max(1, b * c * (length + 1))))
    weight_shape = [1, 1, 1, 1]
    weight_shape[dim] = out_size
    k = ks.view(weight_shape)
    for o0 in range(0, images.shape[other], step):
        block = images.narrow(other, o0, min(step, images.shape[other] - o0))
        if tiled is not None:  # equal runs tiling the row: a reshape's sums
            split_shape = list(block.shape)
            split_shape[dim : dim + 1] = [out_size, tiled]
            run = block.reshape(split_shape).sum(dim=dim + 1, dtype=torch.int32)
        else:
            sums_shape = list(block.shape)
            sums_shape[dim] += 1
            sums = torch.zeros(sums_shape, dtype=torch.int32, device=images.device)
            torch.cumsum(block, dim=dim, dtype=torch.int32, out=sums.narrow(dim, 1, length))
            run = sums.index_select(dim, stops).sub_(sums.index_select(dim, starts))
        run.mul_(k).add_(HALF).bitwise_right_shift_(PRECISION_BITS).clamp_(0, 255)
        out.narrow(other, o0, block.shape[other]).copy_(run)
    return out


def _box_resize(images: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Pillow's ``resize((out_w, out_h), Image.BOX)`` for a downscale, by runs' sums (one pass per
    dimension in Pillow's order, alpha premultiplied as Pillow's resize does; the resize
    operation itself does not offer BOX)."""
    _, _, h, w = images.shape
    passes = _pass_order(h, w, out_h, out_w)
    windows = [_box_windows(images.shape[dim], size, images.device) for dim, size in passes]
    if (out_h, out_w) == (h, w):
        return images  # Pillow returns a copy before any premultiplication
    if images.shape[0] == 0:
        return images.new_empty((0, images.shape[1], out_h, out_w))
    out = _premultiply(images) if has_alpha(images) else images
    for (dim, size), win in zip(passes, windows):
        # Not runs (never seen on a downscale): resize's own pass with the BOX weights.
        out = _resample_pass(out, size, "box", dim) if win is None else _box_pass(out, size, dim, win)
    return _unpremultiply(out) if has_alpha(images) else out


def pixelate(images: torch.Tensor, size: int) -> torch.Tensor:
    """``im.resize((max(1, w // size), max(1, h // size)), Image.BOX).resize((w, h), Image.NEAREST)``:
    blocks of about ``size`` x ``size`` pixels, each its average (alpha premultiplied, as Pillow).

    >>> pixelate(torch.tensor([[[[0, 10, 20, 30]]]], dtype=torch.uint8), 2).flatten().tolist()
    [5, 5, 25, 25]
    """
    check_images(images)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    _, _, h, w = images.shape
    small = _box_resize(images, max(1, h // size), max(1, w // size))
    # Pillow's NEAREST upscale (resize's tables): the small image's columns first (a small
    # intermediate), then whole rows copied.
    wide = small.index_select(3, nearest_table(small.shape[3], w, images.device))
    return wide.index_select(2, nearest_table(small.shape[2], h, images.device))
