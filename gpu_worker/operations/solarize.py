"""``solarize``: Pillow's ``ImageOps.solarize`` on the colour channels; alpha passed through."""

from __future__ import annotations

from typing import Optional

from PIL import Image, ImageOps
from pydantic import Field

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step, per_sample_step
from gpu_worker.operations.tone import on_colour_bands


class SolarizeParams(OpParams):
    """Colour levels at or above ``threshold`` are inverted (256: none)."""

    threshold: int = Field(default=128, ge=0, le=256)


def bind(p: SolarizeParams, shape: ImageShape) -> Optional[Step]:
    if p.threshold == 256:
        return None  # no level is inverted
    return per_sample_step("solarize", shape, shape, kernels.solarize, {"threshold": p.threshold})


def reference(image: Image.Image, p: SolarizeParams) -> Image.Image:
    return on_colour_bands(image, lambda im: ImageOps.solarize(im, p.threshold))


OPERATION = Operation(
    name="solarize",
    summary="`ImageOps.solarize`: colour levels at or above `threshold` become `255 - v`; alpha is kept.",
    params_model=SolarizeParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=({}, {"threshold": 40}, {"threshold": 0}, {"threshold": 200}),
    per_sample=("threshold",),
)
