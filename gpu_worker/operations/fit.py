"""``fit``: the image made to a box without distortion: Pillow's ``ImageOps.contain``, ``cover``,
``fit`` (crop, with a gravity or a smart crop) and ``pad``."""

from __future__ import annotations

import functools
from typing import Literal, Optional

import torch
from PIL import Image, ImageOps
from pydantic import Field, model_validator

import kernels
from gpu_worker.errors import InvalidInput
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step
from gpu_worker.operations.colors import TRANSPARENT, Color, to_hex, to_rgba
from gpu_worker.operations.gravity import centering, gravity_type
from gpu_worker.operations.resize import MAX_RESIZE_SIDE, PILLOW_FILTERS

#: Gravities that choose the window from the pixels (libvips' smartcrop), mode ``crop`` only.
SMART_GRAVITIES = kernels.SMART_CHOOSERS
MODES = ("contain", "cover", "crop", "pad")


Gravity = gravity_type(SMART_GRAVITIES)


class FitParams(OpParams):
    """The output box and how the image goes into it (see the operation's summary)."""

    width: int = Field(ge=1, le=MAX_RESIZE_SIDE, description="pixels")
    height: int = Field(ge=1, le=MAX_RESIZE_SIDE, description="pixels")
    mode: Literal[MODES] = "crop"  # type: ignore[valid-type]
    gravity: Gravity = Field(default="center", description=(
        "`center`, `north`, `south`, `east`, `west`, `northeast`, `northwest`, `southeast`, `southwest`, "
        "[x, y] fractions 0-1, or (mode `crop`) `entropy` or `attention`"))
    background: Color = Field(default=TRANSPARENT, description="mode `pad`'s fill: `#rgb`, `#rrggbb`, "
                                                               "`#rrggbbaa` or [r, g, b(, a)] 0-255")
    filter: Literal[tuple(kernels.RESAMPLING_FILTERS)] = "lanczos"  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _smart_needs_crop(self):
        if self.gravity in SMART_GRAVITIES and self.mode != "crop":
            raise ValueError(f"gravity {self.gravity!r} (a smart crop) needs mode 'crop', not {self.mode!r}")
        return self


def _centering(p: FitParams) -> tuple[float, float]:
    return centering(p.gravity)


def contain_size(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """``ImageOps.contain``'s size: inside the box, aspect kept (Python's ``round``, as Pillow).

    >>> contain_size(640, 480, 300, 300)
    (300, 225)
    """
    im_ratio, dest_ratio = width / height, box_w / box_h
    if im_ratio != dest_ratio:
        if im_ratio > dest_ratio:
            return box_w, round(height / width * box_w)
        return round(width / height * box_h), box_h
    return box_w, box_h


def cover_size(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """``ImageOps.cover``'s size: covering the box, aspect kept.

    >>> cover_size(640, 480, 300, 300)
    (400, 300)
    """
    im_ratio, dest_ratio = width / height, box_w / box_h
    if im_ratio != dest_ratio:
        if im_ratio < dest_ratio:
            return box_w, round(height / width * box_w)
        return round(width / height * box_h), box_h
    return box_w, box_h


def crop_box(width: int, height: int, box_w: int, box_h: int,
             centering: tuple[float, float]) -> tuple[float, float, float, float]:
    """``ImageOps.fit``'s source box (no bleed): the largest region of the output's aspect,
    placed by ``centering``; fractional, in source pixels.

    >>> crop_box(640, 480, 300, 300, (0.5, 0.5))
    (80.0, 0.0, 560.0, 480.0)
    """
    live_ratio, output_ratio = width / height, box_w / box_h
    if live_ratio == output_ratio:
        crop_w, crop_h = width, height
    elif live_ratio >= output_ratio:
        crop_w, crop_h = output_ratio * height, height
    else:
        crop_w, crop_h = width, width / output_ratio
    left = 0 + (width - crop_w) * centering[0]
    top = 0 + (height - crop_h) * centering[1]
    return (float(left), float(top), float(left + crop_w), float(top + crop_h))


def _resize(images: torch.Tensor, size: tuple[int, int], filter: str) -> torch.Tensor:
    """``image.resize(size)`` of ``(width, height)``: a copy when the size is the image's."""
    if (size[1], size[0]) == tuple(images.shape[2:]):
        return images.clone()
    return kernels.resize(images, (size[1], size[0]), filter)


def _pad(images: torch.Tensor, inner: tuple[int, int], box: tuple[int, int], offset: tuple[int, int],
         filter: str, fill: tuple[int, int, int, int]) -> torch.Tensor:
    resized = _resize(images, inner, filter)
    return kernels.place(resized, (box[1], box[0]), offset, fill)


def _smart(images: torch.Tensor, cover: tuple[int, int], box: tuple[int, int], filter: str,
           interesting: str) -> torch.Tensor:
    resized = _resize(images, cover, filter)
    return kernels.smart_crop(resized, (box[1], box[0]), interesting)


def _zero_side(p: FitParams, w: int, h: int, size: tuple[int, int]) -> InvalidInput:
    return InvalidInput(f"fit {p.mode} of a {w}x{h} image into {p.width}x{p.height} gives a "
                        f"{size[0]}x{size[1]} image: a side of 0 pixels (the aspect ratio is too extreme)")


def bind(p: FitParams, shape: ImageShape) -> Optional[Step]:
    c, h, w = shape
    box = (p.width, p.height)
    if p.mode in ("contain", "pad"):
        inner = contain_size(w, h, *box)
        if min(inner) == 0:
            raise _zero_side(p, w, h, inner)
        if p.mode == "contain" or inner == box:
            out = inner
            kernel = functools.partial(_resize, size=inner, filter=p.filter)
        else:
            cx, cy = _centering(p)
            offset = (round((box[0] - inner[0]) * cx), 0) if inner[0] != box[0] else (0, round((box[1] - inner[1]) * cy))
            out = box
            kernel = functools.partial(_pad, inner=inner, box=box, offset=offset, filter=p.filter,
                                       fill=to_rgba(p.background))
        if out == (w, h) and (p.mode == "contain" or inner == box):
            return None  # Pillow returns a copy
        return Step("fit", shape, (c, out[1], out[0]), kernel)
    if p.mode == "cover":
        out = cover_size(w, h, *box)
        if out == (w, h):
            return None
        return Step("fit", shape, (c, out[1], out[0]), functools.partial(_resize, size=out, filter=p.filter))
    if p.gravity in SMART_GRAVITIES:
        cover = cover_size(w, h, *box)
        return Step("fit", shape, (c, box[1], box[0]),
                    functools.partial(_smart, cover=cover, box=box, filter=p.filter, interesting=p.gravity))
    source = crop_box(w, h, *box, _centering(p))
    if box == (w, h) and source == (0.0, 0.0, float(w), float(h)):
        return None
    return Step("fit", shape, (c, box[1], box[0]),
                functools.partial(kernels.resize, size=(box[1], box[0]), filter=p.filter, box=source))


def smart_reference_offset(image: Image.Image, p: FitParams) -> tuple[int, int]:
    """The window's ``(left, top)`` in the cover-resized image, as the worker's own chooser
    picks it on the worker's own resize of ``image`` (so that the reference's crop does not hinge
    on a level's difference between two resizes)."""
    import numpy as np

    arr = np.asarray(image)
    tensor = torch.from_numpy(arr.reshape(*arr.shape[:2], -1).copy()).permute(2, 0, 1).unsqueeze(0)
    resized = _resize(tensor, cover_size(image.width, image.height, p.width, p.height), p.filter)
    left, top = kernels.smart_offsets(resized, (p.height, p.width), p.gravity)[0].tolist()
    return left, top


def reference(image: Image.Image, p: FitParams) -> Image.Image:
    """Pillow's ``ImageOps`` function per mode, with the filter; a smart crop is
    ``ImageOps.cover`` then ``crop`` at the offset :func:`smart_reference_offset` gives (the
    chooser has no Pillow counterpart: tests/test_fit.py holds it to photos and to libvips)."""
    size, method = (p.width, p.height), PILLOW_FILTERS[p.filter]
    if p.mode == "contain":
        return ImageOps.contain(image, size, method)
    if p.mode == "cover":
        return ImageOps.cover(image, size, method)
    if p.mode == "pad":
        return ImageOps.pad(image, size, method, color=to_hex(p.background), centering=_centering(p))
    if p.gravity in SMART_GRAVITIES:
        left, top = smart_reference_offset(image, p)
        return ImageOps.cover(image, size, method).crop((left, top, left + p.width, top + p.height))
    return ImageOps.fit(image, size, method, centering=_centering(p))


OPERATION = Operation(
    name="fit",
    summary=("`width` x `height` without distortion, by `mode`: `contain` `ImageOps.contain` (inside the box, "
             "aspect kept, may enlarge); `cover` `ImageOps.cover` (covers the box); `crop` "
             "`ImageOps.fit(centering=gravity)` (exactly the box, resized from the fractional source region "
             "that fits; gravity `entropy` or `attention`: libvips' smart crop of the covering resize, "
             "chosen on the device); `pad` `ImageOps.pad(color=background, centering=gravity)` (exactly the "
             "box, the rest filled). The filter as `resize`'s, RGBA premultiplied."),
    params_model=FitParams,
    bind=bind,
    reference=reference,
    tolerance=1,
    examples=(
        {"width": 20, "height": 20},
        {"width": 30, "height": 12, "gravity": "north", "filter": "bicubic"},
        {"width": 17, "height": 40, "gravity": [0.2, 0.9], "filter": "bilinear"},
        {"width": 50, "height": 20, "gravity": "southeast", "filter": "nearest"},
        {"width": 25, "height": 25, "mode": "contain"},
        {"width": 60, "height": 10, "mode": "contain", "filter": "nearest"},
        {"width": 20, "height": 20, "mode": "cover", "filter": "bicubic"},
        {"width": 90, "height": 40, "mode": "cover"},
        {"width": 24, "height": 24, "mode": "pad"},
        {"width": 40, "height": 13, "mode": "pad", "gravity": "west", "background": "#ff8000"},
        {"width": 18, "height": 30, "mode": "pad", "gravity": [1, 0.3], "background": [40, 120, 200, 128]},
        {"width": 37, "height": 29, "mode": "crop"},
        {"width": 20, "height": 20, "gravity": "entropy"},
        {"width": 16, "height": 28, "gravity": "attention", "filter": "bicubic"},
    ),
)
