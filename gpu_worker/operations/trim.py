"""``trim``: the tightest box around the pixels that differ from a background colour.

Its output size depends on the pixels, so its Step is ``data_dependent``: the operations after it
bind again to each image's trimmed shape (gpu_worker.plan, gpu_worker.stacking).
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np
from PIL import Image, ImageColor
from pydantic import Field

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step
from gpu_worker.operations.colors import Color, to_hex, to_rgba


class TrimParams(OpParams):
    """A pixel is background when every channel (alpha included) is within ``threshold`` levels of
    ``color``; the result is the box around every other pixel."""

    threshold: int = Field(default=10, ge=0, le=255, description="levels")
    color: Optional[Color] = Field(default=None, description="the background; default: the top-left pixel's colour")


def bind(p: TrimParams, shape: ImageShape) -> Optional[Step]:
    c = shape[0]
    color = None if p.color is None else kernels.mode_color(to_rgba(p.color), c)
    return Step("trim", shape, shape, functools.partial(kernels.trim, threshold=p.threshold, color=color),
                data_dependent=True)


def reference(image: Image.Image, p: TrimParams) -> Image.Image:
    """The issue's definition in numpy: ``fg = abs(a - color).max(axis=-1) > threshold``, then the
    box of ``fg``'s nonzero rows and columns; all background: the image unchanged."""
    a = np.asarray(image)
    a = a[:, :, None] if a.ndim == 2 else a
    if p.color is None:
        color = a[0, 0].astype(int)
    else:
        color = np.array(ImageColor.getcolor(to_hex(p.color), image.mode), dtype=int).reshape(-1)
    fg = np.abs(a.astype(int) - color).max(axis=-1) > p.threshold
    rows, cols = np.nonzero(fg.any(axis=1))[0], np.nonzero(fg.any(axis=0))[0]
    if not len(rows):
        return image.copy()
    return image.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))


OPERATION = Operation(
    name="trim",
    summary=("The tightest box holding every pixel that differs from `color` by more than `threshold` in some "
             "channel (alpha included); an image that is all background is returned unchanged. The size "
             "depends on the pixels: each image of a batch gets its own."),
    params_model=TrimParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=(
        {},
        {"threshold": 120},
        {"threshold": 90, "color": "#ffffff"},
        {"threshold": 60, "color": [20, 40, 60, 128]},
        {"threshold": 255},
        {"threshold": 0},
    ),
)
