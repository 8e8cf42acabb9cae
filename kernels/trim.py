"""Trim a uniform border: the tightest box around the pixels that differ from a background colour.

A pixel is background when every channel (alpha included) differs from the colour by at most
``threshold``; the box holds every other pixel. Each image gets its own box, so the results
differ in size: :func:`trim_boxes` finds every image's box in one pass over the whole stack (the
boxes come to the host in one copy), and :func:`trim` cuts them out.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from kernels._checks import check_images

#: Elements (B x C x rows x W) compared at once: the boolean temporaries of one block of rows
#: stay a few MB whatever the image's size.
_BLOCK_ELEMENTS = 1 << 24


def trim_boxes(images: torch.Tensor, threshold: int, color: Optional[Sequence[int]] = None) -> list[Optional[tuple[int, int, int, int]]]:
    """Every image's foreground box ``(left, top, right, bottom)`` (right and bottom exclusive),
    or None for an image that is all background.

    Args:
        images: uint8 ``(B, C, H, W)``.
        threshold: 0..255; a channel differing from the colour by more than this is foreground.
        color: the background, one value per channel (``kernels.mode_color`` gives it for a
            ``(r, g, b, a)`` colour); None: each image's own top-left pixel.

    Returns:
        B boxes. Exactly ``fg = (abs(a - color).max(channel) > threshold)`` and the span of its
        nonzero rows and columns, in integers.
    """
    check_images(images)
    if not 0 <= int(threshold) <= 255:
        raise ValueError(f"threshold must be 0..255, got {threshold!r}")
    b, c, h, w = images.shape
    if b == 0:
        return []
    if color is None:
        centre = images[:, :, 0, 0].to(torch.int16)  # (B, C)
    else:
        if len(color) != c or any(not 0 <= int(v) <= 255 for v in color):
            raise ValueError(f"color must hold {c} values 0..255 for {c}-channel images, got {color!r}")
        centre = torch.tensor([int(v) for v in color], dtype=torch.int16, device=images.device).expand(b, c)
    # |v - colour| > t  <=>  v > colour + t  or  v < colour - t; clamped to 0..255 the bounds stay
    # uint8 (comparisons without widening the image), and a bound past the range never holds.
    high = (centre + int(threshold)).clamp_(0, 255).to(torch.uint8).view(b, c, 1, 1)
    low = (centre - int(threshold)).clamp_(0, 255).to(torch.uint8).view(b, c, 1, 1)
    rows = torch.zeros((b, h), dtype=torch.bool, device=images.device)
    cols = torch.zeros((b, w), dtype=torch.bool, device=images.device)
    step = max(1, _BLOCK_ELEMENTS // max(1, b * c * w))
    for top in range(0, h, step):
        part = images[:, :, top : top + step]
        fg = ((part > high) | (part < low)).any(dim=1)  # (B, rows, W)
        rows[:, top : top + step] = fg.any(dim=2)
        cols |= fg.any(dim=1)
    # First and last True of each row/column mask: argmax finds the first maximum.
    found = rows.any(dim=1)
    edges = torch.stack([
        cols.to(torch.uint8).argmax(dim=1), rows.to(torch.uint8).argmax(dim=1),
        w - cols.flip(1).to(torch.uint8).argmax(dim=1), h - rows.flip(1).to(torch.uint8).argmax(dim=1),
        found.to(torch.int64),
    ], dim=1).tolist()  # the one copy to the host
    return [tuple(e[:4]) if e[4] else None for e in edges]  # type: ignore[misc]


def trim(images: torch.Tensor, threshold: int = 10, color: Optional[Sequence[int]] = None) -> list[torch.Tensor]:
    """Each image cut to its foreground box (:func:`trim_boxes`); an image that is all background
    comes back whole.

    Args:
        images: uint8 ``(B, C, H, W)``.
        threshold: 0..255 (see :func:`trim_boxes`).
        color: the background per channel, or None for each image's top-left pixel.

    Returns:
        B new uint8 ``(C, H_i, W_i)`` tensors on the input's device.

    >>> x = torch.zeros(2, 1, 4, 5, dtype=torch.uint8); x[0, 0, 1:3, 2] = 200
    >>> [tuple(t.shape) for t in trim(x)]
    [(1, 2, 1), (1, 4, 5)]
    """
    boxes = trim_boxes(images, threshold, color)
    return [(image if box is None else image[:, box[1] : box[3], box[0] : box[2]]).clone()
            for image, box in zip(images, boxes)]
