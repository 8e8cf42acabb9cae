"""``flip``: Pillow's ``ImageOps.mirror`` (horizontal) or ``ImageOps.flip`` (vertical)."""

from __future__ import annotations

import functools
from typing import Literal, Optional

from PIL import Image, ImageOps

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step


class FlipParams(OpParams):
    """``horizontal`` swaps left and right, ``vertical`` top and bottom."""

    direction: Literal[kernels.FLIP_DIRECTIONS]  # type: ignore[valid-type]


def bind(p: FlipParams, shape: ImageShape) -> Optional[Step]:
    return Step("flip", shape, shape, functools.partial(kernels.flip, direction=p.direction))


def reference(image: Image.Image, p: FlipParams) -> Image.Image:
    return ImageOps.mirror(image) if p.direction == "horizontal" else ImageOps.flip(image)


OPERATION = Operation(
    name="flip",
    summary="`ImageOps.mirror` (`horizontal`: left and right swapped) or `ImageOps.flip` (`vertical`: top and bottom).",
    params_model=FlipParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=({"direction": "horizontal"}, {"direction": "vertical"}),
)
