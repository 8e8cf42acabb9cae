"""``autocontrast``: Pillow's ``ImageOps.autocontrast`` of each image on its colour channels;
alpha passed through."""

from __future__ import annotations

from typing import Annotated, Optional, Union

from PIL import Image, ImageOps
from pydantic import Field

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step, per_sample_step
from gpu_worker.operations.tone import on_colour_bands

#: Largest percentage cut from either end of the histogram.
MAX_CUTOFF = 49.0

Percent = Annotated[float, Field(ge=0.0, le=MAX_CUTOFF)]


class AutocontrastParams(OpParams):
    """The darkest and lightest ``cutoff`` percent of the pixels are ignored, then the levels are
    stretched to 0..255; ``preserve_tone`` stretches every channel by the luma's histogram."""

    cutoff: Union[Percent, Annotated[list[Percent], Field(min_length=2, max_length=2)]] = Field(
        default=0.0, description="the percentage cut from each end, 0 to 49, or [low, high]")
    preserve_tone: bool = False


def _cutoff(p: AutocontrastParams) -> float | tuple[float, float]:
    return tuple(p.cutoff) if isinstance(p.cutoff, list) else p.cutoff  # type: ignore[return-value]


def bind(p: AutocontrastParams, shape: ImageShape) -> Optional[Step]:
    cutoff = _cutoff(p)
    low_high = cutoff if isinstance(cutoff, tuple) else (cutoff, cutoff)  # as Pillow reads a number
    return per_sample_step("autocontrast", shape, shape, kernels.autocontrast, {"cutoff": low_high},
                           fixed={"preserve_tone": p.preserve_tone})


def reference(image: Image.Image, p: AutocontrastParams) -> Image.Image:
    return on_colour_bands(image, lambda im: ImageOps.autocontrast(im, _cutoff(p), preserve_tone=p.preserve_tone))


OPERATION = Operation(
    name="autocontrast",
    summary=("`ImageOps.autocontrast(im, cutoff, preserve_tone=...)`: the darkest and lightest `cutoff` percent "
             "ignored, the rest stretched to 0-255, each colour channel by its own histogram or, with "
             "`preserve_tone`, all by the luma's; alpha is kept."),
    params_model=AutocontrastParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=({}, {"cutoff": 2.5}, {"cutoff": [1, 10]}, {"cutoff": 5, "preserve_tone": True},
              {"preserve_tone": True}, {"cutoff": [49, 49]}),
    per_sample=("cutoff",),
)
