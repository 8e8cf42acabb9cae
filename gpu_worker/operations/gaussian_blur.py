"""``gaussian_blur``: Pillow's ``ImageFilter.GaussianBlur`` (three extended box blurs)."""

from __future__ import annotations

import functools
from typing import Optional

from PIL import Image, ImageFilter
from pydantic import Field

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step

#: Largest radius (standard deviation) accepted, in pixels (the cost does not depend on it).
MAX_RADIUS = 100.0


class GaussianBlurParams(OpParams):
    """A Gaussian blur of standard deviation ``radius``, as Pillow approximates it: three passes of
    an extended box blur each way. Edge pixels repeat."""

    radius: float = Field(gt=0.0, le=MAX_RADIUS, description="above 0, at most 100: the standard deviation, in pixels")


def bind(p: GaussianBlurParams, shape: ImageShape) -> Optional[Step]:
    return Step("gaussian_blur", shape, shape, functools.partial(kernels.gaussian_blur, radius=p.radius))


def reference(image: Image.Image, p: GaussianBlurParams) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(p.radius))


OPERATION = Operation(
    name="gaussian_blur",
    summary=("`Image.filter(ImageFilter.GaussianBlur(radius))`: three extended box blurs each way, "
             "edge pixels repeated, every channel (alpha too); any radius costs the same."),
    params_model=GaussianBlurParams,
    bind=bind,
    reference=reference,
    tolerance=1,
    examples=({"radius": 2}, {"radius": 0.7}, {"radius": 5.5}, {"radius": 40}),
)
