"""``pad``: Pillow's ``ImageOps.expand``: borders of a colour around the image."""

from __future__ import annotations

import functools
from typing import Optional

from PIL import Image, ImageOps
from pydantic import Field

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step
from gpu_worker.operations.colors import TRANSPARENT, Color, to_hex, to_rgba

#: Largest border accepted on one side, in pixels (the output-pixel limit applies on top).
MAX_BORDER = 65_535


class PadParams(OpParams):
    """Pixels added on each side, filled with ``color``."""

    left: int = Field(default=0, ge=0, le=MAX_BORDER, description="pixels")
    top: int = Field(default=0, ge=0, le=MAX_BORDER)
    right: int = Field(default=0, ge=0, le=MAX_BORDER)
    bottom: int = Field(default=0, ge=0, le=MAX_BORDER)
    color: Color = Field(default=TRANSPARENT, description="`#rgb`, `#rrggbb`, `#rrggbbaa` or [r, g, b(, a)] 0-255")


def _border(p: PadParams) -> tuple[int, int, int, int]:
    return (p.left, p.top, p.right, p.bottom)


def bind(p: PadParams, shape: ImageShape) -> Optional[Step]:
    c, h, w = shape
    if _border(p) == (0, 0, 0, 0):
        return None  # Pillow returns a copy
    kernel = functools.partial(kernels.pad, border=_border(p), fill=to_rgba(p.color))
    return Step("pad", shape, (c, p.top + h + p.bottom, p.left + w + p.right), kernel)


def reference(image: Image.Image, p: PadParams) -> Image.Image:
    """Pillow's expand, the colour as a ``#rrggbbaa`` string (``ImageColor.getcolor`` per mode)."""
    return ImageOps.expand(image, border=_border(p), fill=to_hex(p.color))


OPERATION = Operation(
    name="pad",
    summary=("`ImageOps.expand(im, border=(left, top, right, bottom), fill=color)`: the image on a larger "
             "canvas of `color`. L and LA take the colour's luma; RGB drops its alpha."),
    params_model=PadParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=(
        {"left": 3, "top": 1, "right": 5, "bottom": 7},
        {"top": 4, "color": "#ff8000"},
        {"left": 2, "right": 2, "color": [40, 120, 200, 128]},
        {"bottom": 6, "right": 1, "color": "#2468ace0"},
        {},
    ),
)
