"""``pixelate``: Pillow's BOX resize down by ``size``, then NEAREST back to the image's size."""

from __future__ import annotations

import functools
from typing import Optional

from PIL import Image
from pydantic import Field

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step

#: Largest block side accepted, in pixels.
MAX_BLOCK = 1024


class PixelateParams(OpParams):
    """Blocks of about ``size`` x ``size`` pixels, each the average of its pixels."""

    size: int = Field(ge=2, le=MAX_BLOCK, description="block side in pixels")


def bind(p: PixelateParams, shape: ImageShape) -> Optional[Step]:
    return Step("pixelate", shape, shape, functools.partial(kernels.pixelate, size=p.size))


def reference(image: Image.Image, p: PixelateParams) -> Image.Image:
    w, h = image.size
    small = image.resize((max(1, w // p.size), max(1, h // p.size)), Image.Resampling.BOX)
    return small.resize((w, h), Image.Resampling.NEAREST)


OPERATION = Operation(
    name="pixelate",
    summary=("`im.resize((max(1, w // size), max(1, h // size)), Image.BOX).resize((w, h), Image.NEAREST)`: "
             "blocks of about `size` pixels, each its average (RGBA premultiplied, as `resize`)."),
    params_model=PixelateParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=({"size": 4}, {"size": 7}, {"size": 2}, {"size": 40}),
)
