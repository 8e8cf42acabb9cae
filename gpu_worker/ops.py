"""The operation registry: op name -> parameter model and kernel binder.

An operation in a job is JSON such as ``{"type": "resize", "params": {"width": 800}}``. Its
``params`` are validated by the op's pydantic model (unknown names refused, types strict, NaN and
infinity refused). Binding the params to an input shape ``(C, H, W)`` gives a :class:`Step`: the
kernel with its arguments fixed, and the output shape, known before any pixel is touched.

Adding an operation: write the kernel in ``kernels/``, then one model, one binder and one
:data:`REGISTRY` entry here.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

import kernels
from gpu_worker.errors import InvalidInput

#: (channels, height, width) of one image.
ImageShape = tuple[int, int, int]

#: Largest side any op may produce, in pixels (the output-pixel limit applies on top).
MAX_SIDE = 65_535
#: Largest absolute crop coordinate accepted, in pixels.
MAX_COORD = 1_000_000
#: Largest enhancement factor accepted (Pillow's ImageEnhance has no upper bound).
MAX_FACTOR = 100.0


class OpParams(BaseModel):
    """Base of every op's parameters: unknown names refused, JSON types strict, no NaN/inf."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ResizeParams(OpParams):
    """``width`` only or ``height`` only keep the aspect ratio; both fit inside the box
    (Pillow's ``thumbnail`` sizing, never enlarging) unless ``maintain_aspect`` is false, which
    gives exactly ``width`` x ``height``."""

    width: Optional[int] = Field(default=None, ge=1, le=MAX_SIDE)
    height: Optional[int] = Field(default=None, ge=1, le=MAX_SIDE)
    maintain_aspect: bool = True
    filter: Literal[tuple(kernels.RESAMPLING_FILTERS)] = "lanczos"  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _needs_a_side(self):
        if self.width is None and self.height is None:
            raise ValueError("resize needs 'width', 'height' or both")
        return self


class CropParams(OpParams):
    """A box in source pixels; missing sides default to the image's edges (0, 0, width, height).
    The box may reach past the image (the outside is zero, as in Pillow)."""

    left: int = Field(default=0, ge=-MAX_COORD, le=MAX_COORD)
    top: int = Field(default=0, ge=-MAX_COORD, le=MAX_COORD)
    right: Optional[int] = Field(default=None, ge=-MAX_COORD, le=MAX_COORD)
    bottom: Optional[int] = Field(default=None, ge=-MAX_COORD, le=MAX_COORD)


class FilterParams(OpParams):
    """One of Pillow's fixed filters, or ``grayscale`` (Pillow's ``convert("L")``)."""

    name: Literal[(*kernels.FILTERS, "grayscale")]  # type: ignore[valid-type]


class AdjustParams(OpParams):
    """Pillow's ``ImageEnhance`` factors, applied brightness, then contrast, then saturation.
    1.0 leaves the image as it is; 0.0 gives black, flat grey, or grayscale respectively."""

    brightness: Optional[float] = Field(default=None, ge=0.0, le=MAX_FACTOR)
    contrast: Optional[float] = Field(default=None, ge=0.0, le=MAX_FACTOR)
    saturation: Optional[float] = Field(default=None, ge=0.0, le=MAX_FACTOR)

    @model_validator(mode="after")
    def _needs_a_factor(self):
        if self.brightness is None and self.contrast is None and self.saturation is None:
            raise ValueError("adjust needs 'brightness', 'contrast' or 'saturation'")
        return self


@dataclass(frozen=True)
class Step:
    """One op bound to an input shape: ``kernel(batch)`` maps ``(B, *in_shape)`` to ``(B, *out_shape)``."""

    name: str
    in_shape: ImageShape
    out_shape: ImageShape
    kernel: Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Operation:
    """A registry entry: the op's parameter model and the function binding params to a shape."""

    name: str
    params_model: type[OpParams]
    bind: Callable[[OpParams, ImageShape], Optional[Step]]  # None: the op leaves this shape as is

    @property
    def parameter_names(self) -> list[str]:
        return sorted(self.params_model.model_fields)


# --- binders: params + input shape -> Step -------------------------------------------------


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


def _bind_resize(p: ResizeParams, shape: ImageShape) -> Optional[Step]:
    c, h, w = shape
    out_w, out_h = resize_size(p, w, h)
    if (out_w, out_h) == (w, h):
        return None  # Pillow returns a copy for a same-size resize: nothing to compute
    kernel = functools.partial(kernels.resize, size=(out_h, out_w), filter=p.filter)
    return Step("resize", shape, (c, out_h, out_w), kernel)


def _bind_crop(p: CropParams, shape: ImageShape) -> Optional[Step]:
    c, h, w = shape
    box = (p.left, p.top, w if p.right is None else p.right, h if p.bottom is None else p.bottom)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise InvalidInput(
            f"crop box (left={box[0]}, top={box[1]}, right={box[2]}, bottom={box[3]}) has zero or "
            f"negative area on a {w}x{h} image: right must exceed left and bottom must exceed top"
        )
    if box == (0, 0, w, h):
        return None
    return Step("crop", shape, (c, box[3] - box[1], box[2] - box[0]), functools.partial(kernels.crop, box=box))


def _bind_filter(p: FilterParams, shape: ImageShape) -> Optional[Step]:
    if p.name == "grayscale":
        return Step("grayscale", shape, (1, shape[1], shape[2]), kernels.grayscale)
    return Step(p.name, shape, shape, functools.partial(kernels.apply_filter, name=p.name))


def _bind_adjust(p: AdjustParams, shape: ImageShape) -> Optional[Step]:
    kernel = functools.partial(kernels.adjust, brightness=p.brightness, contrast=p.contrast, saturation=p.saturation)
    return Step("adjust", shape, shape, kernel)


#: op name -> registry entry. The compiler is a lookup in this table.
REGISTRY: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("resize", ResizeParams, _bind_resize),
        Operation("crop", CropParams, _bind_crop),
        Operation("filter", FilterParams, _bind_filter),
        Operation("adjust", AdjustParams, _bind_adjust),
    )
}
