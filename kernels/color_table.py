"""A colour transform given as a table of every input colour, applied to uint8 batches.

An ICC profile conversion (``gpu_worker.color_management``) is sampled on the host by LittleCMS
for every colour a source can hold: 256 grey levels, or all 2**24 RGB triplets. Applying it is
then one gather per pixel, the same on every device, and the result is LittleCMS's own, bit for
bit. The RGB table is large (48 MB); it lives on the device once per profile (the caller caches
it). Smaller tables (a 3D lattice with interpolation) were measured and miss by up to 17 levels
where the sRGB curve is steep or the conversion clips (BENCHMARKS.md, "ICC profiles").
"""

from __future__ import annotations

import torch

from kernels._checks import check_images, color_channels, has_alpha
from kernels.parallel import map_pieces, row_blocks, split

__all__ = ["apply_color_table"]

#: Pixels per block of the gather: on the CPU (the int32 index and the gathered rows stay small)
#: and elsewhere (fewer launches).
BLOCK_PIXELS = 1 << 16
DEVICE_BLOCK_PIXELS = 1 << 23


def apply_color_table(images: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Map every pixel's colour through ``table``; alpha is passed through.

    Args:
        images: uint8 ``(B, C, H, W)``: C is 1 or 2 (grey, grey + alpha) for a grey table, 3 or 4
            (RGB, RGBA) for an RGB table.
        table: uint8 on ``images``' device: ``(256, 1)`` for grey (row ``v``: the new level of
            ``v``), or ``(2**24, 3)`` for RGB (row ``r << 16 | g << 8 | b``: the new ``(r, g, b)``).

    Returns:
        uint8 ``(B, C, H, W)``, a new tensor on the same device, with channels-last strides (the
        table's rows are interleaved colours: they are copied as they are).

    >>> t = torch.arange(255, -1, -1, dtype=torch.uint8).view(256, 1)  # inverts grey
    >>> apply_color_table(torch.tensor([[[[0, 10]]]], dtype=torch.uint8), t).tolist()
    [[[[255, 245]]]]
    """
    check_images(images)
    colour = color_channels(images)
    c = colour.shape[1]
    expected = {1: (256, 1), 3: (1 << 24, 3)}.get(c)
    if not isinstance(table, torch.Tensor) or table.dtype != torch.uint8 or tuple(table.shape) != expected:
        got = f"{tuple(table.shape)} {table.dtype}" if isinstance(table, torch.Tensor) else type(table).__name__
        raise ValueError(f"a {c}-colour-channel image needs a uint8 table of shape {expected}, got {got}")
    if table.device != images.device:
        raise ValueError(f"table is on {table.device}, images on {images.device}")
    _, _, h, w = images.shape
    interleaved = torch.empty((bsz := images.shape[0], *images.shape[2:], images.shape[1]), dtype=torch.uint8,
                              device=images.device)  # (B, H, W, C)
    out = interleaved.permute(0, 3, 1, 2)
    if has_alpha(images):
        out[:, -1:] = images[:, -1:]
    if bsz == 0 or h == 0 or w == 0:
        return out
    rows, blocks = row_blocks(images, BLOCK_PIXELS, DEVICE_BLOCK_PIXELS)

    def work(part):
        for i, r0 in part:
            src = colour[i, :, r0 : r0 + rows]
            n = src.shape[1] * w
            if c == 1:
                index = src.reshape(n).to(torch.int64)
            else:
                r, g, b = src.reshape(3, n).to(torch.int32)
                index = (r << 16) | (g << 8) | b
            interleaved[i, r0 : r0 + rows, :, :c] = table.index_select(0, index).view(src.shape[1], w, c)

    map_pieces(work, split(blocks))
    return out
