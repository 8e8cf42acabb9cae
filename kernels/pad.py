"""Borders around a batch: Pillow's ``ImageOps.expand(im, border, fill)``."""

from __future__ import annotations

import operator
from typing import Optional, Sequence

import torch

from kernels._checks import check_images
from kernels.rotate import mode_color


def _check_border(border: object) -> tuple[int, int, int, int]:
    """``border`` as four ints >= 0; ValueError naming it otherwise."""
    try:
        if not isinstance(border, (tuple, list)) or len(border) != 4 or any(isinstance(v, bool) for v in border):
            raise TypeError
        values = tuple(operator.index(v) for v in border)
    except TypeError:
        raise ValueError(f"border must be (left, top, right, bottom), four integers >= 0, got {border!r}") from None
    if min(values) < 0:
        raise ValueError(f"border must be (left, top, right, bottom), four integers >= 0, got {border!r}")
    return values  # type: ignore[return-value]


def pad(images: torch.Tensor, border: Sequence[int], fill: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Every image with ``border = (left, top, right, bottom)`` pixels of ``fill`` around it, as
    ``ImageOps.expand(im, border, fill)``. Exact: pixels are copied, none computed.

    Args:
        images: uint8 ``(B, C, H, W)``.
        border: four ints >= 0, in pixels.
        fill: a straight ``(r, g, b, a)`` colour, ints 0..255, taken per mode as
            ``ImageColor.getcolor`` does (:func:`kernels.mode_color`); None is transparent black.

    Returns:
        A new uint8 ``(B, C, top + H + bottom, left + W + right)`` tensor on the input's device.

    >>> pad(torch.full((1, 1, 1, 2), 9, dtype=torch.uint8), (1, 0, 0, 1), (255, 255, 255, 255))[0, 0].tolist()
    [[255, 9, 9], [255, 255, 255]]
    """
    check_images(images)
    left, top, right, bottom = _check_border(border)
    batch, channels, height, width = images.shape
    return place(images, (top + height + bottom, left + width + right), (left, top), fill)


def place(images: torch.Tensor, size: tuple[int, int], offset: tuple[int, int],
          fill: Optional[Sequence[int]] = None) -> torch.Tensor:
    """A ``size = (height, width)`` canvas of ``fill`` per image with the image pasted at
    ``offset = (x, y)`` (the image must lie inside the canvas): ``Image.new`` + ``paste``.

    Returns a new uint8 ``(B, C, height, width)`` tensor on the input's device, channels-last
    when the input is.
    """
    batch, channels, height, width = images.shape
    out_h, out_w = size
    x, y = offset
    if x < 0 or y < 0 or x + width > out_w or y + height > out_h:
        raise ValueError(f"a {width}x{height} image at ({x}, {y}) does not fit a {out_w}x{out_h} canvas")
    values = mode_color(None if fill is None else tuple(fill), channels)
    # The input's layout kept: a decoded image is channels-last, and a planar canvas would make
    # the paste a transposing copy.
    layout = (torch.channels_last if images.is_contiguous(memory_format=torch.channels_last)
              and not images.is_contiguous() else torch.contiguous_format)
    out = torch.empty((batch, channels, out_h, out_w), dtype=torch.uint8, device=images.device, memory_format=layout)
    # Fill only the border strips (the image's area is overwritten next), each as copies of one
    # row of the colour laid out as the canvas is: broadcast copies over a whole contiguous row.
    colour = torch.tensor(values, dtype=torch.uint8, device=images.device)
    if layout is torch.channels_last:
        strips = out.permute(0, 2, 3, 1)  # (B, H, W, C) view, contiguous
        row = colour.repeat(out_w).view(out_w, channels)
        strips[:, :y] = row
        strips[:, y + height :] = row
        strips[:, y : y + height, :x] = row[:x]
        strips[:, y : y + height, x + width :] = row[x + width :]
    else:
        row = colour.view(channels, 1).expand(channels, out_w).contiguous()
        out[:, :, :y] = row.view(1, channels, 1, out_w)
        out[:, :, y + height :] = row.view(1, channels, 1, out_w)
        out[:, :, y : y + height, :x] = row[:, :x].view(1, channels, 1, x)
        out[:, :, y : y + height, x + width :] = row[:, x + width :].view(1, channels, 1, out_w - x - width)
    out[:, :, y : y + height, x : x + width] = images
    return out
