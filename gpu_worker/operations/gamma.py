"""``gamma``: each colour level through ``int(255 * (v / 255) ** (1 / value) + 0.5)``; alpha
passed through."""

from __future__ import annotations

from typing import Optional

from PIL import Image
from pydantic import Field

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step, per_sample_step
from gpu_worker.operations.tone import on_colour_bands
from kernels.tone import gamma_table

#: Largest gamma accepted.
MAX_GAMMA = 10.0


class GammaParams(OpParams):
    """Gamma: above 1 brightens the mid-tones, below 1 darkens them; 1 leaves the image as it is."""

    value: float = Field(gt=0.0, le=MAX_GAMMA, description="above 0, at most 10")


def bind(p: GammaParams, shape: ImageShape) -> Optional[Step]:
    if gamma_table(p.value) == list(range(256)):
        return None  # the identity table
    return per_sample_step("gamma", shape, shape, kernels.gamma, {"value": p.value})


def reference(image: Image.Image, p: GammaParams) -> Image.Image:
    """The table with Pillow's ``Image.point`` on the colour bands (written out here from the
    formula, not taken from the kernel's module)."""
    table = [int(255 * (v / 255) ** (1 / p.value) + 0.5) for v in range(256)]
    return on_colour_bands(image, lambda im: im.point(table * len(im.getbands())))


OPERATION = Operation(
    name="gamma",
    summary=("each colour level `v` becomes `int(255 * (v / 255) ** (1 / value) + 0.5)` (`Image.point` "
             "with that table); alpha is kept."),
    params_model=GammaParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=({"value": 2.2}, {"value": 0.45}, {"value": 0.01}, {"value": 10.0}),
    per_sample=("value",),
)
