"""``equalize``: Pillow's ``ImageOps.equalize`` of each image on its colour channels; alpha
passed through."""

from __future__ import annotations

from typing import Optional

from PIL import Image, ImageOps

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step
from gpu_worker.operations.tone import on_colour_bands


class EqualizeParams(OpParams):
    """No parameters: each colour channel is equalized by its own histogram."""


def bind(p: EqualizeParams, shape: ImageShape) -> Optional[Step]:
    return Step("equalize", shape, shape, kernels.equalize)


def reference(image: Image.Image, p: EqualizeParams) -> Image.Image:
    return on_colour_bands(image, ImageOps.equalize)


OPERATION = Operation(
    name="equalize",
    summary="`ImageOps.equalize`: each colour channel's histogram made flat, channel by channel; alpha is kept.",
    params_model=EqualizeParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=({},),
)
