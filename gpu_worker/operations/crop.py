"""``crop``: Pillow's ``Image.crop``; the box may reach past the image."""

from __future__ import annotations

from typing import Optional

from PIL import Image
from pydantic import Field

import kernels
from gpu_worker.errors import InvalidInput
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step, per_sample_step

#: Largest absolute crop coordinate accepted, in pixels.
MAX_COORD = 1_000_000


class CropParams(OpParams):
    """A box in source pixels; missing sides default to the image's edges (0, 0, width, height).
    The box may reach past the image (the outside is zero, as in Pillow)."""

    left: int = Field(default=0, ge=-MAX_COORD, le=MAX_COORD)
    top: int = Field(default=0, ge=-MAX_COORD, le=MAX_COORD)
    right: Optional[int] = Field(default=None, ge=-MAX_COORD, le=MAX_COORD, description="default: the image's width")
    bottom: Optional[int] = Field(default=None, ge=-MAX_COORD, le=MAX_COORD,
                                  description="default: the image's height")


def _box(p: CropParams, width: int, height: int) -> tuple[int, int, int, int]:
    return (p.left, p.top, width if p.right is None else p.right, height if p.bottom is None else p.bottom)


def bind(p: CropParams, shape: ImageShape) -> Optional[Step]:
    c, h, w = shape
    box = _box(p, w, h)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise InvalidInput(
            f"crop box (left={box[0]}, top={box[1]}, right={box[2]}, bottom={box[3]}) has zero or "
            f"negative area on a {w}x{h} image: right must exceed left and bottom must exceed top"
        )
    if box == (0, 0, w, h):
        return None
    return per_sample_step("crop", shape, (c, box[3] - box[1], box[2] - box[0]), kernels.crop, {"box": box})


def reference(image: Image.Image, p: CropParams) -> Image.Image:
    return image.crop(_box(p, image.width, image.height))


OPERATION = Operation(
    name="crop",
    summary="`Image.crop`: the box may reach past the image (the outside is zero); an empty box is an error.",
    params_model=CropParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=({"left": 3, "top": 2, "right": 20, "bottom": 15}, {"left": -4, "top": 10, "right": 30, "bottom": 40},
              {"top": 5}, {"left": 25, "top": 20, "right": 42, "bottom": 33}),
    per_sample=("left", "top", "right", "bottom"),
)
