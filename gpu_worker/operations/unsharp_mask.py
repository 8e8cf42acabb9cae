"""``unsharp_mask``: Pillow's ``ImageFilter.UnsharpMask`` (Gaussian blur, thresholded difference)."""

from __future__ import annotations

from typing import Optional

from PIL import Image, ImageFilter
from pydantic import Field

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step, per_sample_step

#: Largest blur radius (standard deviation) and strength accepted.
MAX_RADIUS = 100.0
MAX_PERCENT = 1000


class UnsharpMaskParams(OpParams):
    """Blur with a Gaussian of ``radius``, then push each value away from the blur by ``percent``
    of the difference where that difference exceeds ``threshold`` levels."""

    radius: float = Field(default=2.0, ge=0.0, le=MAX_RADIUS, description="the blur's standard deviation")
    percent: int = Field(default=150, ge=0, le=MAX_PERCENT, description="strength")
    threshold: int = Field(default=3, ge=0, le=255, description="levels; smaller differences are left alone")


def bind(p: UnsharpMaskParams, shape: ImageShape) -> Optional[Step]:
    if p.radius == 0 or p.percent == 0:
        return None  # no blur, or no strength: Pillow gives the image back
    return per_sample_step("unsharp_mask", shape, shape, kernels.unsharp_mask,
                           {"percent": p.percent, "threshold": p.threshold}, fixed={"radius": p.radius})


def reference(image: Image.Image, p: UnsharpMaskParams) -> Image.Image:
    return image.filter(ImageFilter.UnsharpMask(p.radius, p.percent, p.threshold))


OPERATION = Operation(
    name="unsharp_mask",
    summary=("`Image.filter(ImageFilter.UnsharpMask(radius, percent, threshold))`: a Gaussian blur, then "
             "`in + (in - blur) * percent / 100` where `abs(in - blur) > threshold`, every channel (alpha too)."),
    params_model=UnsharpMaskParams,
    bind=bind,
    reference=reference,
    tolerance=1,
    examples=({}, {"radius": 0.8, "percent": 300, "threshold": 0}, {"radius": 6, "percent": 60, "threshold": 10},
              {"radius": 25, "percent": 1000, "threshold": 1}, {"percent": 0}, {"percent": 80, "threshold": 0}),
    per_sample=("percent", "threshold"),
)
