"""Mirror images left-right or upside down: Pillow's ``ImageOps.mirror`` and ``ImageOps.flip``."""

from __future__ import annotations

import torch

from kernels._checks import check_images

#: Directions :func:`flip` takes.
FLIP_DIRECTIONS = ("horizontal", "vertical")


def flip(images: torch.Tensor, direction: str) -> torch.Tensor:
    """``images`` mirrored: ``horizontal`` swaps left and right (``ImageOps.mirror``),
    ``vertical`` swaps top and bottom (``ImageOps.flip``). Exact: pixels move, none change.

    Args:
        images: uint8 ``(B, C, H, W)``.
        direction: ``"horizontal"`` or ``"vertical"``.

    Returns:
        A new contiguous uint8 ``(B, C, H, W)`` tensor on the input's device.

    >>> flip(torch.arange(6, dtype=torch.uint8).view(1, 1, 2, 3), "horizontal").flatten().tolist()
    [2, 1, 0, 5, 4, 3]
    """
    check_images(images)
    if direction not in FLIP_DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(FLIP_DIRECTIONS)}, got {direction!r}")
    return images.flip(-1 if direction == "horizontal" else -2)
