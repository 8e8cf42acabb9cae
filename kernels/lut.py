"""Pillow's ``ImageFilter.Color3DLUT`` (trilinear, 3 output channels) on uint8 batches.

Pillow (``_imaging.c: _prepare_lut_table``, ``ColorLUT.c: ImagingColorLUT3D_linear``) turns each
table value into an int16 with 6 fraction bits (``item * 16320 ± 0.5`` truncated, the product in
float32, clamped to int16), and for each pixel:

* per axis (red: 1D, green: 2D, blue: 3D), ``index = v * scale`` in uint32 with
  ``scale = int((size - 1) / 255 * 2**18)``: the cell is ``index >> 18``, the position inside it
  ``shift = (index & (2**18 - 1)) >> 3`` (15 bits);
* three rounds of ``(a * (2**15 - shift) + b * shift) >> 15`` (an arithmetic shift): along red on
  the cell's four red pairs, then along green, then along blue;
* ``clip8((v + 32) >> 6)``.

:class:`Lut3D` is that prepared table; :func:`lut3d` does the same integer arithmetic, exactly.
The table is laid out once per device as, for each cell, the 8 corners' 3 values (24 int16), so
each pixel is one gather of a row of that table plus the three rounds, in bounded blocks of
pixels. Pillow refuses L and LA images; here they are taken as RGB (R = G = B), so the result is
RGB (L) or RGBA (LA). Alpha is passed through.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch

from kernels._checks import check_images, color_channels, has_alpha
from kernels.parallel import map_pieces, row_blocks, split

__all__ = ["LUT_SIZES", "Lut3D", "lut3d"]

#: Table sizes (per axis) Pillow accepts.
LUT_SIZES = range(2, 66)
#: Fraction bits of a prepared table value (Pillow's PRECISION_BITS in ColorLUT.c; not resize's
#: 22, kernels.resize_weights.PRECISION_BITS).
LUT_FRACTION_BITS = 6
#: Fraction bits of a pixel's index into the table (SCALE_BITS) and of the shift (SHIFT_BITS).
SCALE_BITS = 18
SHIFT_BITS = 15
#: Pixels per block of the gather: on the CPU (its int32 temporaries stay in cache) and elsewhere.
BLOCK_PIXELS = 1 << 14
DEVICE_BLOCK_PIXELS = 1 << 22


@dataclass(frozen=True)
class Lut3D:
    """A cubic 3-channel table as Pillow prepares it: ``size`` per axis and ``size**3 * 3`` int16
    values (6 fraction bits, 16320 is 1.0), red fastest, as little-endian bytes. Compared and
    hashed by value."""

    size: int
    data: bytes

    @classmethod
    def from_floats(cls, size: int, table: Sequence[float]) -> "Lut3D":
        """Pillow's ``_prepare_lut_table`` of a flat list of floats (1.0 is level 255), red fastest:
        each value as float32, times 16320 in float32, then ``± 0.5`` in double and truncated,
        clamped to int16."""
        if size not in LUT_SIZES:
            raise ValueError(f"size must be 2 to 65, got {size}")
        if len(table) != size ** 3 * 3:
            raise ValueError(f"table must have size**3 * 3 = {size ** 3 * 3} values, got {len(table)}")
        item = torch.tensor(table, dtype=torch.float64).to(torch.float32)
        scaled = (item * torch.tensor(255 << LUT_FRACTION_BITS, dtype=torch.float32)).to(torch.float64)
        prepared = torch.where(item < 0, scaled - 0.5, scaled + 0.5).trunc()
        wide = item.to(torch.float64)
        prepared = torch.where(wide >= (0x7FFF - 0.5) / (255 << LUT_FRACTION_BITS), 0x7FFF, prepared)
        prepared = torch.where(wide <= (-0x8000 + 0.5) / (255 << LUT_FRACTION_BITS), -0x8000, prepared)
        return cls(size, prepared.to(torch.int16).numpy().astype("<i2").tobytes())

    def values(self) -> torch.Tensor:
        """The prepared table as int16 ``(size, size, size, 3)``: ``[blue, green, red, channel]``."""
        flat = torch.frombuffer(bytearray(self.data), dtype=torch.int16)
        return flat.view(self.size, self.size, self.size, 3)


@functools.lru_cache(maxsize=4)
def _device_tables(lut: Lut3D, device: torch.device) -> tuple[torch.Tensor, ...]:
    """On ``device``: the corners table ``(24, size**3)`` int16 (column ``cell``: the values of the
    corners ``cell + (db, dg, dr)``, ``db`` slowest, 3 channels each; past the last cell of an
    axis, which no pixel's cell is, the last value repeated), and per axis the 256-entry cell
    offset (int64, already multiplied by the axis' stride) and shift (int32)."""
    s = lut.size
    t = lut.values()
    t = torch.cat([t, t[-1:]], 0)
    t = torch.cat([t, t[:, -1:]], 1)
    t = torch.cat([t, t[:, :, -1:]], 2)
    corners = torch.stack([t[db : db + s, dg : dg + s, dr : dr + s] for db in (0, 1) for dg in (0, 1)
                           for dr in (0, 1)], dim=3).reshape(s ** 3, 24)
    scale = int((s - 1) / 255.0 * (1 << SCALE_BITS))
    index = torch.arange(256, dtype=torch.int64) * scale
    cell = index >> SCALE_BITS
    shift = ((index & ((1 << SCALE_BITS) - 1)) >> (SCALE_BITS - SHIFT_BITS)).to(torch.int32)
    return (corners.T.contiguous().to(device), (cell * 1).to(device), (cell * s).to(device), (cell * s * s).to(device),
            shift.to(device))


def _lerp(a: torch.Tensor, b: torch.Tensor, shift: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """Pillow's ``interpolate3``: ``(a * (2**15 - shift) + b * shift) >> 15`` in int32 (``rest``
    is ``2**15 - shift``)."""
    return (a * rest + b * shift) >> SHIFT_BITS


def _apply(rgb: torch.Tensor, tables: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The table on uint8 ``(3, N)`` colours: uint8 ``(3, N)``. The corners of each pixel's cell
    are one gather from the ``(24, cells)`` table, ``(2, 2, 2, 3, N)``: blue, green, red, channel."""
    corners, off_r, off_g, off_b, shift = tables
    r, g, b = rgb.to(torch.int64)
    c = corners.index_select(1, off_r[r] + off_g[g] + off_b[b]).to(torch.int32).view(2, 2, 2, 3, -1)
    s_r, s_g, s_b = shift[r], shift[g], shift[b]
    one = 1 << SHIFT_BITS
    along_r = _lerp(c[:, :, 0], c[:, :, 1], s_r, one - s_r)  # (2, 2, 3, N): [db, dg]
    along_g = _lerp(along_r[:, 0], along_r[:, 1], s_g, one - s_g)  # (2, 3, N): [db]
    v = _lerp(along_g[0], along_g[1], s_b, one - s_b)  # (3, N)
    return ((v + (1 << (LUT_FRACTION_BITS - 1))) >> LUT_FRACTION_BITS).clamp_(0, 255).to(torch.uint8)


def lut3d(images: torch.Tensor, lut: Lut3D) -> torch.Tensor:
    """``im.filter(ImageFilter.Color3DLUT(lut.size, table))`` (see :meth:`Lut3D.from_floats`):
    RGB -> RGB, RGBA -> RGBA with alpha kept; L and LA are taken as RGB with R = G = B (L -> RGB,
    LA -> RGBA).

    >>> identity = [v / 1 for b in (0, 1) for g in (0, 1) for r in (0, 1) for v in (r, g, b)]
    >>> x = torch.tensor([[[[0, 17]], [[128, 200]], [[255, 3]]]], dtype=torch.uint8)
    >>> torch.equal(lut3d(x, Lut3D.from_floats(2, identity)), x)
    True
    """
    check_images(images)
    if not isinstance(lut, Lut3D):
        raise TypeError(f"lut must be a Lut3D, got {type(lut).__name__}")
    bsz, c, h, w = images.shape
    alpha = has_alpha(images)
    out = torch.empty((bsz, 4 if alpha else 3, h, w), dtype=torch.uint8, device=images.device)
    if alpha:
        out[:, 3:] = images[:, -1:]
    if bsz == 0:
        return out
    tables = _device_tables(lut, images.device)
    colour = color_channels(images)
    rows, blocks = row_blocks(images, BLOCK_PIXELS, DEVICE_BLOCK_PIXELS)

    def work(part):
        for i, r0 in part:
            src = colour[i, :, r0 : r0 + rows]
            n = src.shape[1] * w
            flat = src.reshape(src.shape[0], n).expand(3, n) if src.shape[0] == 1 else src.reshape(3, n)
            out[i, :3, r0 : r0 + rows] = _apply(flat, tables).view(3, src.shape[1], w)

    map_pieces(work, split(blocks))
    return out
