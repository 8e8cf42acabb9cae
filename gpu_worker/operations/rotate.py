"""``rotate``: Pillow's ``Image.rotate`` about the centre, counter-clockwise, with a fill colour."""

from __future__ import annotations

import functools
from typing import Literal, Optional

from PIL import Image
from pydantic import Field

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step
from gpu_worker.operations.colors import TRANSPARENT, Color, to_hex, to_rgba

#: Largest absolute angle accepted, in degrees (any finite angle works; this keeps JSON sane).
MAX_ANGLE = 1_000_000
#: Pillow's resampling filter per name.
PILLOW_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


class RotateParams(OpParams):
    """Degrees counter-clockwise about the image's centre. Multiples of 90 are exact transposes
    (with ``expand``, or on a square image); other angles resample with ``filter`` and fill the
    area outside the source with ``background``."""

    angle: float = Field(ge=-MAX_ANGLE, le=MAX_ANGLE, description="degrees, counter-clockwise")
    expand: bool = True
    filter: Literal[kernels.ROTATE_FILTERS] = "bicubic"  # type: ignore[valid-type]
    background: Color = Field(default=TRANSPARENT,
                              description="`#rgb`, `#rrggbb`, `#rrggbbaa` or [r, g, b(, a)] 0-255")


def bind(p: RotateParams, shape: ImageShape) -> Optional[Step]:
    c, h, w = shape
    if p.angle % 360.0 == 0:
        return None  # Pillow returns a copy
    out_w, out_h = kernels.rotated_size(w, h, p.angle, p.expand)
    kernel = functools.partial(kernels.rotate, angle=p.angle, expand=p.expand, filter=p.filter,
                               fill=to_rgba(p.background))
    return Step("rotate", shape, (c, out_h, out_w), kernel)


def reference(image: Image.Image, p: RotateParams) -> Image.Image:
    """Pillow's rotate, the colour as a ``#rrggbbaa`` string: Pillow converts it to the image's
    mode with ``ImageColor.getcolor`` (premultiplied for the RGBa/La it resamples LA/RGBA in)."""
    return image.rotate(p.angle, resample=PILLOW_FILTERS[p.filter], expand=p.expand,
                        fillcolor=to_hex(p.background))


OPERATION = Operation(
    name="rotate",
    summary=("`Image.rotate(angle, resample=filter, expand=expand, fillcolor=background)`: counter-clockwise "
             "about the centre; `expand` grows the canvas to hold the whole result, else the size is kept and "
             "the corners are cut. Multiples of 90° are exact transposes (90° and 270° with `expand` or on a "
             "square image). The background of L and LA images is the colour's luma; RGB drops its alpha."),
    params_model=RotateParams,
    bind=bind,
    reference=reference,
    tolerance=1,
    examples=(
        {"angle": 30},
        {"angle": -17.5, "expand": False},
        {"angle": 200, "filter": "nearest"},
        {"angle": 45, "filter": "bilinear", "expand": False},
        {"angle": 12, "filter": "nearest", "expand": False, "background": "#ff8000"},
        {"angle": 75, "filter": "bilinear", "background": [40, 120, 200, 128]},
        {"angle": 333, "background": "#2468ace0"},
        {"angle": 90},
        {"angle": 180},
        {"angle": 270},
        {"angle": -90},
        {"angle": 450},
        {"angle": 90, "expand": False},
        {"angle": 0},
    ),
)
