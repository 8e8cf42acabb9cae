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
    # Each is the transpose (x, y -> y, x) with its rows, its columns or both reversed after.
    swapped = _swapped(images)
    flips = {"transpose": (), "rotate_90": (rows,), "rotate_270": (cols,), "transverse": (rows, cols)}[method]
    return swapped.flip(flips) if flips else swapped


def _swapped(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> ``(B, C, W, H)``, contiguous; in tiles on the CPU."""
    batch, channels, height, width = images.shape
    if images.device.type != "cpu":
        return images.transpose(-2, -1).contiguous()
    return transposed(images.reshape(batch * channels, height, width)).view(batch, channels, width, height)


#: Side of the square tiles :func:`transposed` copies: a whole-image strided copy touches a
#: page per row for every output row and thrashed the TLB (BENCHMARKS.md, "Why the kernels' constants").
TILE = 256


def transposed(planes: torch.Tensor) -> torch.Tensor:
    """``planes.transpose(1, 2)`` of CPU ``(P, H, W)``, contiguous, in square tiles; runs of
    tile columns go to :func:`~kernels.parallel.map_pieces`."""
    count, height, width = planes.shape
    out = torch.empty((count, width, height), dtype=planes.dtype)

    def run(columns: range) -> None:
        for c in columns:
            for r in range(0, height, TILE):
                out[:, c : c + TILE, r : r + TILE].copy_(planes[:, r : r + TILE, c : c + TILE].transpose(1, 2))

    map_pieces(run, split(range(0, width, TILE)))
    return out
