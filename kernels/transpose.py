"""Pillow's ``Image.transpose``: the image turned by multiples of 90° or mirrored about a
diagonal, pixels moved and none changed; and the tiled CPU transpose it and the resize use."""

from __future__ import annotations

import torch

from kernels._checks import check_images
from kernels.parallel import map_pieces, split

#: Methods :func:`transpose` takes: Pillow's ``Image.Transpose`` names, lower case.
TRANSPOSE_METHODS = ("flip_left_right", "flip_top_bottom", "rotate_90", "rotate_180", "rotate_270",
                     "transpose", "transverse")

#: Methods whose result is ``W`` high and ``H`` wide.
SWAPS_SIDES = frozenset({"rotate_90", "rotate_270", "transpose", "transverse"})


def transpose(images: torch.Tensor, method: str) -> torch.Tensor:
    """``images`` moved as ``Image.transpose(method)`` moves them. Exact.

    ``rotate_90``/``rotate_270`` turn counter-clockwise by 90°/270°; ``transpose`` mirrors about
    the main diagonal (``x, y -> y, x``), ``transverse`` about the other one.

    Args:
        images: uint8 ``(B, C, H, W)``.
        method: one of :data:`TRANSPOSE_METHODS`.

    Returns:
        A new contiguous uint8 tensor on the input's device: ``(B, C, W, H)`` for the methods in
        :data:`SWAPS_SIDES`, else ``(B, C, H, W)``.

    >>> transpose(torch.arange(6, dtype=torch.uint8).view(1, 1, 2, 3), "rotate_90").flatten().tolist()
    [2, 5, 1, 4, 0, 3]
    """
    check_images(images)
    if method not in TRANSPOSE_METHODS:
        raise ValueError(f"method must be one of {', '.join(TRANSPOSE_METHODS)}, got {method!r}")
    rows, cols = -2, -1
    if method not in SWAPS_SIDES:
        return images.flip({"flip_left_right": cols, "flip_top_bottom": rows, "rotate_180": (rows, cols)}[method])
    # Each is the transpose (x, y -> y, x) with its rows, its columns or both reversed.
    flip_rows, flip_cols = {"transpose": (False, False), "rotate_90": (True, False),
                            "rotate_270": (False, True), "transverse": (True, True)}[method]
    batch, channels, height, width = images.shape
    if images.device.type != "cpu":
        swapped = images.transpose(rows, cols)
        flips = [dim for dim, wanted in ((rows, flip_rows), (cols, flip_cols)) if wanted]
        return swapped.flip(flips) if flips else swapped.contiguous()
    planes = images.reshape(batch * channels, height, width)
    return transposed(planes, flip_rows, flip_cols).view(batch, channels, width, height)


#: Side of the square tiles :func:`transposed` copies: a whole-image strided copy touches a
#: page per row for every output row and thrashed the TLB (BENCHMARKS.md, "Why the kernels' constants").
TILE = 256


def transposed(planes: torch.Tensor, flip_rows: bool = False, flip_cols: bool = False) -> torch.Tensor:
    """``planes.transpose(1, 2)`` of CPU ``(P, H, W)``, contiguous, in square tiles, its rows
    and/or columns reversed with ``flip_rows``/``flip_cols`` (each tile reversed in cache and
    written to its mirrored place); runs of tile columns go to :func:`~kernels.parallel.map_pieces`."""
    count, height, width = planes.shape
    out = torch.empty((count, width, height), dtype=planes.dtype)
    dims = [dim for dim, wanted in ((1, flip_rows), (2, flip_cols)) if wanted]

    def run(columns: range) -> None:
        for c in columns:
            c_end = min(c + TILE, width)
            out_rows = slice(width - c_end, width - c) if flip_rows else slice(c, c_end)
            for r in range(0, height, TILE):
                r_end = min(r + TILE, height)
                out_cols = slice(height - r_end, height - r) if flip_cols else slice(r, r_end)
                tile = planes[:, r:r_end, c:c_end].transpose(1, 2)
                out[:, out_rows, out_cols].copy_(tile.flip(dims) if dims else tile)

    map_pieces(run, split(range(0, width, TILE)))
    return out
