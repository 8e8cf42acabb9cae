"""``rank_filter``: Pillow's ``MedianFilter``, ``MinFilter`` and ``MaxFilter``."""

from __future__ import annotations

import functools
from typing import Literal, Optional

from PIL import Image, ImageFilter

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step

PILLOW_FILTERS = {"median": ImageFilter.MedianFilter, "min": ImageFilter.MinFilter, "max": ImageFilter.MaxFilter}


class RankFilterParams(OpParams):
    """The median, minimum or maximum of the ``size x size`` window around each pixel, edge pixels
    repeated; each channel alone, alpha included."""

    kind: Literal[kernels.RANK_KINDS]  # type: ignore[valid-type]
    size: Literal[kernels.RANK_SIZES] = 3  # type: ignore[valid-type]


def bind(p: RankFilterParams, shape: ImageShape) -> Optional[Step]:
    return Step("rank_filter", shape, shape, functools.partial(kernels.rank_filter, kind=p.kind, size=p.size))


def reference(image: Image.Image, p: RankFilterParams) -> Image.Image:
    return image.filter(PILLOW_FILTERS[p.kind](p.size))


OPERATION = Operation(
    name="rank_filter",
    summary=("`Image.filter(ImageFilter.MedianFilter(size))`, `MinFilter(size)` or `MaxFilter(size)`: the "
             "window's median, minimum or maximum, edge pixels repeated, each channel (alpha too)."),
    params_model=RankFilterParams,
    bind=bind,
    reference=reference,
    tolerance=1,
    examples=({"kind": "median"}, {"kind": "median", "size": 5}, {"kind": "median", "size": 9},
              {"kind": "min", "size": 7}, {"kind": "max", "size": 3}, {"kind": "max", "size": 9}),
)
