"""``posterize``: Pillow's ``ImageOps.posterize`` on the colour channels; alpha passed through."""

from __future__ import annotations

from typing import Optional

from PIL import Image, ImageOps
from pydantic import Field

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step, per_sample_step
from gpu_worker.operations.tone import on_colour_bands


class PosterizeParams(OpParams):
    """How many of each colour level's 8 bits to keep (the top ones)."""

    bits: int = Field(ge=1, le=8)


def bind(p: PosterizeParams, shape: ImageShape) -> Optional[Step]:
    if p.bits == 8:
        return None  # every bit kept: the image as it is
    return per_sample_step("posterize", shape, shape, kernels.posterize, {"bits": p.bits})


def reference(image: Image.Image, p: PosterizeParams) -> Image.Image:
    return on_colour_bands(image, lambda im: ImageOps.posterize(im, p.bits))


OPERATION = Operation(
    name="posterize",
    summary="`ImageOps.posterize`: keeps the top `bits` bits of each colour level; alpha is kept.",
    params_model=PosterizeParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=({"bits": 3}, {"bits": 1}, {"bits": 7}),
    per_sample=("bits",),
)
