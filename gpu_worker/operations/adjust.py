"""``adjust``: Pillow's ``ImageEnhance`` brightness, contrast, saturation and sharpness, in that order."""

from __future__ import annotations

from typing import Optional

from PIL import Image, ImageEnhance
from pydantic import Field, model_validator

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step, per_sample_step

#: Largest enhancement factor accepted (Pillow's ImageEnhance has no upper bound).
MAX_FACTOR = 100.0
#: Parameter -> Pillow's enhancer, in the order they apply.
ENHANCERS = (("brightness", ImageEnhance.Brightness), ("contrast", ImageEnhance.Contrast),
             ("saturation", ImageEnhance.Color), ("sharpness", ImageEnhance.Sharpness))


class AdjustParams(OpParams):
    """Pillow's ``ImageEnhance`` factors, applied brightness, then contrast, then saturation, then
    sharpness. 1.0 leaves the image as it is; 0.0 gives black, flat grey, grayscale, or the
    smoothed image respectively."""

    brightness: Optional[float] = Field(default=None, ge=0.0, le=MAX_FACTOR, description="at least one of the four")
    contrast: Optional[float] = Field(default=None, ge=0.0, le=MAX_FACTOR)
    saturation: Optional[float] = Field(default=None, ge=0.0, le=MAX_FACTOR)
    sharpness: Optional[float] = Field(default=None, ge=0.0, le=MAX_FACTOR)

    @model_validator(mode="after")
    def _needs_a_factor(self):
        if all(getattr(self, name) is None for name, _ in ENHANCERS):
            raise ValueError("adjust needs 'brightness', 'contrast', 'saturation' or 'sharpness'")
        return self


def bind(p: AdjustParams, shape: ImageShape) -> Optional[Step]:
    factors = {name: getattr(p, name) for name, _ in ENHANCERS if getattr(p, name) is not None}
    return per_sample_step("adjust", shape, shape, kernels.adjust, factors)


def reference(image: Image.Image, p: AdjustParams) -> Image.Image:
    for name, enhancer in ENHANCERS:
        if getattr(p, name) is not None:
            image = enhancer(image).enhance(getattr(p, name))
    return image


OPERATION = Operation(
    name="adjust",
    summary=("`ImageEnhance.Brightness`, then `Contrast`, then `Color`, then `Sharpness`, for the factors "
             "given; 1 leaves the image as it is, 0 gives black, flat grey, grayscale, the smoothed image."),
    params_model=AdjustParams,
    bind=bind,
    reference=reference,
    tolerance=1,
    examples=({"brightness": 1.2, "contrast": 0.5, "saturation": 2.0}, {"contrast": 3.7}, {"brightness": 0.4},
              {"saturation": 0.0}, {"sharpness": 2.0}, {"sharpness": 0.3},
              {"brightness": 0.9, "contrast": 1.3, "saturation": 1.4, "sharpness": 3.5}, {"sharpness": 0.0},
              {"brightness": 1.6, "contrast": 0.8, "saturation": 0.3, "sharpness": 0.7}),
    per_sample=tuple(name for name, _ in ENHANCERS),
)
