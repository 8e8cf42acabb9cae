"""``filter``: Pillow's fixed ``ImageFilter`` kernels, and ``grayscale``."""

from __future__ import annotations

import functools
from typing import Literal, Optional

from PIL import Image, ImageFilter, ImageOps

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step


class FilterParams(OpParams):
    """One of Pillow's fixed filters, or ``grayscale`` (Pillow's ``convert("L")``)."""

    name: Literal[(*kernels.FILTERS, "grayscale")]  # type: ignore[valid-type]


def bind(p: FilterParams, shape: ImageShape) -> Optional[Step]:
    if p.name == "grayscale":
        return Step("grayscale", shape, (1, shape[1], shape[2]), kernels.grayscale)
    return Step(p.name, shape, shape, functools.partial(kernels.apply_filter, name=p.name))


def reference(image: Image.Image, p: FilterParams) -> Image.Image:
    if p.name == "grayscale":
        return ImageOps.grayscale(image)
    return image.filter(getattr(ImageFilter, p.name.upper()))


OPERATION = Operation(
    name="filter",
    summary="`Image.filter(ImageFilter.<NAME>)`; `grayscale` is `ImageOps.grayscale` (one channel out).",
    params_model=FilterParams,
    bind=bind,
    reference=reference,
    tolerance=1,
    examples=tuple({"name": name} for name in (*kernels.FILTERS, "grayscale")),
)
