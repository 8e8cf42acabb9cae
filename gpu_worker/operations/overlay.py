"""``overlay`` (watermark): an image from the job, placed by gravity or tiled, with an opacity.

Its ``image`` is a resource parameter (gpu_worker.operations.resources): fetched, checked and
decoded once per job like a source, before any source is decoded; the kernel then puts it on every
image of a stack in one call.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

from PIL import Image
from pydantic import Field

import kernels
from gpu_worker.interop import tensor_to_pil
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step
from gpu_worker.operations.gravity import Gravity, centering
from gpu_worker.operations.resources import ImageResource

#: Largest margin accepted, in pixels.
MAX_MARGIN = 1_000_000

#: The examples' overlays: crops of scikit-image's photos, a 14x10 RGBA PNG (coffee.png, its alpha
#: the camera.png photo's) and a 9x7 RGB PNG (chelsea.png), as tests/photos.py cuts them.
RGBA_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAA4AAAAKCAYAAACE2W/HAAABrElEQVR42gXBsW4TURAF0Dvz3vOuvev12mCJABWiCCBoqKgQ4gPybRT8AjVF"
    "Spq0IKSIIjQoipBAhBDHwSb2+u3M5RxZHr/7dHV6gtWPU3b/rgEXd9JERNwNbkYQIEERkMiInhljWRdF1XKTJuh83Qv4TVSOQNwm+RoijRNUcQBC"
    "Ysf+8jeiDOqnaVx9DqPwMazisef8RdSjmcwBPKT5YxCFCtSk12DsF+cLRg3lh8GoeZ+q+i1iBPr8kqa3AvHIEc5c/URoL5xhL8J3NxfnVldTiwjl"
    "mzBsD4f1BKsQQMqRCPcJnprZSIF9mH614N9T13F59rOd371PpaRDHdSIdYuiaeGiAFzh+TgII92fiOqdQjFZXyzaqIHd9V9EjQmOCmUzRdnU2C7L"
    "53ljBxqLoVm3BvotJRi6G7P1kpKj5GBUiQmiBXQ4RTmZo6iaAwf3YD6l5VmQMAvcqt1sef1nkVMK2XtmdTdABKFsULb3nhWTWYxp4ELbQMOGpAXt"
    "8+rXuSUOCGVPaK9AAiUBOnwVx9MHo3aKwXgcevAK8B3UhOus68vFriwqgQcoRP4DvJLtInI6AGoAAAAASUVORK5CYII="
)
RGB_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAkAAAAHCAIAAABV+fA3AAAAfUlEQVR42gXBgXHDMAwDQAIg7Ysvw2Sn7NN9K4lE/vH3/ai4dptQ1mR2GJi9T+bd"
    "KkRxLENknLakKuXzvIfWhBET+b+nqugId4ZeQYDuaYiMBmLOsYe8yogBrGpzuTtsRHsSdIJBnZnuuXittebYJhGagKRbWcAtPHWVMswfYFFIw2qb"
    "UrUAAAAASUVORK5CYII="
)


class OverlayParams(OpParams):
    """``image`` placed at the ``gravity`` point of the room left over (moved ``margin`` pixels in
    from each edge the gravity touches), or repeated from the top-left corner over the whole image
    (``tile``: gravity and margin unused); its alpha times ``opacity``."""

    image: ImageResource = Field(description='`{"url": ...}` or `{"base64": ...}`, read and limited like the source image')
    gravity: Gravity = Field(default="southeast", description="`center`, `north`, `northeast`, ... `northwest`, or [x, y] fractions 0-1; unused with `tile`")
    margin: int = Field(default=0, ge=0, le=MAX_MARGIN, description="pixels in from the edges the gravity touches")
    opacity: float = Field(default=1.0, ge=0, le=1)
    tile: bool = Field(default=False, description="repeat it over the whole image from the top-left corner")


def position(p: OverlayParams, width: int, height: int, w: int, h: int) -> tuple[int, int]:
    """Where a ``w`` x ``h`` overlay's top-left pixel goes on a ``width`` x ``height`` image:
    ``x = int((width - w) * cx)``, ``y = int((height - h) * cy)``, moved ``margin`` inward on each
    side the gravity touches (cx or cy 0 or 1)."""
    cx, cy = centering(p.gravity)
    x, y = int((width - w) * cx), int((height - h) * cy)
    x += p.margin if cx == 0 else -p.margin if cx == 1 else 0
    y += p.margin if cy == 0 else -p.margin if cy == 1 else 0
    return x, y


def _placements(p: OverlayParams, width: int, height: int, w: int, h: int) -> list[tuple[int, int]]:
    if p.tile:
        return [(i * w, j * h) for j in range(math.ceil(height / h)) for i in range(math.ceil(width / w))]
    return [position(p, width, height, w, h)]


def bind(p: OverlayParams, shape: ImageShape) -> Optional[Step]:
    over = p.image.image  # (C', h, w), loaded by the intake (InvalidInput if not)
    _, height, width = shape
    x, y = position(p, width, height, over.shape[2], over.shape[1])
    if p.opacity == 0:
        return None  # a fully transparent overlay changes nothing
    kernel = functools.partial(kernels.overlay, over=over, x=x, y=y, opacity=p.opacity, tile=p.tile)
    return Step("overlay", shape, shape, kernel)


def reference(image: Image.Image, p: OverlayParams) -> Image.Image:
    """The issue's definition with Pillow: the overlay as RGBA, alpha ``int(a * opacity + 0.5)``;
    L and RGB bases ``paste`` it in their mode with that alpha as the mask, LA and RGBA bases
    ``Image.alpha_composite`` a transparent layer holding it."""
    over = tensor_to_pil(p.image.image.cpu()).convert("RGBA")
    alpha = over.getchannel("A").point([int(a * p.opacity + 0.5) for a in range(256)])
    over.putalpha(alpha)
    spots = _placements(p, image.width, image.height, over.width, over.height)
    if image.mode in ("L", "RGB"):
        out, src = image.copy(), over.convert(image.mode)
        for spot in spots:
            out.paste(src, spot, mask=alpha)
        return out
    layer, src = Image.new(image.mode, image.size, 0), over.convert(image.mode)
    for spot in spots:
        layer.paste(src, spot)
    return Image.alpha_composite(image, layer)


OPERATION = Operation(
    name="overlay",
    summary=("A watermark: `image` as RGBA, its alpha `int(a * opacity + 0.5)`, at `x = int((W - w) * cx)`, "
             "`y = int((H - h) * cy)` (moved `margin` in from the edges the gravity touches; clipped), or tiled "
             "from the top-left; L and RGB: `base.paste(overlay, (x, y), mask=alpha)`, LA and RGBA: "
             "`Image.alpha_composite`. Fetched once per job."),
    params_model=OverlayParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=(
        {"image": {"base64": RGBA_PNG}},
        {"image": {"base64": RGBA_PNG}, "gravity": "northwest", "margin": 3, "opacity": 0.6},
        {"image": {"base64": RGB_PNG}, "gravity": "center", "opacity": 0.5},
        {"image": {"base64": RGB_PNG}, "gravity": [0.25, 0.8]},
        {"image": {"base64": RGBA_PNG}, "tile": True, "opacity": 0.8},
        {"image": {"base64": RGB_PNG}, "tile": True},
        {"image": {"base64": RGBA_PNG}, "margin": 30},
        {"image": {"base64": "data:image/png;base64," + RGBA_PNG}, "gravity": "south", "margin": 100},
        {"image": {"base64": RGB_PNG}, "opacity": 0},
    ),
)
