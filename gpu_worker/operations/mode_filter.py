"""``mode_filter``: Pillow's ``ImageFilter.ModeFilter``."""

from __future__ import annotations

import functools
from typing import Literal, Optional

from PIL import Image, ImageFilter

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step


class ModeFilterParams(OpParams):
    """The most frequent value of the ``size x size`` window (pixels inside the image only; the
    lowest on ties) where it occurs more than twice, else the pixel's own; each channel alone."""

    size: Literal[kernels.RANK_SIZES] = 3  # type: ignore[valid-type]


def bind(p: ModeFilterParams, shape: ImageShape) -> Optional[Step]:
    return Step("mode_filter", shape, shape, functools.partial(kernels.mode_filter, size=p.size))


def reference(image: Image.Image, p: ModeFilterParams) -> Image.Image:
    return image.filter(ImageFilter.ModeFilter(p.size))


OPERATION = Operation(
    name="mode_filter",
    summary=("`Image.filter(ImageFilter.ModeFilter(size))`: the window's most frequent value (the lowest on "
             "ties) where it occurs more than twice, else the pixel's own; each channel (alpha too)."),
    params_model=ModeFilterParams,
    bind=bind,
    reference=reference,
    tolerance=1,
    examples=({}, {"size": 5}, {"size": 9}),
)
