"""Pillow's ``Image.crop`` on ``(B, C, H, W)`` uint8 batches: one box for the batch, or one box
per image (boxes of one size)."""

from __future__ import annotations

import operator

import torch

from kernels._checks import check_images, per_image


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


def crop(images: torch.Tensor, box: tuple[int, int, int, int] | torch.Tensor) -> torch.Tensor:
    """Cut ``box = (left, top, right, bottom)`` out of every image, as ``Image.crop(box)`` does.

    Pixel coordinates: ``right`` and ``bottom`` are exclusive, so the result is
    ``(bottom - top) x (right - left)``. The box may reach past the image or lie wholly outside it;
    as in Pillow, the area outside the image is zero in every channel (transparent black for RGBA).
    Unlike Pillow, an empty box (zero or negative width or height) is refused: a batch has no
    0-pixel images.

    Args:
        images: uint8 ``(B, C, H, W)``, C in 1..4, values 0..255.
        box: four ints ``(left, top, right, bottom)`` with ``right > left`` and ``bottom > top``;
            any of them may be negative or beyond the image. Or an int ``(B, 4)`` tensor of such
            boxes, one per image, all of one width and height: each image is cut at its own.

    Returns:
        A new uint8 ``(B, C, bottom - top, right - left)`` tensor on the input's device.

    Example:
        >>> x = torch.ones(2, 3, 10, 20, dtype=torch.uint8)
        >>> y = crop(x, (15, -2, 25, 4))
        >>> y.shape, int(y.sum())
        (torch.Size([2, 3, 6, 10]), 120)
    """
    check_images(images)
    if isinstance(box, torch.Tensor):
        return _crop_each(images, _check_boxes(box, images.shape[0]))
    left, top, right, bottom = _check_box(box)
    if _inside(images, (left, top, right, bottom)):
        return images[:, :, top:bottom, left:right].clone()
    out = images.new_zeros((images.shape[0], images.shape[1], bottom - top, right - left))
    _copy_inside(images, (left, top, right, bottom), out)
    return out


def _inside(images: torch.Tensor, box: tuple[int, int, int, int]) -> bool:
    """Whether ``box`` lies wholly within the images (Python ints only: nothing waits on the device)."""
    left, top, right, bottom = box
    return left >= 0 and top >= 0 and right <= images.shape[3] and bottom <= images.shape[2]


def _copy_inside(images: torch.Tensor, box: tuple[int, int, int, int], out: torch.Tensor) -> None:
    """Copy the part of ``box`` inside ``images`` (B, C, H, W) to where it lies in ``out``
    (B, C, box height, box width); the rest of ``out`` is left as it is."""
    left, top, right, bottom = box
    _, _, h, w = images.shape
    x0, x1 = max(left, 0), min(right, w)
    y0, y1 = max(top, 0), min(bottom, h)
    if x1 > x0 and y1 > y0:
        out[:, :, y0 - top : y1 - top, x0 - left : x1 - left] = images[:, :, y0:y1, x0:x1]


def _check_boxes(boxes: torch.Tensor, count: int) -> list[tuple[int, int, int, int]]:
    """Per-image boxes as Python ints; ValueError unless every one is a valid box of one size."""
    if boxes.is_floating_point():
        raise ValueError(f"box per image must be integers, got {boxes.dtype}")
    found = [_check_box(tuple(row)) for row in per_image("box", boxes, count, 4).tolist()]
    sizes = {(right - left, bottom - top) for left, top, right, bottom in found}
    if len(sizes) > 1:
        raise ValueError(f"boxes per image must all be of one size (width, height), got {sorted(sizes)}")
    return found


def _crop_each(images: torch.Tensor, boxes: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """Image i cut at ``boxes[i]`` (all of one size), into one new tensor: a copy per image (a
    crop moves no more bytes than its result holds)."""
    b, c = images.shape[:2]
    left, top, right, bottom = boxes[0] if boxes else (0, 0, 1, 1)
    if all(_inside(images, box) for box in boxes):
        out = images.new_empty((b, c, bottom - top, right - left))
    else:
        out = images.new_zeros((b, c, bottom - top, right - left))
    for i, box in enumerate(boxes):
        _copy_inside(images[i : i + 1], box, out[i : i + 1])
    return out
