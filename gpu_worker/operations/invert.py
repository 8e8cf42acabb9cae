"""``invert``: Pillow's ``ImageOps.invert`` on the colour channels; alpha passed through."""

from __future__ import annotations

from typing import Optional

from PIL import Image, ImageOps

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step
from gpu_worker.operations.tone import on_colour_bands


class InvertParams(OpParams):
    """No parameters: every colour level ``v`` becomes ``255 - v``."""


def bind(p: InvertParams, shape: ImageShape) -> Optional[Step]:
    return Step("invert", shape, shape, kernels.invert)


def reference(image: Image.Image, p: InvertParams) -> Image.Image:
    return on_colour_bands(image, ImageOps.invert)


OPERATION = Operation(
    name="invert",
    summary="`ImageOps.invert`: each colour level `v` becomes `255 - v`; alpha is kept.",
    params_model=InvertParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=({},),
)
