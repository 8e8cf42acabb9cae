"""``transpose``: Pillow's ``Image.transpose`` (turns by multiples of 90°, mirrors)."""

from __future__ import annotations

import functools
from typing import Literal, Optional

from PIL import Image

from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step
from kernels.transpose import SWAPS_SIDES, TRANSPOSE_METHODS, transpose


class TransposeParams(OpParams):
    """``method``: Pillow's ``Image.Transpose`` member, lower case."""

    method: Literal[TRANSPOSE_METHODS]  # type: ignore[valid-type]


def bind(p: TransposeParams, shape: ImageShape) -> Optional[Step]:
    c, h, w = shape
    out_shape = (c, w, h) if p.method in SWAPS_SIDES else shape
    return Step("transpose", shape, out_shape, functools.partial(transpose, method=p.method))


def reference(image: Image.Image, p: TransposeParams) -> Image.Image:
    return image.transpose(Image.Transpose[p.method.upper()])


OPERATION = Operation(
    name="transpose",
    summary=("`Image.transpose(method)`: `rotate_90`, `rotate_180`, `rotate_270` (counter-clockwise), "
             "`flip_left_right`, `flip_top_bottom`, `transpose` (about the main diagonal) or `transverse` "
             "(about the other); no resampling."),
    params_model=TransposeParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=tuple({"method": method} for method in TRANSPOSE_METHODS),
)
