"""``resize``: Pillow's ``Image.resize`` with a resampling filter; sizes as the job contract says."""

from __future__ import annotations

import functools
import math
from typing import Callable, Literal, Optional

from PIL import Image
from pydantic import Field, model_validator

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step

#: Largest side a resize may ask for, in pixels (the output-pixel limit and the output format's own
#: largest side apply on top).
MAX_RESIZE_SIDE = 65_535
#: Pillow's resampling filter per name.
PILLOW_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


class ResizeParams(OpParams):
    """``width`` only or ``height`` only keep the aspect ratio; both fit inside the box
    (Pillow's ``thumbnail`` sizing, never enlarging) unless ``maintain_aspect`` is false, which
    gives exactly ``width`` x ``height``."""

    width: Optional[int] = Field(default=None, ge=1, le=MAX_RESIZE_SIDE, description="this, `height` or both")
    height: Optional[int] = Field(default=None, ge=1, le=MAX_RESIZE_SIDE)
    maintain_aspect: bool = True
    filter: Literal[tuple(kernels.RESAMPLING_FILTERS)] = "lanczos"  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _needs_a_side(self):
        if self.width is None and self.height is None:
            raise ValueError("resize needs 'width', 'height' or both")
        return self


def resize_size(params: ResizeParams, width: int, height: int) -> tuple[int, int]:
    """The (width, height) a resize gives for a ``width`` x ``height`` source.

    >>> resize_size(ResizeParams(width=800), 1920, 1080)
    (800, 450)
    """
    w, h = params.width, params.height
    if w is not None and h is not None:
        if not params.maintain_aspect:
            return w, h
        return thumbnail_size(width, height, w, h)
    if w is not None:
        return w, max(1, int(height * (w / width)))
    return max(1, int(width * (h / height))), h


def thumbnail_size(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """Pillow's ``Image.thumbnail`` sizing: fit inside the box, aspect kept, never enlarged.

    Mirrors ``preserve_aspect_ratio`` in Pillow's Image.py, rounding rule included.
    """
    if box_w >= width and box_h >= height:
        return width, height
    aspect = width / height

    def round_aspect(number: float, key: Callable[[int], float]) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if box_w / box_h >= aspect:
        return round_aspect(box_h * aspect, key=lambda n: abs(aspect - n / box_h)), box_h
    return box_w, round_aspect(box_w / aspect, key=lambda n: 0 if n == 0 else abs(aspect - box_w / n))


def bind(p: ResizeParams, shape: ImageShape) -> Optional[Step]:
    c, h, w = shape
    out_w, out_h = resize_size(p, w, h)
    if (out_w, out_h) == (w, h):
        return None  # Pillow returns a copy for a same-size resize: nothing to compute
    kernel = functools.partial(kernels.resize, size=(out_h, out_w), filter=p.filter)
    return Step("resize", shape, (c, out_h, out_w), kernel)


def reference(image: Image.Image, p: ResizeParams) -> Image.Image:
    """Pillow's resize; the size with both sides and ``maintain_aspect`` from Pillow's own
    ``thumbnail`` (not from :func:`thumbnail_size`, so the sizing is checked too)."""
    width, height = p.width, p.height
    if p.maintain_aspect:
        if width and height:
            fitted = Image.new("L", image.size)
            fitted.thumbnail((width, height), reducing_gap=None)
            width, height = fitted.size
        elif width:
            height = max(1, int(image.height * (width / image.width)))
        else:
            width = max(1, int(image.width * (height / image.height)))
    if (width, height) == image.size:
        return image.copy()
    return image.resize((width, height), PILLOW_FILTERS[p.filter])


OPERATION = Operation(
    name="resize",
    summary=("width only or height only keep the aspect ratio (the other side is `int(side * ratio)`, at "
             "least 1); both with `maintain_aspect` fit inside the box as `Image.thumbnail` sizes it and "
             "never enlarge; `maintain_aspect: false` gives exactly that size. `Image.resize` with the "
             "filter, RGBA premultiplied."),
    params_model=ResizeParams,
    bind=bind,
    reference=reference,
    tolerance=1,
    examples=(
        {"width": 17},
        {"height": 11, "filter": "nearest"},
        {"width": 40, "height": 50, "maintain_aspect": False, "filter": "bicubic"},
        {"width": 20, "height": 9, "filter": "bilinear"},
    ),
)
