"""``box_blur``: Pillow's ``ImageFilter.BoxBlur`` (one extended-box pass each way)."""

from __future__ import annotations

import functools
from typing import Optional

from PIL import Image, ImageFilter
from pydantic import Field

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step

#: Largest radius accepted, in pixels (the cost does not depend on it).
MAX_RADIUS = 100.0


class BoxBlurParams(OpParams):
    """Each pixel becomes the mean of the box reaching ``radius`` pixels each way; a fractional
    radius weighs the two pixels just outside the box by the fraction. Edge pixels repeat."""

    radius: float = Field(ge=0.0, le=MAX_RADIUS, description="pixels; 0 leaves the image as it is")


def bind(p: BoxBlurParams, shape: ImageShape) -> Optional[Step]:
    if p.radius == 0:
        return None  # Pillow returns a copy
    return Step("box_blur", shape, shape, functools.partial(kernels.box_blur, radius=p.radius))


def reference(image: Image.Image, p: BoxBlurParams) -> Image.Image:
    return image.filter(ImageFilter.BoxBlur(p.radius))


OPERATION = Operation(
    name="box_blur",
    summary=("`Image.filter(ImageFilter.BoxBlur(radius))`: the mean of a box `2 * radius + 1` pixels wide, "
             "edge pixels repeated, every channel (alpha too); any radius costs the same."),
    params_model=BoxBlurParams,
    bind=bind,
    reference=reference,
    tolerance=1,
    examples=({"radius": 1}, {"radius": 2.5}, {"radius": 0.4}, {"radius": 30}, {"radius": 0}),
)
