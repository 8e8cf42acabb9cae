"""Pillow's ``Image.crop`` on ``(B, C, H, W)`` uint8 batches."""

from __future__ import annotations

import operator

import torch

from kernels._checks import check_images


def _check_box(box: object) -> tuple[int, int, int, int]:
    """The box as four Python ints; ValueError naming it when it is not a non-empty rectangle."""
    if not isinstance(box, (tuple, list)) or len(box) != 4:
        raise ValueError(f"box must be (left, top, right, bottom), got {box!r}")
    try:
        # operator.index takes ints (numpy ints too) and refuses floats and strings; bools are
        # refused because True/False as a coordinate is always a mistake.
        if any(isinstance(v, bool) for v in box):
            raise TypeError
        left, top, right, bottom = (operator.index(v) for v in box)
    except TypeError:
        msg = f"box must hold four integers (left, top, right, bottom), got {box!r}"
        raise ValueError(msg) from None
    if right <= left or bottom <= top:
        raise ValueError(
            f"box {box!r} is empty: it needs right > left and bottom > top (width {right - left}, "
            f"height {bottom - top})"
        )
    return left, top, right, bottom


def crop(images: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Cut ``box = (left, top, right, bottom)`` out of every image, as ``Image.crop(box)`` does.

    Pixel coordinates: ``right`` and ``bottom`` are exclusive, so the result is
    ``(bottom - top) x (right - left)``. The box may reach past the image or lie wholly outside it;
    as in Pillow, the area outside the image is zero in every channel (transparent black for RGBA).
    Unlike Pillow, an empty box (zero or negative width or height) is refused: a batch has no
    0-pixel images.

    Args:
        images: uint8 ``(B, C, H, W)``, C in 1..4, values 0..255.
        box: four ints ``(left, top, right, bottom)`` with ``right > left`` and ``bottom > top``;
            any of them may be negative or beyond the image.

    Returns:
        A new uint8 ``(B, C, bottom - top, right - left)`` tensor on the input's device.

    Example:
        >>> x = torch.ones(2, 3, 10, 20, dtype=torch.uint8)
        >>> y = crop(x, (15, -2, 25, 4))
        >>> y.shape, int(y.sum())
        (torch.Size([2, 3, 6, 10]), 120)
    """
    check_images(images)
    left, top, right, bottom = _check_box(box)
    _, _, h, w = images.shape
    # The part of the box inside the image (Python ints only: nothing waits on the device).
    x0, x1 = max(left, 0), min(right, w)
    y0, y1 = max(top, 0), min(bottom, h)
    if (x0, y0, x1, y1) == (left, top, right, bottom):
        return images[:, :, top:bottom, left:right].clone()
    out = images.new_zeros((images.shape[0], images.shape[1], bottom - top, right - left))
    if x1 > x0 and y1 > y0:
        out[:, :, y0 - top : y1 - top, x0 - left : x1 - left] = images[:, :, y0:y1, x0:x1]
    return out
