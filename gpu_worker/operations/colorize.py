"""``colorize``: Pillow's ``ImageOps.colorize`` of the image's grayscale; RGB out, alpha kept."""

from __future__ import annotations

import functools
from typing import Optional

from PIL import Image, ImageOps
from pydantic import Field

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step
from gpu_worker.operations.colors import Color, to_rgba
from gpu_worker.operations.tone import on_colour_bands

#: How a colour may be written (gpu_worker.operations.colors).
FORMS = "`#rgb`, `#rrggbb`, `#rrggbbaa` or [r, g, b(, a)] 0-255"


class ColorizeParams(OpParams):
    """Black pixels of the grayscale become ``black``, white ones ``white``, the levels between a
    gradient (through ``mid`` at level 127 when given). A colour's alpha is ignored."""

    black: Color = Field(description=f"level 0's colour: {FORMS}")
    white: Color = Field(description="level 255's colour")
    mid: Optional[Color] = Field(default=None, description="level 127's colour; default: none (black to white)")


def _rgb(color: Optional[str]) -> Optional[tuple[int, int, int]]:
    return None if color is None else to_rgba(color)[:3]


def bind(p: ColorizeParams, shape: ImageShape) -> Optional[Step]:
    c, h, w = shape
    kernel = functools.partial(kernels.colorize, black=_rgb(p.black), white=_rgb(p.white), mid=_rgb(p.mid))
    return Step("colorize", shape, (4 if c % 2 == 0 else 3, h, w), kernel)


def reference(image: Image.Image, p: ColorizeParams) -> Image.Image:
    return on_colour_bands(
        image, lambda im: ImageOps.colorize(ImageOps.grayscale(im), _rgb(p.black), _rgb(p.white), _rgb(p.mid)))


OPERATION = Operation(
    name="colorize",
    summary=("`ImageOps.colorize(ImageOps.grayscale(im), black, white, mid)`: RGB out (L -> RGB, LA -> RGBA), "
             "alpha kept; a colour's own alpha is ignored."),
    params_model=ColorizeParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=({"black": "#102030", "white": "#f0e0c0"}, {"black": [200, 0, 40], "white": "#0000ff", "mid": "#fff"},
              {"black": "#ffffff80", "white": [0, 0, 0, 255], "mid": [10, 250, 3]}),
)
